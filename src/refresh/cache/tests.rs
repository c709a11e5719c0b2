//! The cache: expiry, eviction, forgetting, keys and the prepared body.

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::secret::Sensitive;
use crate::store::StoreKey;

const NOW: i64 = 1_800_000_000;

fn token_for(login: u8, expires_at: i64) -> Arc<CachedToken> {
    Arc::new(CachedToken::new(
        Sensitive::new("at"),
        expires_at,
        "x".into(),
        None,
        [login; 32],
        false,
    ))
}

fn token(expires_at: i64) -> Arc<CachedToken> {
    token_for(0, expires_at)
}

fn cache(capacity: u64) -> (TokenCache, ManualClock) {
    let clock = ManualClock::new(NOW);
    (TokenCache::new(capacity, Arc::new(clock.clone())), clock)
}

#[test]
fn one_caller_per_interval_looks_for_a_revocation() {
    let key = StoreKey::new(crate::store::Space::Revoked, [7; 32]);
    let unwatched = token(NOW + 3600);
    assert!(!unwatched.recheck_pending(NOW + 1000, 60));
    assert!(!unwatched.recheck_due(NOW + 1000, 60));
    let t = CachedToken::new(
        Sensitive::new("at"),
        NOW + 3600,
        "x".into(),
        None,
        [0; 32],
        false,
    )
    .watching(key, NOW);
    assert_eq!(t.revoked_key(), Some(&key));
    assert!(!t.recheck_pending(NOW + 59, 60));
    assert!(!t.recheck_due(NOW + 59, 60));
    assert!(t.recheck_pending(NOW + 60, 60));
    assert!(t.recheck_due(NOW + 60, 60));
    assert!(!t.recheck_due(NOW + 60, 60), "the next caller does not");
    assert!(!t.recheck_pending(NOW + 60, 60));
    assert!(t.recheck_due(NOW + 120, 60));
}

#[test]
fn forgetting_a_login_without_its_text_ends_every_text_of_it() {
    let (cache, _) = cache(10);
    let t = token_for(3, NOW + 3600);
    let k = cache.text_key("v3:a");
    cache.insert_login([3; 32], Arc::clone(&t));
    cache.insert_text(k, t);
    assert!(cache.by_text(&k, NOW).is_some());
    cache.forget_login(&[3; 32]);
    assert!(cache.by_text(&k, NOW).is_none());
    assert!(cache.by_login(&[3; 32], NOW).is_none());
}

#[test]
fn serves_only_while_more_than_a_minute_remains() {
    let (cache, _) = cache(10);
    let k = cache.text_key("v3:a");
    cache.insert_text(k, token(NOW + 3600));
    assert!(cache.by_text(&k, NOW).is_some());
    assert!(cache.by_text(&k, NOW + 3600 - 61).is_some());
    assert!(cache.by_text(&k, NOW + 3600 - 60).is_none());
}

#[test]
fn text_keys_are_keyed_per_cache() {
    let (a, _) = cache(10);
    let (b, _) = cache(10);
    assert_eq!(a.text_key("v3:x"), a.text_key("v3:x"));
    assert_ne!(a.text_key("v3:x"), a.text_key("v3:y"));
    assert_ne!(
        a.text_key("v3:x"),
        b.text_key("v3:x"),
        "a random key per cache"
    );
}

#[test]
fn forgetting_a_login_reaches_every_text_of_it() {
    let (cache, _) = cache(10);
    let t = token_for(1, NOW + 3600);
    cache.insert_login([1; 32], Arc::clone(&t));
    let (a, b) = (cache.text_key("v3:a"), cache.text_key("v3:b"));
    cache.insert_text(a, Arc::clone(&t));
    cache.insert_text(b, t);
    assert!(cache.by_text(&b, NOW).is_some());
    cache.forget(&a, &[1; 32]);
    assert!(cache.by_text(&a, NOW).is_none());
    assert!(
        cache.by_text(&b, NOW).is_none(),
        "the other text misses too"
    );
    assert!(cache.by_login(&[1; 32], NOW).is_none());
}

#[test]
fn a_login_is_found_by_its_whole_key() {
    let (cache, _) = cache(10);
    cache.insert_login([1; 32], token_for(1, NOW + 3600));
    let mut same_first_half = [1u8; 32];
    same_first_half[31] = 2;
    assert!(cache.by_login(&[1; 32], NOW).is_some());
    assert!(cache.by_login(&same_first_half, NOW).is_none());
}

