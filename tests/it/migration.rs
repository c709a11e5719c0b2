//! Migration from the old App Engine service: its worker API client
//! against the fake, the answers to old AuthIDs, and `/isalive`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use oauth_broker::clock::ManualClock;
use oauth_broker::config::{AppEngineServiceSettings, Limits};
use oauth_broker::migrate::{
    AppEngineError, AppEngineService, HttpAppEngineService, ImportedToken,
};
use oauth_broker::secret::Sensitive;
use oauth_broker::store::{MemoryStore, Store};
use serde_json::Value;

use crate::support::broker::{Broker, Setup, assert_error_shape};
use crate::support::legacy_service::{API_KEY, FakeLegacyService, LegacyFault, key_id, password};
use crate::support::mock_provider::{MockProvider, Rotation};

fn client_for(fake: &FakeLegacyService, api_key: &str, timeout: Duration) -> HttpAppEngineService {
    HttpAppEngineService::with_timeout(
        &AppEngineServiceSettings {
            url: fake.url().parse().unwrap(),
            api_key: Sensitive::new(api_key),
        },
        timeout,
    )
    .unwrap()
}

#[tokio::test]
async fn the_legacy_client_exports_and_tells_the_errors_apart() {
    let fake = FakeLegacyService::start().await;
    let authid = fake.add("box.com", "rt-box-old");
    let client = client_for(&fake, API_KEY, Duration::from_secs(5));

    let grant = client.export(&authid).await.unwrap();
    assert_eq!(grant.service, "box.com");
    assert_eq!(grant.refresh_token.expose(), "rt-box-old");
    assert_eq!(
        fake.seen_api_keys().last().map(String::as_str),
        Some(API_KEY)
    );

    let (key, _) = authid.split_once(':').unwrap();
    let wrong_password = format!("{key}:{}", password());
    let unknown_key = format!("{}:{}", key_id(), password());
    assert_eq!(
        client.export(&wrong_password).await.unwrap_err(),
        AppEngineError::Unknown
    );
    assert_eq!(
        client.export(&unknown_key).await.unwrap_err(),
        AppEngineError::Unknown
    );
    let bad_key = client_for(&fake, "not-the-api-key", Duration::from_secs(5));
    assert_eq!(
        bad_key.export(&authid).await.unwrap_err(),
        AppEngineError::ApiKey
    );

    for (fault, expected) in [
        (
            LegacyFault::Status(500, "Server error".into()),
            AppEngineError::Unavailable,
        ),
        (
            LegacyFault::Redirect,
            AppEngineError::BadAnswer(
                "a redirect; LEGACY_SERVICE_URL must be the service's own address",
            ),
        ),
        (
            LegacyFault::Huge,
            AppEngineError::BadAnswer("the answer is too large"),
        ),
        (
            LegacyFault::Status(200, "<html>".into()),
            AppEngineError::BadAnswer("the body is not JSON"),
        ),
    ] {
        fake.set_fault(Some(fault.clone()));
        assert_eq!(
            client.export(&authid).await.unwrap_err(),
            expected,
            "{fault:?}"
        );
    }

    fake.set_fault(Some(LegacyFault::Hang));
    let impatient = client_for(&fake, API_KEY, Duration::from_millis(300));
    assert_eq!(
        impatient.export(&authid).await.unwrap_err(),
        AppEngineError::Unavailable
    );

    fake.set_fault(None);
    fake.stop().await;
    assert_eq!(
        client.export(&authid).await.unwrap_err(),
        AppEngineError::Unavailable,
        "a stopped service is unreachable, pooled connections included"
    );
}

#[tokio::test]
async fn the_legacy_client_imports_the_newest_token() {
    let fake = FakeLegacyService::start().await;
    let authid = fake.add("box.com", "rt-box-old");
    let client = client_for(&fake, API_KEY, Duration::from_secs(5));
    let token = ImportedToken {
        refresh_token: Sensitive::new("rt-box-new"),
        access_token: Sensitive::new("at-box-new"),
        expires_in: 3600,
        token_type: "Bearer",
    };
    client.import(&authid, &token).await.unwrap();
    let imports = fake.imports();
    assert_eq!(imports.len(), 1);
    assert_eq!(imports[0].0, authid);
    assert_eq!(imports[0].1["refresh_token"], "rt-box-new");
    assert_eq!(imports[0].1["access_token"], "at-box-new");
    assert_eq!(imports[0].1["expires_in"], 3600);
    assert_eq!(
        fake.refresh_token_of(&authid).as_deref(),
        Some("rt-box-new")
    );
    let bad_key = client_for(&fake, "not-the-api-key", Duration::from_secs(5));
    assert_eq!(
        bad_key.import(&authid, &token).await.unwrap_err(),
        AppEngineError::ApiKey
    );
    assert_eq!(fake.imports().len(), 1);
}

