//! The budget of made-up `v2:` AuthIDs and the per-login counters.

use std::sync::atomic::Ordering;

use super::*;

#[tokio::test]
async fn made_up_v2_authids_have_a_budget_of_their_own_and_count_against_the_address() {
    let f = fixture();
    let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let (mut refused, mut reauthorize) = (0, 0);
    // Google's budget is 50/s with a burst of 100: 5/s and 10 for these.
    for i in 0..30 {
        f.client.push(400, r#"{"error":"invalid_grant"}"#);
        match f
            .refresher
            .refresh(&format!("v2:googledrive:made-up-{i}"), Some(ip))
            .await
        {
            Err(RefreshError::Upstream(UpstreamError::Reauthorize { .. })) => reauthorize += 1,
            Err(RefreshError::Refused(Refusal::UnknownV2(_))) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), reauthorize);
    assert!(refused > 0 && reauthorize < 30, "{reauthorize} calls");
    // Each refusal by the provider counted against the address.
    let limit = Limits::default().bad_authids_per_minute as usize;
    let left = (0..limit)
        .take_while(|_| f.refresher.inner.bad_authids.hit(ip, f.clock.now()).is_ok())
        .count();
    assert_eq!(left, limit - reauthorize);
    // A sealed AuthID still has the provider's budget.
    f.client.clear();
    let sealed = f.authid("googledrive", "rt-real");
    assert!(f.refresher.refresh_for(&sealed).await.is_ok());
}

#[tokio::test]
async fn a_v2_login_the_provider_accepted_leaves_the_small_budget() {
    let f = fixture();
    let real = "v2:googledrive:real-legacy-token";
    assert!(f.refresher.refresh_for(real).await.is_ok());
    f.clock.advance(3600);
    // Made-up ones spend the budget of legacy AuthIDs never seen...
    let mut spent = false;
    for i in 0..200 {
        f.client.push(400, r#"{"error":"invalid_grant"}"#);
        let made_up = f
            .refresher
            .refresh_for(&format!("v2:googledrive:made-up-{i}"))
            .await;
        if let Err(RefreshError::Refused(Refusal::UnknownV2(_))) = made_up {
            spent = true;
            break;
        }
    }
    assert!(spent);
    f.client.clear();
    // ...and the known one, whose access token expired, is refreshed.
    let calls = f.client.calls.load(Ordering::SeqCst);
    assert!(f.refresher.refresh_for(real).await.is_ok());
    assert_eq!(f.client.calls.load(Ordering::SeqCst), calls + 1);
}

#[tokio::test]
async fn per_login_counters_stay_within_the_cache_capacity_under_a_flood_of_logins() {
    let f = fixture();
    // Legacy AuthIDs open without a key: each made-up one is a new login.
    for i in 0..2500 {
        let _ = f
            .refresher
            .refresh_for(&format!("v2:googledrive:made-up-{i}"))
            .await;
    }
    let inner = &f.refresher.inner;
    for (name, held) in [
        ("requests", inner.login_requests.len()),
        ("refreshes", inner.login_refreshes.len()),
    ] {
        assert!(held <= 1000, "{name}: {held} counters for 2500 logins");
    }
}