#[test]
fn a_new_token_for_a_login_retires_the_texts_of_the_old_one() {
    let (cache, _) = cache(10);
    let old = token_for(1, NOW + 3600);
    cache.insert_login([1; 32], Arc::clone(&old));
    let a = cache.text_key("v3:a");
    cache.insert_text(a, old);
    cache.insert_login([1; 32], token_for(1, NOW + 7200));
    assert!(cache.by_text(&a, NOW).is_none());
    assert_eq!(
        cache.by_login(&[1; 32], NOW).unwrap().expires_at,
        NOW + 7200
    );
}

#[test]
fn a_full_cache_drops_the_entries_closest_to_expiry() {
    let (cache, _) = cache((MIN_PER_SHARD * SHARDS) as u64);
    let logins: Vec<CacheKey> = (0..MIN_PER_SHARD * SHARDS * 3)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            k
        })
        .collect();
    for (i, k) in logins.iter().enumerate() {
        let t = CachedToken::new(
            Sensitive::new("at"),
            NOW + 600 + i as i64,
            "x".into(),
            None,
            *k,
            false,
        );
        cache.insert_login(*k, Arc::new(t));
    }
    let held = logins
        .iter()
        .filter(|k| cache.by_login(k, NOW).is_some())
        .count();
    assert!(held <= MIN_PER_SHARD * SHARDS, "bounded: {held}");
    assert!(held >= MIN_PER_SHARD * SHARDS / 2, "not emptied: {held}");
    assert!(
        cache.by_login(logins.last().unwrap(), NOW).is_some(),
        "the latest to expire stays"
    );
    assert!(cache.by_login(&logins[0], NOW).is_none());
}

#[test]
fn expired_entries_are_swept_on_a_later_insert() {
    let (cache, clock) = cache(1000);
    for i in 0..100u8 {
        cache.insert_text(cache.text_key(&format!("v3:{i}")), token(NOW + 120));
    }
    assert_eq!(cache.len(), 100);
    clock.advance(SWEEP_EVERY_SECS + 120);
    for i in 0..200u8 {
        cache.insert_text(
            cache.text_key(&format!("v3:new{i}")),
            token(clock.now() + 3600),
        );
    }
    assert_eq!(cache.len(), 200, "the expired ones are gone");
}

#[test]
fn the_prepared_body_is_what_serde_writes() {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        access_token: &'a str,
        expires: u64,
        #[serde(rename = "type")]
        provider: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        v2_authid: Option<&'a str>,
    }
    for (at, authid) in [
        ("ya29.a0-_~+/=", None),
        ("quote\" back\\slash \u{1} é \u{2028}", Some("v3:new")),
    ] {
        let t = CachedToken::new(
            Sensitive::new(at),
            NOW + 3600,
            "box.com".into(),
            authid.map(Arc::from),
            [0; 32],
            false,
        );
        assert_eq!(t.access_token().expose(), at);
        assert_eq!(t.provider(), "box.com");
        for expires in [0, 7, 3599, u64::MAX] {
            let want = serde_json::to_vec(&Body {
                access_token: at,
                expires,
                provider: "box.com",
                v2_authid: authid,
            })
            .unwrap();
            assert_eq!(t.json_body(expires), want);
        }
    }
}

#[test]
fn debug_shows_no_token_or_authid() {
    let t = CachedToken::new(
        Sensitive::new("at-secret"),
        1,
        "x".into(),
        Some(Arc::from("v3:secret-authid")),
        [0; 32],
        true,
    );
    let text = format!("{t:?}");
    assert!(!text.contains("secret"), "{text}");
}

#[test]
fn login_key_depends_on_every_part() {
    let rt = [1u8; 32];
    let base = TokenCache::login_key("a", "j", &rt);
    assert_ne!(base, TokenCache::login_key("b", "j", &rt));
    assert_ne!(base, TokenCache::login_key("a", "k", &rt));
    assert_ne!(base, TokenCache::login_key("a", "j", &[2u8; 32]));
    // Length-prefixed: no ambiguity from moving a boundary.
    assert_ne!(
        TokenCache::login_key("ab", "c", &rt),
        TokenCache::login_key("a", "bc", &rt)
    );
}