#[tokio::test]
async fn an_old_authid_without_a_legacy_service_sends_the_user_to_public_url() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let old = format!("{}:{}", key_id(), password());
    let reply = broker.refresh(&old).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_error_shape(&reply);
    let reason = reply.header("x-reason").unwrap();
    assert!(reason.contains("http://127.0.0.1:9"), "{reason}");
    assert!(!reason.contains(&old[..8]));
    assert_eq!(mock.token_calls(), 0);
}

#[tokio::test]
async fn malformed_old_authids_are_400_and_count_toward_the_address_limit() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(Limits {
            bad_authids_per_minute: 3,
            ..Limits::default()
        })
        .build();
    let base = broker.serve().await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for malformed in [
        format!("{}:{}", "a".repeat(28), password()),
        format!("{}:{}", key_id(), &password()[..20]),
        format!("{}:{}+", key_id(), &password()[..20]),
        format!("{}:{}", key_id().to_uppercase(), password()),
        format!("{}:{}", key_id(), password()),
    ] {
        let reply = client
            .get(format!("{base}/refresh"))
            .header("X-AuthID", &malformed)
            .send()
            .await
            .unwrap();
        statuses.push(reply.status().as_u16());
    }
    assert_eq!(statuses, [400, 400, 400, 429, 429]);
}

#[tokio::test]
async fn isalive_echoes_data_for_the_old_service() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let data = "0123456789abcdef0123456789abcd";
    let get = broker.get(&format!("/isalive?data={data}")).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.json(), serde_json::json!({ "data": data }));
    let post = broker.post_form(&format!("/isalive?data={data}"), "").await;
    assert_eq!(post.json()["data"], data);
    let quoted = broker.get("/isalive?data=%22%3C%2Fscript%3E").await;
    assert_eq!(quoted.json()["data"], "\"</script>");
    assert!(
        quoted
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );

    let missing = broker.get("/isalive").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_error_shape(&missing);
    let long = broker
        .get(&format!("/isalive?data={}", "a".repeat(257)))
        .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    assert_error_shape(&long);
}

/// A broker migrating from `fake`: Google Drive on `google` (refresh
/// tokens do not rotate), Box on `boxed` (single use).
fn migrating_broker(
    google: &MockProvider,
    boxed: &MockProvider,
    fake: &FakeLegacyService,
    clock: &ManualClock,
    store: Arc<dyn Store>,
) -> Broker {
    boxed.set_rotation(Rotation::SingleUse);
    Setup::new(google, &["googledrive"])
        .and(boxed, &["box.com"])
        .clock(Arc::new(clock.clone()))
        .store(store)
        .legacy_service(&fake.url(), API_KEY)
        .build()
}

/// Google and Box mock providers, the fake old service, a clock and a
/// store, with a broker that migrates from the fake.
struct Migration {
    google: MockProvider,
    boxed: MockProvider,
    fake: FakeLegacyService,
    clock: ManualClock,
    store: Arc<dyn Store>,
    broker: Broker,
}

impl Migration {
    async fn start() -> Self {
        let google = MockProvider::start().await;
        let boxed = MockProvider::start().await;
        let fake = FakeLegacyService::start().await;
        let clock = ManualClock::new(1_800_000_000);
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let broker = migrating_broker(&google, &boxed, &fake, &clock, Arc::clone(&store));
        Self {
            google,
            boxed,
            fake,
            clock,
            store,
            broker,
        }
    }
}

