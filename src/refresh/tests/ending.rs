//! Ending a login, here and on another instance.

use std::sync::atomic::Ordering;

use super::*;

#[tokio::test]
async fn ending_a_login_revokes_the_newest_token_and_refuses_every_authid_of_it() {
    let f = fixture();
    f.client.push(
        200,
        r#"{"access_token":"at-1","expires_in":3600,"refresh_token":"rt-2"}"#,
    );
    let pasted = f.authid("box.com", "rt-1");
    let newest = f
        .refresher
        .refresh_for(&pasted)
        .await
        .unwrap()
        .new_authid()
        .unwrap()
        .to_string();
    let login = f.refresher.open(&pasted).unwrap();
    let ending = f.refresher.begin_ending(&pasted, login).await.unwrap();
    let tokens: Vec<_> = ending
        .refresh_tokens()
        .iter()
        .map(|t| t.expose().to_string())
        .collect();
    assert_eq!(tokens, ["rt-2", "rt-1"], "the newest first");
    ending.finish().await.unwrap();
    for text in [&pasted, &newest] {
        assert_eq!(
            f.refresher.refresh_for(text).await.unwrap_err(),
            RefreshError::Revoked
        );
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1, "no call after");
    let (records, _) = f.records_of(&pasted);
    assert!(records.rotation().await.unwrap().is_none());
    assert!(records.token(f.clock.now()).await.unwrap().is_none());
    assert!(
        records
            .try_lock(Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn an_abandoned_ending_leaves_the_login_as_it_was() {
    let f = fixture();
    let authid = f.authid("box.com", "rt-1");
    f.refresher.refresh_for(&authid).await.unwrap();
    let login = f.refresher.open(&authid).unwrap();
    let ending = f.refresher.begin_ending(&authid, login).await.unwrap();
    assert_eq!(ending.refresh_tokens().len(), 1);
    ending.abandon().await;
    assert!(f.refresher.refresh_for(&authid).await.is_ok());
    let (records, _) = f.records_of(&authid);
    assert!(
        records
            .try_lock(Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_cached_answer_ends_within_a_minute_of_a_revocation_elsewhere() {
    let f = fixture();
    let authid = f.authid("googledrive", "rt-1");
    f.refresher.refresh_for(&authid).await.unwrap();
    // Another instance on the same store ends the login.
    let (records, _) = f.records_of(&authid);
    records
        .mark_revoked(Duration::from_secs(3600))
        .await
        .unwrap();
    records.forget().await.unwrap();
    f.clock.advance(REVOCATION_RECHECK_SECS - 1);
    assert!(
        f.refresher.refresh_for(&authid).await.is_ok(),
        "still cached"
    );
    f.clock.advance(1);
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap_err(),
        RefreshError::Revoked
    );
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap_err(),
        RefreshError::Revoked,
        "and it stays ended"
    );
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_shared_token_of_a_revoked_login_is_not_served() {
    let f = fixture();
    let authid = f.authid("googledrive", "rt-1");
    // Another instance shared a token, then the login was marked revoked
    // without the token being dropped (the drop failed, or the share
    // landed after it).
    let (records, _) = f.records_of(&authid);
    let now = f.clock.now();
    let token = SharedToken {
        access_token: Sensitive::new("at-elsewhere"),
        expires_at: now + 3600,
    };
    records.put_token(&token, now).await.unwrap();
    records
        .mark_revoked(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap_err(),
        RefreshError::Revoked
    );
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 0);
}
