//! Earlier registrations (`previousClients`): an AuthID issued under one is
//! refreshed and revoked at that registration's endpoints with its
//! credentials, while new logins use the entry's own client.

use axum::http::StatusCode;
use oauth_broker::authid::Claims;
use oauth_broker::secret::Sensitive;
use serde_json::json;

use crate::login::{authid_in, full_login};
use crate::support::broker::{Broker, CLIENT_ID, CLIENT_SECRET, Setup, assert_error_shape};
use crate::support::mock_provider::MockProvider;

const OLD_ID: &str = "old-registration";
const OLD_SECRET: &str = "old-registration-secret";

/// Box, whose current registration is `current` and whose earlier one
/// (the App Engine service's, so `legacy`) is `old`, on its own endpoints.
fn broker(current: &MockProvider, old: &MockProvider) -> Broker {
    let (token_url, revoke_url) = (old.token_url(), old.revoke_url());
    let broker = Setup::new(current, &["box.com"])
        .adjust(move |entries| {
            entries[0]["previousClients"] = json!([{
                "clientId": OLD_ID,
                "clientSecret": "%OLD_SECRET%",
                "authUrl": token_url,
                "revokeUrl": revoke_url,
                "legacy": true,
            }]);
        })
        .secrets(json!({ "TEST_SECRET": CLIENT_SECRET, "OLD_SECRET": OLD_SECRET }).to_string())
        .build();
    old.set_client(OLD_ID, OLD_SECRET);
    broker
}

fn seal_for(broker: &Broker, rt: &str, cid: Option<&str>) -> String {
    let mut claims = Claims::new("box.com", Sensitive::new(rt), broker.app.now());
    if let Some(cid) = cid {
        claims.set_client_id(cid);
    }
    broker.app.keyring().seal(&claims).unwrap()
}

#[tokio::test]
async fn an_authid_of_a_previous_client_refreshes_with_that_client() {
    let current = MockProvider::start().await;
    let old = MockProvider::start().await;
    let broker = broker(&current, &old);

    let authid = seal_for(&broker, &old.issue_refresh_token(), Some(OLD_ID));
    let reply = broker.refresh(&authid).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let sent = old.last_token_request().unwrap();
    assert_eq!(sent["client_id"], OLD_ID);
    assert_eq!(sent["client_secret"], OLD_SECRET);
    assert_eq!(current.token_calls(), 0);

    // A new login uses the entry's own client, and its AuthID says so.
    let page = full_login(&broker, "/login?id=box.com").await;
    let fresh = authid_in(&page.body).expect("an AuthID");
    let exchange = current.last_token_request().unwrap();
    assert_eq!(exchange["client_id"], CLIENT_ID);
    let opened = broker
        .app
        .keyring()
        .open(fresh.strip_prefix("v3:").unwrap())
        .unwrap();
    assert_eq!(opened.claims.client_id(), Some(CLIENT_ID));
    let before = old.token_calls();
    assert_eq!(broker.refresh(&fresh).await.status, StatusCode::OK);
    assert_eq!(
        current.last_token_request().unwrap()["grant_type"],
        "refresh_token"
    );
    assert_eq!(
        old.token_calls(),
        before,
        "the old registration is not used"
    );

    // An AuthID without cid is the entry's own client's.
    let plain = seal_for(&broker, &current.issue_refresh_token(), None);
    assert_eq!(broker.refresh(&plain).await.status, StatusCode::OK);

    let metrics = broker.get("/metrics").await.body;
    for client in ["previous", "current"] {
        assert!(
            metrics.contains(&format!(
                "oauth_broker_authids_opened_by_client_total{{provider=\"box.com\",client=\"{client}\"}}"
            )),
            "{client}:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn an_authid_of_a_client_no_longer_held_is_told_to_log_in_again() {
    let current = MockProvider::start().await;
    let old = MockProvider::start().await;
    let broker = broker(&current, &old);
    let authid = seal_for(&broker, "rt-of-a-forgotten-client", Some("forgotten"));
    let reply = broker.refresh(&authid).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_error_shape(&reply);
    assert!(reply.body.contains("http://127.0.0.1:9"), "{}", reply.body);
    assert_eq!(current.token_calls() + old.token_calls(), 0);
}

#[tokio::test]
async fn revocation_uses_the_previous_client_and_its_endpoint() {
    let current = MockProvider::start().await;
    let old = MockProvider::start().await;
    let broker = broker(&current, &old);
    let rt = old.issue_refresh_token();
    let authid = seal_for(&broker, &rt, Some(OLD_ID));
    let reply = broker
        .post_form("/revoked", &format!("authid={}", urlencode(&authid)))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let sent = old
        .last_revoke_request()
        .expect("revoked at the old endpoint");
    assert_eq!(sent["client_id"], OLD_ID);
    assert_eq!(sent["client_secret"], OLD_SECRET);
    assert_eq!(current.revoke_calls(), 0);
    assert!(!old.is_valid_refresh_token(&rt));
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The registration Box used before `CLIENT_ID`, moved into
/// previousClients and marked as the owner of AuthIDs that name no client.
fn moved_broker(current: &MockProvider, moved: &MockProvider) -> Broker {
    let token_url = moved.token_url();
    let broker = Setup::new(current, &["box.com"])
        .adjust(move |entries| {
            entries[0]["previousClients"] = json!([{
                "clientId": OLD_ID,
                "clientSecret": "%OLD_SECRET%",
                "authUrl": token_url,
                "unlabelled": true,
            }]);
        })
        .secrets(json!({ "TEST_SECRET": CLIENT_SECRET, "OLD_SECRET": OLD_SECRET }).to_string())
        .build();
    moved.set_client(OLD_ID, OLD_SECRET);
    broker
}

#[tokio::test]
async fn moving_the_current_client_marked_unlabelled_breaks_no_authid_and_every_reseal_names_it() {
    let current = MockProvider::start().await;
    let moved = MockProvider::start().await;
    moved.set_rotation(crate::support::mock_provider::Rotation::SingleUse);
    let broker = moved_broker(&current, &moved);
    let no_cid = seal_for(&broker, &moved.issue_refresh_token(), None);
    let legacy = format!("v2:box.com:{}", moved.issue_refresh_token());
    for authid in [&no_cid, &legacy] {
        let reply = broker.refresh(authid).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(moved.last_token_request().unwrap()["client_id"], OLD_ID);
        // The rotation's (or the upgrade's) re-sealed AuthID names it.
        let resealed = reply.json()["v2_authid"].as_str().unwrap().to_string();
        let opened = broker
            .app
            .keyring()
            .open(resealed.strip_prefix("v3:").unwrap())
            .unwrap();
        assert_eq!(opened.claims.client_id(), Some(OLD_ID));
        assert_eq!(broker.refresh(&resealed).await.status, StatusCode::OK);
    }
    assert_eq!(current.token_calls(), 0, "nothing went to the new client");
    assert_eq!(moved.spent_token_presentations(), 0);
}