/// Waits (bounded) until the fake has recorded `n` imports.
async fn imports_reach(fake: &FakeLegacyService, n: usize) -> Vec<(String, Value)> {
    for _ in 0..200 {
        let imports = fake.imports();
        if imports.len() >= n {
            return imports;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} imports, expected {n}", fake.imports().len());
}

#[tokio::test]
async fn google_and_box_authids_of_the_old_service_are_migrated_and_resealed() {
    let Migration {
        google,
        boxed,
        fake,
        clock,
        store: _,
        broker,
    } = Migration::start().await;
    let old_google = fake.add("googledrive", &google.issue_refresh_token());
    let old_box = fake.add("box.com", &boxed.issue_refresh_token());

    for (old, mock, id) in [
        (&old_google, &google, "googledrive"),
        (&old_box, &boxed, "box.com"),
    ] {
        let calls = mock.token_calls();
        let reply = broker.refresh(old).await;
        assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.body);
        let json = reply.json();
        assert_eq!(json["type"], id);
        let access_token = json["access_token"].as_str().unwrap();
        assert!(
            !access_token.starts_with("at-stale-"),
            "the exported access token is not trusted"
        );
        assert!(mock.is_valid_access_token(access_token));
        assert_eq!(mock.token_calls(), calls + 1, "refreshed at the provider");
        let resealed = json["v2_authid"]
            .as_str()
            .expect("a v3 AuthID in v2_authid");
        let opened = broker
            .app
            .keyring()
            .open(resealed.strip_prefix("v3:").unwrap())
            .unwrap();
        assert_eq!(opened.claims.provider, id);
        assert!(oauth_broker::migrate::is_migrated(&opened.claims));
        // The re-sealed AuthID is the same login: served from the cache.
        let again = broker.refresh(resealed).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.json()["access_token"], access_token);
        assert_eq!(mock.token_calls(), calls + 1);
    }
    assert_eq!(fake.export_calls(), 2, "each old AuthID is exported once");

    // Past expiry, the old AuthIDs are served from the store's grant; the
    // old service is asked only for the single-use Box token, in case it
    // refreshed the login itself meanwhile.
    clock.advance(4000);
    for old in [&old_google, &old_box] {
        assert_eq!(broker.refresh(old).await.status, StatusCode::OK);
    }
    assert_eq!(fake.export_calls(), 3);
    let metrics = broker.get("/metrics").await.body;
    assert!(metrics.contains("oauth_broker_legacy_exports_total{outcome=\"checked\"} 1"));
    let logs = crate::support::logs::captured();
    for secret in [old_google.as_str(), old_box.as_str(), API_KEY] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    let (key_id, password) = old_google.split_once(':').unwrap();
    assert!(!logs.contains(key_id) && !logs.contains(password));
}

#[tokio::test]
async fn a_migrated_box_login_survives_a_client_that_never_swaps() {
    let Migration {
        google: _google,
        boxed,
        fake,
        clock,
        store: _,
        broker,
    } = Migration::start().await;
    let old = fake.add("box.com", &boxed.issue_refresh_token());
    for run in 1..=3 {
        let reply = broker.refresh(&old).await;
        assert_eq!(reply.status, StatusCode::OK, "run {run}: {}", reply.body);
        let imports = imports_reach(&fake, run).await;
        let (authid, body) = &imports[run - 1];
        assert_eq!(authid, &old, "imported under the old AuthID");
        let newest = body["refresh_token"].as_str().unwrap();
        assert!(boxed.is_valid_refresh_token(newest), "run {run}");
        assert_eq!(body["access_token"], reply.json()["access_token"]);
        assert!(body["expires_in"].as_u64().is_some());
        assert_eq!(fake.refresh_token_of(&old).as_deref(), Some(newest));
        clock.advance(4000);
    }
    assert_eq!(boxed.spent_token_presentations(), 0, "no spent token sent");
    assert_eq!(boxed.token_calls(), 3);
    // The migration's export, then before each later run a look at the
    // old service's token (the same as the broker's here).
    assert_eq!(fake.export_calls(), 3);
    let metrics = broker.get("/metrics").await.body;
    assert!(metrics.contains("oauth_broker_legacy_exports_total{outcome=\"migrated\"} 1"));
    assert!(metrics.contains("oauth_broker_legacy_exports_total{outcome=\"checked\"} 2"));
    assert!(metrics.contains("oauth_broker_legacy_imports_total{outcome=\"imported\"} 3"));
}

