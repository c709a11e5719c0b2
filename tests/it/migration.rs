//! Migration from the old App Engine service: its worker API client
//! against the fake, the answers to old AuthIDs, and `/isalive`.

use std::time::Duration;

use axum::http::StatusCode;
use oauth_broker::config::Limits;
use oauth_broker::migrate::{
    HttpLegacyService, ImportedToken, LegacyError, LegacyService, LegacyServiceSettings,
};
use oauth_broker::secret::Sensitive;

use crate::support::broker::{Broker, Setup, assert_error_shape};
use crate::support::legacy_service::{API_KEY, FakeLegacyService, LegacyFault, key_id, password};
use crate::support::mock_provider::MockProvider;

fn client_for(fake: &FakeLegacyService, api_key: &str, timeout: Duration) -> HttpLegacyService {
    HttpLegacyService::with_timeout(
        &LegacyServiceSettings {
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
        LegacyError::Unknown
    );
    assert_eq!(
        client.export(&unknown_key).await.unwrap_err(),
        LegacyError::Unknown
    );
    let bad_key = client_for(&fake, "not-the-api-key", Duration::from_secs(5));
    assert_eq!(
        bad_key.export(&authid).await.unwrap_err(),
        LegacyError::ApiKey
    );

    for (fault, expected) in [
        (
            LegacyFault::Status(500, "Server error".into()),
            LegacyError::Unavailable,
        ),
        (
            LegacyFault::Redirect,
            LegacyError::BadAnswer(
                "a redirect; LEGACY_SERVICE_URL must be the service's own address",
            ),
        ),
        (
            LegacyFault::Huge,
            LegacyError::BadAnswer("the answer is too large"),
        ),
        (
            LegacyFault::Status(200, "<html>".into()),
            LegacyError::BadAnswer("the body is not JSON"),
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
        LegacyError::Unavailable
    );

    fake.set_fault(None);
    fake.stop().await;
    assert_eq!(
        client.export(&authid).await.unwrap_err(),
        LegacyError::Unavailable,
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
        LegacyError::ApiKey
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
