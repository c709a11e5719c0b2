//! Several instances on one store behave as one broker (SPEC 8): each
//! scenario runs two in-process brokers that share a store and a server
//! key, with the mock provider playing the provider. The scenarios run on
//! any [`Backend`]; here on shared in-memory stores.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use oauth_broker::authid::ServerKey;
use oauth_broker::clock::{Clock, ManualClock, SystemClock};
use oauth_broker::refresh::REVOCATION_RECHECK_SECS;
use oauth_broker::store::Store;
use serde_json::Value;

use crate::login::{authid_in, authorize, callback, start};
use crate::support::broker::{Broker, Reply, Setup, assert_error_shape, server_key};
use crate::support::mock_provider::{Fault, MockProvider, Rotation};
use crate::support::store::{TestStore, assert_holds_none_of};

/// Where the instances of a deployment keep their shared state.
pub trait Backend {
    /// The store as a newly started instance opens it.
    fn open(&self) -> Arc<dyn Store>;
    /// What `/ready` reports as the store's kind.
    fn kind(&self) -> &'static str;
    /// Makes the store unreachable, or brings it back with its data.
    fn set_down(&self, down: bool);
    /// Every key name and value the store holds (or was ever given).
    fn dump(&self) -> Vec<(String, Vec<u8>)>;
}

impl Backend for Arc<TestStore> {
    fn open(&self) -> Arc<dyn Store> {
        Arc::clone(self) as Arc<dyn Store>
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn set_down(&self, down: bool) {
        TestStore::set_down(self, down);
    }

    fn dump(&self) -> Vec<(String, Vec<u8>)> {
        TestStore::dump(self)
    }
}

/// Instances of one deployment: same providers, clock, key and store.
pub struct Deployment<'a> {
    providers: Vec<(&'a MockProvider, Vec<&'a str>)>,
    pub clock: ManualClock,
    key: Arc<ServerKey>,
    pub backend: &'a dyn Backend,
}

impl<'a> Deployment<'a> {
    pub fn new(backend: &'a dyn Backend, mock: &'a MockProvider, ids: &[&'a str]) -> Self {
        Self {
            providers: vec![(mock, ids.to_vec())],
            clock: ManualClock::new(SystemClock.now()),
            key: server_key(),
            backend,
        }
    }

    fn and(mut self, mock: &'a MockProvider, ids: &[&'a str]) -> Self {
        self.providers.push((mock, ids.to_vec()));
        self
    }

    /// A new instance; building one again is a restart.
    pub fn instance(&self) -> Broker {
        let (first, ids) = &self.providers[0];
        let mut setup = Setup::new(first, ids)
            .clock(Arc::new(self.clock.clone()))
            .store(self.backend.open())
            .key(Arc::clone(&self.key));
        for (mock, ids) in &self.providers[1..] {
            setup = setup.and(mock, ids);
        }
        let broker = setup.build();
        // Building sets the mock's expected client; Jottacloud's is public.
        for (mock, ids) in &self.providers {
            if ids.contains(&"jottacloud") {
                mock.set_client("jottacli", "");
            }
        }
        broker
    }

    /// Asserts that nothing the store holds (or was given) contains a
    /// token the mock handed out, or any of `more` (AuthIDs, fetch tokens).
    fn assert_store_holds_no_secret(&self, more: &[String]) {
        let mut secrets: Vec<String> = self
            .providers
            .iter()
            .flat_map(|(mock, _)| mock.issued_tokens())
            .collect();
        secrets.extend(more.iter().cloned());
        assert_holds_none_of(&self.backend.dump(), &secrets);
    }
}

fn ok_json(reply: &Reply, what: &str) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.body);
    reply.json()
}

/// The refresh token inside an AuthID.
fn refresh_token_in(broker: &Broker, authid: &str) -> String {
    let opened = broker
        .app
        .keyring()
        .open(authid.strip_prefix("v3:").expect("v3"))
        .expect("opens");
    opened.claims.rt.expose().to_string()
}