#[tokio::test]
async fn migrated_authids_outlive_the_old_service() {
    let Migration {
        google,
        boxed,
        fake,
        clock,
        store,
        broker,
    } = Migration::start().await;
    let old_google = fake.add("googledrive", &google.issue_refresh_token());
    let old_box = fake.add("box.com", &boxed.issue_refresh_token());
    for old in [&old_google, &old_box] {
        assert_eq!(broker.refresh(old).await.status, StatusCode::OK);
    }
    fake.stop().await;
    clock.advance(4000);
    for old in [&old_google, &old_box] {
        let reply = broker.refresh(old).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    // Another instance on the same store, with the old service no longer
    // configured at all.
    let later = Setup::new(&google, &["googledrive"])
        .and(&boxed, &["box.com"])
        .clock(Arc::new(clock.clone()))
        .store(store)
        .build();
    clock.advance(4000);
    for old in [&old_google, &old_box] {
        let reply = later.refresh(old).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(boxed.spent_token_presentations(), 0);
}

#[tokio::test]
async fn every_answer_of_the_old_service_maps_to_its_status() {
    let Migration {
        google,
        boxed: _boxed,
        fake,
        clock: _,
        store: _,
        broker,
    } = Migration::start().await;
    let known = fake.add("googledrive", &google.issue_refresh_token());
    let (key, _) = known.split_once(':').unwrap();

    for old in [
        format!("{}:{}", key_id(), password()),
        format!("{key}:{}", password()),
    ] {
        let reply = broker.refresh(&old).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        assert_error_shape(&reply);
        assert!(reply.body.contains("http://127.0.0.1:9"), "{}", reply.body);
    }

    fake.set_api_key("a-different-api-key-0000");
    let reply = broker.refresh(&known).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
    assert_error_shape(&reply);
    let logs = crate::support::logs::captured();
    assert!(
        logs.contains("LEGACY_SERVICE_API_KEY"),
        "the operator is told what to fix"
    );
    fake.set_api_key(API_KEY);

    fake.set_fault(Some(LegacyFault::Hang));
    let reply = broker.refresh(&known).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_error_shape(&reply);
    assert!(reply.header("retry-after").is_some());
    fake.set_fault(None);

    fake.stop().await;
    let reply = broker.refresh(&known).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(reply.header("retry-after").is_some());
    assert_eq!(google.token_calls(), 0, "nothing reached the provider");
    let metrics = broker.get("/metrics").await.body;
    for outcome in ["unknown", "api_key", "unavailable"] {
        assert!(
            metrics.contains(&format!(
                "oauth_broker_legacy_exports_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn a_migrated_grant_uses_the_legacy_registration_when_it_changed() {
    let current = MockProvider::start().await;
    let old_registration = MockProvider::start().await;
    let fake = FakeLegacyService::start().await;
    let token_url = old_registration.token_url();
    let broker = Setup::new(&current, &["googledrive"])
        .adjust(move |entries| {
            entries[0]["previousClients"] = serde_json::json!([{
                "clientId": "app-engine-client",
                "clientSecret": "app-engine-secret",
                "authUrl": token_url,
                "legacy": true,
            }]);
        })
        .legacy_service(&fake.url(), API_KEY)
        .build();
    old_registration.set_client("app-engine-client", "app-engine-secret");
    let old = fake.add("googledrive", &old_registration.issue_refresh_token());
    let reply = broker.refresh(&old).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let sent = old_registration.last_token_request().unwrap();
    assert_eq!(sent["client_id"], "app-engine-client");
    assert_eq!(current.token_calls(), 0);
    let resealed = reply.json()["v2_authid"].as_str().unwrap().to_string();
    let opened = broker
        .app
        .keyring()
        .open(resealed.strip_prefix("v3:").unwrap())
        .unwrap();
    assert_eq!(opened.claims.client_id(), Some("app-engine-client"));
}

#[tokio::test]
async fn a_box_token_the_old_service_spent_meanwhile_is_taken_from_it() {
    let Migration {
        google: _google,
        boxed,
        fake,
        clock,
        store: _,
        broker,
    } = Migration::start().await;
    let old = fake.add("box.com", &boxed.issue_refresh_token());
    assert_eq!(broker.refresh(&old).await.status, StatusCode::OK);
    imports_reach(&fake, 1).await;

    // The old service still serves part of the traffic: it refreshes the
    // login itself, spending the token the broker recorded.
    let client = [
        ("client_id", crate::support::broker::CLIENT_ID),
        ("client_secret", crate::support::broker::CLIENT_SECRET),
    ];
    let newer = refreshed_by_the_old_service(&boxed, &fake, &old, &client).await;

    clock.advance(4000);
    let reply = broker.refresh(&old).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        boxed.refresh_tokens_received().last().map(String::as_str),
        Some(newer.as_str()),
        "the old service's token was sent"
    );
    assert_eq!(
        boxed.spent_token_presentations(),
        0,
        "and the broker's spent one was not"
    );
    let metrics = broker.get("/metrics").await.body;
    assert!(metrics.contains("oauth_broker_legacy_exports_total{outcome=\"refetched\"} 1"));
    // The next run goes on from the newest token, with nothing refused.
    let refused = boxed.spent_token_presentations();
    clock.advance(4000);
    assert_eq!(broker.refresh(&old).await.status, StatusCode::OK);
    assert_eq!(boxed.spent_token_presentations(), refused);
}

/// The old service spends a token by refreshing the login itself; a
/// provider that keeps old tokens a while (Microsoft) is not concerned.
/// Returns the old service's new refresh token.
async fn refreshed_by_the_old_service(
    provider: &MockProvider,
    fake: &FakeLegacyService,
    old: &str,
    client: &[(&str, &str)],
) -> String {
    let theirs = fake.refresh_token_of(old).unwrap();
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", theirs.as_str()),
    ];
    form.extend_from_slice(client);
    let answer: Value = reqwest::Client::new()
        .post(provider.token_url())
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newer = answer["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    client_for(fake, API_KEY, Duration::from_secs(5))
        .import(
            old,
            &ImportedToken {
                refresh_token: Sensitive::new(newer),
                access_token: Sensitive::new("at-unused"),
                expires_in: 3600,
                token_type: "Bearer",
            },
        )
        .await
        .unwrap();
    newer.to_string()
}

/// While the old service still serves part of the traffic, a migrated
/// Jottacloud login is refreshed by both in turn. Jottacloud ends the
/// whole grant when a spent token is presented, so the broker must never
/// send the one the old service spent: it looks at the old service's
/// token before each refresh and sends the newest, so every token is
/// refreshed once, by one of the two.
#[tokio::test]
async fn a_jottacloud_login_both_services_refresh_spends_each_token_once() {
    let jotta = MockProvider::start().await;
    jotta.set_rotation(Rotation::SingleUseReuseDetection);
    let fake = FakeLegacyService::start().await;
    let clock = ManualClock::new(1_800_000_000);
    let broker = Setup::new(&jotta, &["jottacloud"])
        .clock(Arc::new(clock.clone()))
        .store(Arc::new(MemoryStore::default()))
        .legacy_service(&fake.url(), API_KEY)
        .build();
    // Jottacloud's public client.
    jotta.set_client("jottacli", "");
    let old = fake.add("jottacloud", &jotta.issue_refresh_token());
    let first = broker.refresh(&old).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    imports_reach(&fake, 1).await;
    let mut reseal = String::new();
    for turn in 1..=3 {
        refreshed_by_the_old_service(&jotta, &fake, &old, &[("client_id", "jottacli")]).await;
        clock.advance(4000);
        // Duplicati keeps pasting the old AuthID, or switched to v3.
        let text = if turn == 2 {
            reseal.clone()
        } else {
            old.clone()
        };
        let reply = broker.refresh(&text).await;
        assert_eq!(reply.status, StatusCode::OK, "turn {turn}: {}", reply.body);
        if let Some(v3) = reply.json()["v2_authid"].as_str() {
            reseal = v3.to_string();
        }
        assert!(!reseal.is_empty());
        // The old service's own import and the broker's.
        imports_reach(&fake, 1 + 2 * turn).await;
    }
    assert_eq!(jotta.spent_token_presentations(), 0, "no spent token sent");
    // One by the migration, then each service's turns: all accepted.
    assert_eq!(jotta.token_calls(), 7);
    let newest = fake.refresh_token_of(&old).unwrap();
    assert!(jotta.is_valid_refresh_token(&newest), "the grant lives on");
    let metrics = broker.get("/metrics").await.body;
    assert!(
        metrics.contains("oauth_broker_legacy_exports_total{outcome=\"refetched\"} 3"),
        "{metrics}"
    );
}
