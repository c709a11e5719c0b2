//! Carry-overs: an AuthID of a key that is no longer primary keeps working
//! after the key is retired, and every bad case around it is refused
//! cleanly.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::*;
use crate::authid::{AuthIdError, CLIENT_CLAIM};
use crate::refresh::carry_over::CarryVault;

/// Two keys that keep their identity across keyring reloads.
struct Keys {
    old: Arc<ServerKey>,
    new: Arc<ServerKey>,
}

impl Keys {
    fn new() -> Self {
        let make = |kid: &str| Arc::new(ServerKey::generate(kid, 1).unwrap().0);
        Self {
            old: make("old"),
            new: make("new"),
        }
    }

    fn only_old(&self) -> Keyring {
        Keyring::new([Arc::clone(&self.old)], "old", HashSet::new()).unwrap()
    }

    fn both_new_primary(&self) -> Keyring {
        Keyring::new(
            [Arc::clone(&self.old), Arc::clone(&self.new)],
            "new",
            HashSet::new(),
        )
        .unwrap()
    }

    fn old_retired(&self) -> Keyring {
        Keyring::new(
            [Arc::clone(&self.new)],
            "new",
            HashSet::from(["old".to_string()]),
        )
        .unwrap()
    }
}

fn rotated(n: u32) -> String {
    format!(r#"{{"access_token":"at-{n}","expires_in":3600,"refresh_token":"rt-{n}"}}"#)
}

impl Fixture {
    async fn stored_carry_over(&self, text: &str) -> Option<Vec<u8>> {
        self.store.get(CarryVault::new(text).key()).await.unwrap()
    }

    fn key_counts(&self, kid: &str) -> crate::authid::KeyCounts {
        self.keyring.stats().counts(kid)
    }

    /// Past the cached answer's life, so the next refresh is a miss.
    fn expire(&self) {
        self.clock.advance(4000);
    }
}

#[tokio::test]
async fn a_box_authid_rotates_across_the_retirement_of_its_key() {
    let f = fixture();
    let keys = Keys::new();
    f.keyring.replace(keys.only_old());
    let pasted = f.authid("box.com", "rt-1");
    let never_seen = f.authid("box.com", "rt-never");
    f.keyring.replace(keys.both_new_primary());

    f.client.push(200, &rotated(2));
    let answer = f.refresher.refresh_for(&pasted).await.unwrap();
    let resealed = answer.new_authid().expect("re-sealed with the new key");
    let opened = f
        .keyring
        .open(resealed.strip_prefix("v3:").unwrap())
        .unwrap();
    assert_eq!(opened.kid, "new");
    assert!(
        opened.claims.extra.contains_key(CLIENT_CLAIM),
        "cid on a re-seal"
    );
    let first = f.stored_carry_over(&pasted).await.expect("carried over");
    assert_eq!(f.key_counts("old").first_opened, 1);

    // Duplicati pastes the same text again: no second write.
    f.expire();
    f.client.push(200, &rotated(3));
    f.refresher.refresh_for(&pasted).await.unwrap();
    assert_eq!(f.stored_carry_over(&pasted).await.unwrap(), first);
    assert_eq!(f.key_counts("old").first_opened, 1);

    f.keyring.replace(keys.old_retired());
    f.refresher.forget_cached_texts();
    f.expire();
    f.client.push(200, &rotated(4));
    let answer = f.refresher.refresh_for(&pasted).await.unwrap();
    assert!(answer.new_authid().is_some());
    assert_eq!(
        *f.client.seen_tokens.lock().unwrap(),
        ["rt-1", "rt-2", "rt-3"],
        "the newest token each time, never a spent one"
    );
    assert_eq!(f.key_counts("old").carried_over, 1);
    // A cache hit by text never reaches the carry-over.
    f.refresher.refresh_for(&pasted).await.unwrap();
    assert_eq!(f.key_counts("old").carried_over, 1);

    let err = f.refresher.refresh_for(&never_seen).await.unwrap_err();
    assert_eq!(err, RefreshError::AuthId(AuthIdError::RetiredKey));
    assert_eq!(f.key_counts("old").refused, 1);

    f.keyring.replace(
        keys.old_retired()
            .with_compromised(HashSet::from(["old".into()])),
    );
    f.refresher.forget_cached_texts();
    let err = f.refresher.refresh_for(&pasted).await.unwrap_err();
    assert_eq!(err, RefreshError::AuthId(AuthIdError::CompromisedKey));
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_carry_over_that_does_not_open_is_a_401_and_never_a_refresh() {
    let f = fixture();
    let keys = Keys::new();
    f.keyring.replace(keys.only_old());
    let mine = f.authid("googledrive", "rt-mine");
    let other = f.authid("googledrive", "rt-other");
    f.keyring.replace(keys.both_new_primary());
    f.refresher.refresh_for(&other).await.unwrap();
    let foreign = f.stored_carry_over(&other).await.unwrap();
    f.keyring.replace(keys.old_retired());
    let calls = f.client.calls.load(Ordering::SeqCst);
    // Another AuthID's carry-over under this one's key, then plain damage.
    for value in [foreign, b"damaged".to_vec(), Vec::new()] {
        f.store
            .put(CarryVault::new(&mine).key(), value, Duration::from_secs(60))
            .await
            .unwrap();
        let err = f.refresher.refresh_for(&mine).await.unwrap_err();
        assert_eq!(err, RefreshError::AuthId(AuthIdError::Decrypt));
        assert!(AuthIdError::Decrypt.is_unauthorized(), "a 401");
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), calls, "no refresh");
}

#[tokio::test]
async fn a_present_key_opens_its_authid_whatever_the_carry_over_holds() {
    let f = fixture();
    let keys = Keys::new();
    f.keyring.replace(keys.only_old());
    let authid = f.authid("googledrive", "rt-1");
    f.keyring.replace(keys.both_new_primary());
    f.store
        .put(
            CarryVault::new(&authid).key(),
            b"damaged".to_vec(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    f.refresher.refresh_for(&authid).await.unwrap();
    assert_eq!(f.client.seen_tokens.lock().unwrap().as_slice(), ["rt-1"]);
    // The damaged entry was replaced by a carry-over that opens.
    let stored = f.stored_carry_over(&authid).await.unwrap();
    assert!(CarryVault::new(&authid).open(&stored).is_some());
    // The primary key's AuthIDs are never carried over.
    let current = f.authid("googledrive", "rt-current");
    f.refresher.refresh_for(&current).await.unwrap();
    assert!(f.stored_carry_over(&current).await.is_none());
    assert_eq!(f.key_counts("new").first_opened, 0);
}

#[tokio::test]
async fn a_retired_keys_authid_waits_while_the_store_is_down() {
    let f = fixture_on(Arc::new(crate::testing::DownStore));
    let keys = Keys::new();
    f.keyring.replace(keys.only_old());
    let authid = f.authid("googledrive", "rt-1");
    f.keyring.replace(keys.old_retired());
    let err = f.refresher.refresh_for(&authid).await.unwrap_err();
    assert_eq!(err, RefreshError::StoreUnavailable);
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 0);
    // While the key is loaded, a store outage costs nothing.
    f.keyring.replace(keys.both_new_primary());
    f.refresher.refresh_for(&authid).await.unwrap();
    assert_eq!(f.key_counts("old").first_opened, 0, "not known to be new");
}

#[tokio::test]
async fn a_touch_keeps_a_carry_over_in_use_and_the_store_holds_no_token() {
    let f = fixture();
    let keys = Keys::new();
    f.keyring.replace(keys.only_old());
    let authid = f.authid("box.com", "rt-secret-1");
    f.keyring.replace(keys.both_new_primary());
    f.refresher.refresh_for(&authid).await.unwrap();
    let first = f.stored_carry_over(&authid).await.unwrap();
    f.keyring.replace(keys.old_retired());
    f.clock
        .advance(super::super::carry_over::TOUCH_AFTER_SECS + 1);
    f.refresher.refresh_for(&authid).await.unwrap();
    let touched = f.stored_carry_over(&authid).await.unwrap();
    assert_ne!(touched, first, "written again once the touch is due");
    let record = CarryVault::new(&authid).open(&touched).unwrap();
    assert_eq!(record.kid, "old");
    assert_eq!(record.written_at, f.clock.now());
    for needle in [&b"rt-secret-1"[..], b"box.com", authid.as_bytes()] {
        assert!(!touched.windows(needle.len()).any(|w| w == needle));
    }
}

#[test]
fn a_carry_over_lives_at_least_as_long_as_the_providers_refresh_tokens() {
    use super::super::carry_over::{TOUCH_AFTER_SECS, ttl_for};
    let f = fixture();
    // googledrive: refresh tokens without a set lifetime.
    let drive = f.refresher.open(&f.authid("googledrive", "rt-1")).unwrap();
    let lifetime = drive.provider.refresh_token_lifetime;
    assert_eq!(ttl_for(&drive), CARRY_OVER_TTL.max(lifetime));
    assert!(ttl_for(&drive) >= lifetime);
    // Written again weekly while used: far inside its life.
    assert!(CARRY_OVER_TTL.as_secs() as i64 > TOUCH_AFTER_SECS * 50);
}