fn metric(broker: &Broker, line_start: &str) -> f64 {
    broker.app.refresher().update_gauges();
    broker
        .app
        .metrics()
        .render()
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Six backup runs an hour apart, from the AuthID the user pasted (the
/// client never keeps `v2_authid`), alternating instances, each run
/// starting three client objects on alternating instances, with a
/// rolling restart of both instances halfway.
pub async fn six_runs_over_two_instances(backend: &dyn Backend, id: &str, rotation: Rotation) {
    let mock = MockProvider::start().await;
    mock.set_rotation(rotation);
    let deployment = Deployment::new(backend, &mock, &[id]);
    let mut instances = [deployment.instance(), deployment.instance()];
    let pasted = instances[0].seal(id, &mock.issue_refresh_token());
    let mut seen = vec![pasted.clone()];
    for run in 0..6 {
        if run == 3 || run == 4 {
            // Rolling restart: one instance at a time is replaced.
            instances[run - 3] = deployment.instance();
        }
        let mut newest = None;
        for client in 0..3 {
            let broker = &instances[(run + client) % 2];
            let json = ok_json(
                &broker.refresh(&pasted).await,
                &format!("{id} run {run} client {client}"),
            );
            assert!(mock.is_valid_access_token(json["access_token"].as_str().unwrap()));
            let v2 = json["v2_authid"]
                .as_str()
                .expect("the newest AuthID is offered")
                .to_string();
            let rt = refresh_token_in(broker, &v2);
            assert!(
                newest.get_or_insert(rt.clone()) == &rt,
                "{id} run {run}: every client object is told the same newest token"
            );
            seen.push(v2);
        }
        deployment.clock.advance(3600);
    }
    assert_eq!(
        mock.spent_token_presentations(),
        0,
        "{id}: a spent token reached the provider"
    );
    assert_eq!(mock.token_calls(), 6, "{id}: one refresh per run");
    let last = seen.last().unwrap();
    assert!(
        mock.is_valid_refresh_token(&refresh_token_in(&instances[0], last)),
        "{id}: the token family survives"
    );
    deployment.assert_store_holds_no_secret(&seen);
}

pub async fn forty_concurrent_refreshes_over_two_instances_make_one_provider_call(
    backend: &dyn Backend,
) {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUse);
    mock.push_fault(Fault::Delay(Duration::from_millis(300)));
    let deployment = Deployment::new(backend, &mock, &["box.com"]);
    let instances = [
        Arc::new(deployment.instance()),
        Arc::new(deployment.instance()),
    ];
    let authid: Arc<str> = Arc::from(instances[0].seal("box.com", &mock.issue_refresh_token()));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let broker = Arc::clone(&instances[i % 2]);
            let authid = Arc::clone(&authid);
            tokio::spawn(async move { (i % 2, broker.refresh(&authid).await) })
        })
        .collect();
    let mut newest = std::collections::HashSet::new();
    let mut seen = vec![authid.to_string()];
    for task in tasks {
        let (instance, reply) = task.await.unwrap();
        let json = ok_json(&reply, "concurrent refresh");
        let v2 = json["v2_authid"].as_str().expect("v2_authid").to_string();
        newest.insert(refresh_token_in(&instances[instance], &v2));
        seen.push(v2);
    }
    assert_eq!(mock.token_calls(), 1, "one refresh at the provider");
    assert_eq!(mock.spent_token_presentations(), 0);
    assert_eq!(newest.len(), 1, "everyone is told the same newest token");
    deployment.assert_store_holds_no_secret(&seen);
}

pub async fn a_google_token_obtained_on_one_instance_is_served_by_the_other(backend: &dyn Backend) {
    let mock = MockProvider::start().await;
    let deployment = Deployment::new(backend, &mock, &["googledrive"]);
    let (one, two) = (deployment.instance(), deployment.instance());
    let authid = one.seal("googledrive", &mock.issue_refresh_token());
    let first = ok_json(&one.refresh(&authid).await, "instance 1");
    let second = ok_json(&two.refresh(&authid).await, "instance 2");
    assert_eq!(second["access_token"], first["access_token"]);
    assert!(second.get("v2_authid").is_none());
    assert_eq!(mock.token_calls(), 1, "no second provider call");
    assert_eq!(
        metric(
            &two,
            "oauth_broker_refreshes_total{provider=\"googledrive\",outcome=\"shared\"}"
        ),
        1.0
    );
    deployment.assert_store_holds_no_secret(&[authid]);
}

