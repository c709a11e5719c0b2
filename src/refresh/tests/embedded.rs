//! The embedded store, which one process owns: what a refresh keeps there
//! (rotation records, durable) and what it keeps in this process only
//! (the access token, which no other instance could read), and the
//! login's turn in this process, which a revocation and a rotation share.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::store::EmbeddedStore;

#[tokio::test]
async fn on_the_embedded_store_a_refresh_records_its_rotation_and_keeps_the_access_token_in_process()
 {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture_on(Arc::new(EmbeddedStore::open(dir.path()).unwrap()));
    let boxed = f.authid("box.com", "rt-1");
    f.client.push(
        200,
        r#"{"access_token": "at-1", "expires_in": 3600, "refresh_token": "rt-2"}"#,
    );
    let answer = f.refresher.refresh_for(&boxed).await.unwrap();
    assert_eq!(answer.access_token().expose(), "at-1");
    let (records, login) = f.records_of(&boxed);
    let rotation = records
        .rotation()
        .await
        .unwrap()
        .expect("rotation recorded");
    let newest = records.open_rotation(&rotation).unwrap();
    assert_eq!(newest.refresh_token.expose(), "rt-2");
    assert!(
        records.token(f.clock.now()).await.unwrap().is_none(),
        "no access token in a store only this process reads"
    );

    // The same login again: the cache answers, by text and by login.
    let again = f.refresher.refresh_for(&boxed).await.unwrap();
    assert_eq!(again.access_token().expose(), "at-1");
    let newer = answer.new_authid().expect("the client switches");
    assert_eq!(
        f.refresher
            .refresh_for(newer)
            .await
            .unwrap()
            .access_token()
            .expose(),
        "at-1"
    );
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
    assert!(login.rotates());
}

#[tokio::test]
async fn on_a_shared_store_a_refresh_shares_its_access_token() {
    let f = fixture();
    let google = f.authid("googledrive", "rt-g");
    f.client
        .push(200, r#"{"access_token": "at-g", "expires_in": 3600}"#);
    f.refresher.refresh_for(&google).await.unwrap();
    let (records, _) = f.records_of(&google);
    let shared = records.token(f.clock.now()).await.unwrap().expect("shared");
    assert_eq!(shared.access_token.expose(), "at-g");
}

/// Polls (bounded) until the scripted provider has been called `n` times.
async fn until_called(f: &Fixture, n: usize) {
    for _ in 0..2000 {
        if f.client.calls.load(Ordering::SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the provider was not called");
}

#[tokio::test]
async fn on_the_embedded_store_a_revocation_during_a_rotation_waits_for_it_and_revokes_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture_on(Arc::new(EmbeddedStore::open(dir.path()).unwrap()));
    let boxed = f.authid("box.com", "rt-1");
    let (open, gate) = tokio::sync::watch::channel(false);
    *f.client.gate.lock().unwrap() = Some(gate);
    f.client.push(
        200,
        r#"{"access_token": "at-1", "expires_in": 3600, "refresh_token": "rt-2"}"#,
    );
    let refreshing = {
        let (refresher, text) = (f.refresher.clone(), boxed.clone());
        tokio::spawn(async move { refresher.refresh_for(&text).await })
    };
    // The provider has spent rt-1 and is about to answer with rt-2.
    until_called(&f, 1).await;
    let ending = {
        let (refresher, text) = (f.refresher.clone(), boxed.clone());
        let login = f.refresher.open(&boxed).unwrap();
        tokio::spawn(async move { refresher.begin_ending(&text, login).await })
    };
    open.send(true).unwrap();
    let answer = refreshing.await.unwrap().unwrap();
    let ending = ending.await.unwrap().unwrap();
    let tokens: Vec<_> = ending
        .refresh_tokens()
        .iter()
        .map(|t| t.expose().to_string())
        .collect();
    assert_eq!(tokens, ["rt-2", "rt-1"], "the rotation's token first");
    ending.finish().await.unwrap();
    let newest = answer.new_authid().expect("rotated");
    assert_eq!(
        f.refresher.refresh_for(newest).await.unwrap_err(),
        RefreshError::Revoked
    );
    assert_eq!(f.refresher.inner.turns_here.in_use(), 0);
}

#[tokio::test]
async fn on_the_embedded_store_a_refresh_during_a_revocation_waits_for_it_and_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture_on(Arc::new(EmbeddedStore::open(dir.path()).unwrap()));
    let boxed = f.authid("box.com", "rt-1");
    let login = f.refresher.open(&boxed).unwrap();
    let ending = f.refresher.begin_ending(&boxed, login).await.unwrap();
    let refreshing = {
        let (refresher, text) = (f.refresher.clone(), boxed.clone());
        tokio::spawn(async move { refresher.refresh_for(&text).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        f.client.calls.load(Ordering::SeqCst),
        0,
        "no call while the login is being ended"
    );
    assert_eq!(f.refresher.inner.flights.in_flight(), 1, "it waits");
    ending.finish().await.unwrap();
    assert_eq!(
        refreshing.await.unwrap().unwrap_err(),
        RefreshError::Revoked
    );
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 0);
}
