//! Refreshing: cache hits, single flight, rotation, re-sealing, errors.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::*;

#[tokio::test]
async fn sequential_refreshes_hit_the_cache() {
    let f = fixture();
    let authid = f.authid("googledrive", "rt-1");
    for i in 0..20 {
        let a = f.refresher.refresh_for(&authid).await.unwrap();
        assert_eq!(a.access_token().expose(), "at-default");
        assert_eq!(a.provider(), "googledrive");
        assert!(a.new_authid().is_none());
        assert_eq!(a.expires, 3600 - i);
        f.clock.advance(1);
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn token_is_refreshed_when_a_minute_or_less_remains() {
    let f = fixture();
    let authid = f.authid("googledrive", "rt-1");
    f.refresher.refresh_for(&authid).await.unwrap();
    f.clock.advance(3600 - 61);
    assert_eq!(f.refresher.refresh_for(&authid).await.unwrap().expires, 61);
    f.clock.advance(1);
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap().expires,
        3600
    );
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_refreshes_make_one_upstream_call() {
    let f = fixture();
    let authid = Arc::new(f.authid("googledrive", "rt-1"));
    let (release, gate) = tokio::sync::watch::channel(false);
    *f.client.gate.lock().unwrap() = Some(gate);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let r = f.refresher.clone();
        let a = Arc::clone(&authid);
        tasks.push(tokio::spawn(async move { r.refresh_for(&a).await }));
    }
    while f.client.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    release.send(true).unwrap();
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap().access_token().expose(),
            "at-default"
        );
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rotated_refresh_token_comes_back_as_a_new_authid() {
    let f = fixture();
    f.client.push(
        200,
        r#"{"access_token":"at-1","expires_in":3600,"refresh_token":"rt-2"}"#,
    );
    let authid = f.authid("box.com", "rt-1");
    let a = f.refresher.refresh_for(&authid).await.unwrap();
    let new = a.new_authid().map(str::to_string).expect("v2_authid");
    let opened = f.keyring.open(new.strip_prefix("v3:").unwrap()).unwrap();
    assert_eq!(opened.claims.rt.expose(), "rt-2");
    let original = f.keyring.open(authid.strip_prefix("v3:").unwrap()).unwrap();
    assert_eq!(opened.claims.jti, original.claims.jti, "same login");
    // The new AuthID is served from cache without another call.
    let b = f.refresher.refresh_for(&new).await.unwrap();
    assert_eq!(b.access_token().expose(), "at-1");
    assert!(b.new_authid().is_some());
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn same_refresh_token_back_is_not_a_rotation() {
    let f = fixture();
    f.client.push(
        200,
        r#"{"access_token":"at-1","expires_in":3600,"refresh_token":"rt-1"}"#,
    );
    let a = f
        .refresher
        .refresh_for(&f.authid("googledrive", "rt-1"))
        .await
        .unwrap();
    assert!(a.new_authid().is_none());
}

#[tokio::test]
async fn v2_and_old_key_authids_are_resealed() {
    let f = fixture();
    let a = f
        .refresher
        .refresh_for("v2:googledrive:rt-legacy")
        .await
        .unwrap();
    let new = a.new_authid().map(str::to_string).expect("upgraded");
    let opened = f.keyring.open(new.strip_prefix("v3:").unwrap()).unwrap();
    assert_eq!(opened.claims.rt.expose(), "rt-legacy");
    assert_eq!(opened.claims.provider, "googledrive");

    let old = f.authid("googledrive", "rt-old-key");
    let old_key = Arc::clone(f.keyring.current().primary());
    let new_key = Arc::new(ServerKey::generate("next", 1).unwrap().0);
    f.keyring
        .replace(Keyring::new([old_key, new_key], "next", HashSet::new()).unwrap());
    let a = f.refresher.refresh_for(&old).await.unwrap();
    let resealed = a.new_authid().map(str::to_string).expect("re-sealed");
    assert_eq!(
        f.keyring
            .open(resealed.strip_prefix("v3:").unwrap())
            .unwrap()
            .kid,
        "next"
    );
    // Both texts now hit the cache: one upstream call for each login.
    f.refresher.refresh_for(&resealed).await.unwrap();
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_resealed_authid_finds_the_cached_token() {
    let f = fixture();
    let claims = Claims::new("googledrive", Sensitive::new("rt-1"), 1);
    let first = f.keyring.seal(&claims).unwrap();
    let second = f.keyring.seal(&claims).unwrap();
    assert_ne!(first, second);
    f.refresher.refresh_for(&first).await.unwrap();
    f.refresher.refresh_for(&second).await.unwrap();
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_forged_login_id_does_not_reach_another_users_token() {
    let f = fixture();
    let victim = Claims::new("googledrive", Sensitive::new("rt-victim"), 1);
    f.refresher
        .refresh_for(&f.keyring.seal(&victim).unwrap())
        .await
        .unwrap();
    // Anyone with the public key can mint an AuthID naming the victim's
    // login id, but not with the victim's login secret.
    let mut forged = Claims::new("googledrive", Sensitive::new("rt-attacker"), 1);
    forged.jti = victim.jti.clone();
    f.client.push(400, r#"{"error":"invalid_grant"}"#);
    let err = f
        .refresher
        .refresh_for(&f.keyring.seal(&forged).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.label(), "reauthorize");
}

#[tokio::test]
async fn errors_are_not_cached_and_upstream_classes_pass_through() {
    let f = fixture();
    let authid = f.authid("googledrive", "rt-1");
    f.client.push(500, "<html>");
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap_err().label(),
        "error"
    );
    assert!(f.refresher.refresh_for(&authid).await.is_ok());
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn provider_problems_are_reported() {
    let f = fixture();
    let err = f
        .refresher
        .refresh_for(&f.authid("nosuch", "rt"))
        .await
        .unwrap_err();
    assert!(matches!(err, RefreshError::UnknownProvider(_)));
    let err = f
        .refresher
        .refresh_for(&f.authid("pcloud", "at"))
        .await
        .unwrap_err();
    assert!(matches!(err, RefreshError::AccessTokenOnly(_)));
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn refresh_form_follows_provider_quirks() {
    let f = fixture();
    let drive = f.refresher.catalogue().get("googledrive").unwrap();
    let form = drive.refresh_form(&Sensitive::new("rt"), "https://x/logged-in");
    let names: Vec<&str> = form.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(
        names,
        [
            "grant_type",
            "refresh_token",
            "client_id",
            "client_secret",
            "redirect_uri"
        ]
    );
}

/// A rotation count at its end (in the AuthID, or in the store's record)
/// is a corrupt record: refused with a reason before the provider is
/// called, never a panic or a count wrapped to zero.
#[tokio::test]
async fn a_rotation_count_at_its_end_is_refused_before_the_call() {
    let f = fixture();
    let mut claims = Claims::new("box.com", Sensitive::new("rt-1"), f.clock.now());
    crate::authid::set_generation(&mut claims, u64::MAX);
    let authid = f.keyring.seal(&claims).unwrap();
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap_err(),
        RefreshError::CorruptGeneration
    );

    let other = f.authid("box.com", "rt-2");
    let (records, _) = f.records_of(&other);
    let record = records
        .seal_rotation(u64::MAX, &Sensitive::new("rt-3"))
        .unwrap();
    records
        .put_rotation(record, Duration::from_secs(600))
        .await
        .unwrap();
    let err = f.refresher.refresh_for(&other).await.unwrap_err();
    assert_eq!(err, RefreshError::CorruptGeneration);
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 0, "nothing spent");
}