pub async fn a_retry_after_seen_by_one_instance_holds_the_other(backend: &dyn Backend) {
    let mock = MockProvider::start().await;
    let deployment = Deployment::new(backend, &mock, &["googledrive"]);
    let (one, two) = (deployment.instance(), deployment.instance());
    mock.push_fault(Fault::Throttle {
        status: 429,
        retry_after: Some("30".into()),
    });
    let throttled = one
        .refresh(&one.seal("googledrive", &mock.issue_refresh_token()))
        .await;
    assert_eq!(throttled.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(throttled.header("retry-after"), Some("30"));
    assert_eq!(mock.token_calls(), 1);

    deployment.clock.advance(10);
    let held = two
        .refresh(&two.seal("googledrive", &mock.issue_refresh_token()))
        .await;
    assert_eq!(
        held.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        held.body
    );
    assert_error_shape(&held);
    assert_eq!(held.header("retry-after"), Some("20"));
    assert_eq!(mock.token_calls(), 1, "no call inside the window");

    deployment.clock.advance(20);
    let after = two
        .refresh(&two.seal("googledrive", &mock.issue_refresh_token()))
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
    assert_eq!(mock.token_calls(), 2);
}

const FETCH_TOKEN: &str = "shared-fetch-token-0123456789";

pub async fn a_login_finished_on_one_instance_is_fetched_once_on_the_other(backend: &dyn Backend) {
    let mock = MockProvider::start().await;
    let deployment = Deployment::new(backend, &mock, &["googledrive"]);
    let (one, two) = (deployment.instance(), deployment.instance());
    let page = one
        .get(&format!("/?type=googledrive&token={FETCH_TOKEN}"))
        .await;
    assert_eq!(page.status, 200);
    let wait = two.get(&format!("/fetch?token={FETCH_TOKEN}")).await;
    assert_eq!(wait.json(), serde_json::json!({"wait": "Not ready"}));

    let started = start(&one, &format!("/login?id=googledrive&token={FETCH_TOKEN}")).await;
    let back = authorize(&started.authorize).await;
    let logged_in = callback(&one, &back, Some(&started.cookie)).await;
    let authid = authid_in(&logged_in.body).expect("AuthID");

    let state = two.get(&format!("/token-state?token={FETCH_TOKEN}")).await;
    assert_eq!(state.json(), serde_json::json!({"success": false}));
    let fetched = two.get(&format!("/fetch?token={FETCH_TOKEN}")).await;
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(fetched.json()["authid"], authid.as_str());
    let again = one.get(&format!("/fetch?token={FETCH_TOKEN}")).await;
    assert_eq!(again.status, 404, "the AuthID is handed out once");
    assert_error_shape(&again);
    assert!(
        again.json()["error"]
            .as_str()
            .unwrap()
            .contains("No such token")
    );
    let state = one.get(&format!("/token-state?token={FETCH_TOKEN}")).await;
    assert_eq!(state.json(), serde_json::json!({"success": true}));

    let replayed = callback(&two, &back, Some(&started.cookie)).await;
    assert_eq!(replayed.status, 400);
    assert!(authid_in(&replayed.body).is_none());
    assert!(
        replayed.body.contains("already finished"),
        "{}",
        replayed.body
    );
    assert_eq!(mock.token_calls(), 1, "the code was exchanged once");
    deployment.assert_store_holds_no_secret(&[authid, FETCH_TOKEN.to_string()]);
}

pub async fn while_the_store_is_down_google_is_served_and_box_waits_then_goes_on(
    backend: &dyn Backend,
) {
    let google = MockProvider::start().await;
    let boxcom = MockProvider::start().await;
    boxcom.set_rotation(Rotation::SingleUse);
    let deployment = Deployment::new(backend, &google, &["googledrive"]).and(&boxcom, &["box.com"]);
    let (one, two) = (deployment.instance(), deployment.instance());
    let box_authid = one.seal("box.com", &boxcom.issue_refresh_token());
    let first = ok_json(&one.refresh(&box_authid).await, "box before the outage");
    assert!(first.get("v2_authid").is_some(), "rotated and recorded");

    deployment.backend.set_down(true);
    let google_authid = two.seal("googledrive", &google.issue_refresh_token());
    ok_json(
        &two.refresh(&google_authid).await,
        "google without the store",
    );
    assert_eq!(google.token_calls(), 1);

    let waits = two.refresh(&box_authid).await;
    assert_eq!(
        waits.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        waits.body
    );
    assert_error_shape(&waits);
    assert_eq!(waits.header("retry-after"), Some("5"));
    assert!(
        waits
            .header("x-reason")
            .unwrap()
            .contains("store is unavailable")
    );
    assert_eq!(
        boxcom.token_calls(),
        1,
        "no call with a token that may be spent"
    );

    let ready = two.get("/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
    let store = &ready.json()["store"];
    assert_eq!(store["kind"], backend.kind(), "{store}");
    assert_eq!(store["up"], false, "{store}");

    deployment.backend.set_down(false);
    deployment.clock.advance(3600);
    let back = ok_json(&two.refresh(&box_authid).await, "box after the outage");
    assert!(back.get("v2_authid").is_some());
    assert_eq!(boxcom.token_calls(), 2);
    assert_eq!(boxcom.spent_token_presentations(), 0);
    assert_eq!(two.get("/ready").await.json()["store"]["up"], true);
    deployment.assert_store_holds_no_secret(&[box_authid, google_authid]);
}

#[tokio::test]
async fn a_rotation_the_store_did_not_take_reaches_the_client_and_is_recorded_later() {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUseReuseDetection);
    let store = Arc::new(TestStore::new());
    let deployment = Deployment::new(&store, &mock, &["box.com"]);
    let (one, two) = (deployment.instance(), deployment.instance());
    let pasted = one.seal("box.com", &mock.issue_refresh_token());

    store.set_refuse_versioned(true);
    let json = ok_json(&one.refresh(&pasted).await, "unrecorded rotation");
    let v2 = json["v2_authid"]
        .as_str()
        .expect("the new AuthID")
        .to_string();
    assert_eq!(
        metric(
            &one,
            "oauth_broker_rotations_unrecorded_total{provider=\"box.com\"}"
        ),
        1.0
    );
    store.set_refuse_versioned(false);

    // The next run on the same instance records what it kept.
    deployment.clock.advance(3600);
    ok_json(&one.refresh(&pasted).await, "next run");
    // A client that kept the new AuthID is served on the other instance.
    deployment.clock.advance(3600);
    ok_json(&two.refresh(&pasted).await, "the other instance");
    assert_eq!(mock.token_calls(), 3);
    assert_eq!(mock.spent_token_presentations(), 0);
    deployment.assert_store_holds_no_secret(&[pasted, v2]);
}

#[tokio::test]
async fn an_authid_newer_than_the_store_is_believed_and_teaches_the_store() {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUseReuseDetection);
    let store = Arc::new(TestStore::new());
    let deployment = Deployment::new(&store, &mock, &["box.com"]);
    let (one, two) = (deployment.instance(), deployment.instance());
    let pasted = one.seal("box.com", &mock.issue_refresh_token());
    // A rotation the store missed, on an instance that is then replaced:
    // only the client's new AuthID knows the newest token.
    store.set_refuse_versioned(true);
    let v2 = ok_json(&one.refresh(&pasted).await, "unrecorded")["v2_authid"]
        .as_str()
        .unwrap()
        .to_string();
    drop(one);
    store.set_refuse_versioned(false);
    deployment.clock.advance(3600);
    // A client that keeps v2_authid presents it on the other instance.
    let json = ok_json(&two.refresh(&v2).await, "newer AuthID");
    let v3 = json["v2_authid"].as_str().unwrap().to_string();
    deployment.clock.advance(3600);
    // The store learned it: the pasted AuthID goes on too.
    let from_pasted = ok_json(&two.refresh(&pasted).await, "pasted");
    assert_eq!(mock.token_calls(), 3);
    assert_eq!(mock.spent_token_presentations(), 0);
    let newest = from_pasted["v2_authid"].as_str().unwrap().to_string();
    assert!(mock.is_valid_refresh_token(&refresh_token_in(&two, &newest)));
    deployment.assert_store_holds_no_secret(&[pasted, v2, v3, newest]);
}

