//! The embedded store, which one process owns: what a refresh keeps there
//! (rotation records, durable) and what it keeps in this process only
//! (the access token, which no other instance could read).

use std::sync::Arc;
use std::sync::atomic::Ordering;

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