/// A user pastes an AuthID, the client keeps presenting it (never
/// `v2_authid`) while Box rotates the token on both instances, then the
/// user revokes with that same pasted AuthID.
pub async fn revoking_the_pasted_box_authid_after_rotations_ends_the_login_on_every_instance(
    backend: &dyn Backend,
) {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUse);
    let deployment = Deployment::new(backend, &mock, &["box.com"]);
    let instances = [deployment.instance(), deployment.instance()];
    let pasted = instances[0].seal("box.com", &mock.issue_refresh_token());
    let mut newest = String::new();
    for run in 0..4 {
        if run > 0 {
            deployment.clock.advance(3600);
        }
        let json = ok_json(&instances[run % 2].refresh(&pasted).await, "run");
        newest = json["v2_authid"].as_str().expect("rotated").to_string();
    }
    let newest_rt = refresh_token_in(&instances[0], &newest);
    let pasted_rt = refresh_token_in(&instances[0], &pasted);
    assert!(mock.is_valid_refresh_token(&newest_rt));
    assert_eq!(mock.token_calls(), 4);

    let revoked = instances[0].revoke(&pasted).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.json()["result"], "revoked");
    let sent = mock.revoked();
    assert_eq!(
        sent.first(),
        Some(&newest_rt),
        "the newest token is revoked, not the spent one in the AuthID"
    );
    assert!(sent.iter().all(|t| *t == newest_rt || *t == pasted_rt));
    assert!(!mock.is_valid_refresh_token(&newest_rt));

    // Every AuthID of the login is refused: here, on a fresh instance,
    // and (once its cached answer is looked at again, within a minute)
    // on the instance that served the last run.
    let fresh = deployment.instance();
    for broker in [&instances[0], &fresh] {
        for text in [&pasted, &newest] {
            let reply = broker.refresh(text).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
            assert_error_shape(&reply);
            assert!(reply.header("x-reason").unwrap().contains("revoked"));
        }
    }
    deployment.clock.advance(REVOCATION_RECHECK_SECS);
    for text in [&newest, &pasted] {
        let reply = instances[1].refresh(text).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    }
    assert_eq!(mock.token_calls(), 4, "no refresh reached the provider");
    deployment.assert_store_holds_no_secret(&[pasted, newest]);
}

pub async fn revoking_a_rotating_login_while_the_store_is_down_changes_nothing(
    backend: &dyn Backend,
) {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUse);
    let deployment = Deployment::new(backend, &mock, &["box.com"]);
    let one = deployment.instance();
    let pasted = one.seal("box.com", &mock.issue_refresh_token());
    ok_json(&one.refresh(&pasted).await, "rotation");

    deployment.backend.set_down(true);
    let held = one.revoke(&pasted).await;
    assert_eq!(
        held.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        held.body
    );
    assert_error_shape(&held);
    assert_eq!(held.header("retry-after"), Some("5"));
    assert_eq!(
        mock.revoke_calls(),
        0,
        "no token was sent that may be stale"
    );

    deployment.backend.set_down(false);
    deployment.clock.advance(3600);
    ok_json(&one.refresh(&pasted).await, "the login goes on");
    assert_eq!(mock.spent_token_presentations(), 0);
}

/// The scenarios on in-memory stores shared by in-process instances.
mod memory {
    use super::*;

    fn store() -> Arc<TestStore> {
        Arc::new(TestStore::new())
    }

    #[tokio::test]
    async fn box_runs_from_the_pasted_authid_across_instances_and_a_rolling_restart() {
        six_runs_over_two_instances(&store(), "box.com", Rotation::SingleUse).await;
    }

    #[tokio::test]
    async fn jottacloud_runs_from_the_pasted_authid_across_instances_and_a_rolling_restart() {
        six_runs_over_two_instances(&store(), "jottacloud", Rotation::SingleUseReuseDetection)
            .await;
    }

    #[tokio::test]
    async fn forty_concurrent_refreshes_over_two_instances_make_one_provider_call() {
        super::forty_concurrent_refreshes_over_two_instances_make_one_provider_call(&store()).await;
    }

    #[tokio::test]
    async fn a_google_token_obtained_on_one_instance_is_served_by_the_other() {
        super::a_google_token_obtained_on_one_instance_is_served_by_the_other(&store()).await;
    }

    #[tokio::test]
    async fn a_retry_after_seen_by_one_instance_holds_the_other() {
        super::a_retry_after_seen_by_one_instance_holds_the_other(&store()).await;
    }

    #[tokio::test]
    async fn a_login_finished_on_one_instance_is_fetched_once_on_the_other() {
        super::a_login_finished_on_one_instance_is_fetched_once_on_the_other(&store()).await;
    }

    #[tokio::test]
    async fn while_the_store_is_down_google_is_served_and_box_waits_then_goes_on() {
        let store = store();
        super::while_the_store_is_down_google_is_served_and_box_waits_then_goes_on(&store).await;
        assert!(store.failures() > 0, "the store was down");
    }

    #[tokio::test]
    async fn revoking_the_pasted_box_authid_after_rotations_ends_the_login_on_every_instance() {
        super::revoking_the_pasted_box_authid_after_rotations_ends_the_login_on_every_instance(
            &store(),
        )
        .await;
    }

    #[tokio::test]
    async fn revoking_a_rotating_login_while_the_store_is_down_changes_nothing() {
        let store = store();
        super::revoking_a_rotating_login_while_the_store_is_down_changes_nothing(&store).await;
        assert!(store.failures() > 0, "the store was down");
    }
}
