//! `/refresh` as Duplicati and other clients use it, against a mock that
//! plays each provider's documented behaviour.

use std::sync::Arc;

use axum::http::StatusCode;
use oauth_broker::clock::ManualClock;

use crate::support::broker::{BUILTIN, Broker, Reply, assert_error_shape, concurrent_refreshes};
use crate::support::logs;
use crate::support::mock_provider::{Fault, MockProvider, RedirectRule, Rotation};

/// A mock configured the way `id` behaves at the real provider.
async fn mock_like(id: &str) -> MockProvider {
    let mock = MockProvider::start().await;
    match id {
        "box.com" => mock.set_rotation(Rotation::SingleUse),
        "jottacloud" => mock.set_rotation(Rotation::SingleUseReuseDetection),
        "onedrivev2" | "sharepoint" | "msgroup" => mock.set_rotation(Rotation::Rotating),
        "dropbox" => mock.set_redirect_uri_on_refresh(RedirectRule::Forbidden),
        "pcloud" => mock.set_access_token_only(true),
        _ => mock.set_redirect_uri_on_refresh(RedirectRule::Required),
    }
    mock
}

#[tokio::test]
async fn a_duplicati_request_gets_a_working_token_for_every_builtin_provider() {
    for id in BUILTIN.iter().copied().filter(|id| *id != "pcloud") {
        let mock = mock_like(id).await;
        let broker = Broker::build(
            &mock,
            &[id],
            oauth_broker::clock::system(),
            "http://127.0.0.1:9",
        );
        if id == "jottacloud" {
            mock.set_client("jottacli", "");
        }
        let rt = mock.issue_refresh_token();
        let reply = broker.refresh(&broker.seal(id, &rt)).await;
        assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.body);
        let json = reply.json();
        let at = json["access_token"].as_str().unwrap();
        assert!(mock.is_valid_access_token(at), "{id}");
        let expires = json["expires"].as_u64().unwrap();
        assert!((3590..=3600).contains(&expires), "{id}: {expires}");
        assert_eq!(json["type"], id);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let rotates = matches!(
            id,
            "box.com" | "jottacloud" | "onedrivev2" | "sharepoint" | "msgroup"
        );
        assert_eq!(json.get("v2_authid").is_some(), rotates, "{id}: {json}");
        let sent = mock.last_token_request().unwrap();
        assert_eq!(sent["grant_type"], "refresh_token");
        assert_eq!(
            sent.contains_key("redirect_uri"),
            !matches!(id, "dropbox" | "jottacloud"),
            "{id}"
        );
    }
}

#[tokio::test]
async fn pcloud_authids_are_access_tokens_and_are_not_refreshed() {
    let mock = mock_like("pcloud").await;
    let broker = Broker::build(
        &mock,
        &["pcloud"],
        oauth_broker::clock::system(),
        "http://127.0.0.1:9",
    );
    let reply = broker.refresh(&broker.seal("pcloud", "at-direct")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_error_shape(&reply);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("use them directly")
    );
    assert_eq!(mock.token_calls(), 0);
}

#[tokio::test]
async fn twenty_sequential_refreshes_make_one_upstream_call() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    let first = broker.refresh(&authid).await.json();
    for _ in 1..20 {
        let reply = broker.refresh(&authid).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json()["access_token"], first["access_token"]);
    }
    assert_eq!(mock.token_calls(), 1);
}

#[tokio::test]
async fn fifty_concurrent_refreshes_of_a_fresh_authid_make_one_upstream_call() {
    let mock = MockProvider::start().await;
    mock.push_fault(Fault::Delay(std::time::Duration::from_millis(300)));
    let broker = Arc::new(Broker::new(&mock));
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    let tokens: std::collections::HashSet<String> = concurrent_refreshes(&broker, &authid, 50)
        .await
        .iter()
        .map(|body| body["access_token"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(mock.token_calls(), 1);
}

#[tokio::test]
async fn expires_counts_down_and_a_nearly_expired_token_is_replaced() {
    let mock = MockProvider::start().await;
    mock.set_access_token_lifetime(600);
    let clock = ManualClock::new(oauth_broker::clock::Clock::now(
        &oauth_broker::clock::SystemClock,
    ));
    let broker = Broker::with_clock(&mock, Arc::new(clock.clone()));
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    assert_eq!(broker.refresh(&authid).await.json()["expires"], 600);
    clock.advance(500);
    assert_eq!(broker.refresh(&authid).await.json()["expires"], 100);
    clock.advance(40);
    let reply = broker.refresh(&authid).await.json();
    assert_eq!(reply["expires"], 600, "60 s or less left: refreshed");
    assert_eq!(mock.token_calls(), 2);
}

#[tokio::test]
async fn the_authid_may_come_in_the_query_or_a_form() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    let encoded: String = url::form_urlencoded::byte_serialize(authid.as_bytes()).collect();
    let reply = broker.get(&format!("/refresh?authid={encoded}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let reply = broker
        .post_form("/refresh", &format!("authid={encoded}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn a_cache_hit_over_http_is_answered_like_the_full_stack() {
    let mock = MockProvider::start().await;
    // A clock that stands still, so `expires` is the same in both answers.
    let now = oauth_broker::clock::Clock::now(&oauth_broker::clock::SystemClock);
    let broker = Broker::with_clock(&mock, Arc::new(ManualClock::new(now)));
    let base = broker.serve().await;
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    let client = reqwest::Client::new();
    // A form content type sends the request through the whole stack (the
    // header still wins over the empty form); without it, a hit takes the
    // fast path.
    let send = |form: bool| {
        let mut request = client
            .get(format!("{base}/refresh"))
            .header("X-AuthID", &authid);
        if form {
            request = request.header("Content-Type", "application/x-www-form-urlencoded");
        }
        async move { Reply::from_reqwest(request.send().await.expect("send")).await }
    };
    let first = send(true).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let full = send(true).await;
    let fast = send(false).await;
    assert_eq!(mock.token_calls(), 1);
    assert_eq!(fast.status, StatusCode::OK);
    assert_eq!(fast.body, full.body);
    let comparable = |r: &Reply| {
        let mut headers: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id"))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        headers.sort();
        headers
    };
    assert_eq!(comparable(&fast), comparable(&full));
    assert_eq!(fast.header("cache-control"), Some("no-store"));
    let id = |r: &Reply| r.header("x-request-id").map(str::to_string).unwrap();
    assert_ne!(id(&fast), id(&full));
    assert_eq!(
        id(&fast).split('-').next(),
        id(&full).split('-').next(),
        "one sequence of request ids"
    );
}

#[tokio::test]
async fn refresh_with_only_a_type_redirects_to_the_login_page() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let reply = broker.get("/refresh?type=box").await;
    assert!(reply.status.is_redirection());
    assert_eq!(reply.header("location"), Some("/?type=box"));
    for bad in [
        "/refresh?type=https://evil.example",
        "/refresh?type=//evil",
        "/refresh",
    ] {
        let reply = broker.get(bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_error_shape(&reply);
    }
}

#[tokio::test]
async fn a_legacy_authid_is_answered_with_a_sealed_one() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let rt = mock.issue_refresh_token();
    let reply = broker.refresh(&format!("v2:googledrive:{rt}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let v3 = reply.json()["v2_authid"].as_str().unwrap().to_string();
    assert!(v3.starts_with("v3:"));
    let again = broker.refresh(&v3).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(mock.token_calls(), 1, "the new AuthID hits the cache");
}

struct Case {
    fault: Fault,
    status: StatusCode,
    reason: &'static str,
    retry_after: Option<&'static str>,
}

/// One case per class of provider failure.
fn error_cases() -> [Case; 8] {
    [
        Case {
            fault: Fault::OAuthError {
                status: 400,
                error: "invalid_grant".into(),
                description: Some("Token has been expired or revoked.".into()),
            },
            status: StatusCode::UNAUTHORIZED,
            reason: "create a new AuthID at http://127.0.0.1:9",
            retry_after: None,
        },
        Case {
            fault: Fault::OAuthError {
                status: 401,
                error: "invalid_client".into(),
                description: None,
            },
            status: StatusCode::BAD_GATEWAY,
            reason: "operator",
            retry_after: None,
        },
        Case {
            fault: Fault::Throttle {
                status: 429,
                retry_after: Some("30".into()),
            },
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "try again later",
            retry_after: Some("30"),
        },
        Case {
            fault: Fault::OAuthError {
                status: 400,
                error: "temporarily_unavailable".into(),
                description: None,
            },
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: "throttling",
            // No Retry-After: the first step of the exponential backoff.
            retry_after: Some("1"),
        },
        Case {
            fault: Fault::Html(500),
            status: StatusCode::BAD_GATEWAY,
            reason: "provider failed",
            retry_after: None,
        },
        Case {
            fault: Fault::BrokenJson,
            status: StatusCode::BAD_GATEWAY,
            reason: "provider failed",
            retry_after: None,
        },
        Case {
            fault: Fault::HugeBody(1 << 20),
            status: StatusCode::BAD_GATEWAY,
            reason: "too large",
            retry_after: None,
        },
        Case {
            fault: Fault::Hang,
            status: StatusCode::GATEWAY_TIMEOUT,
            reason: "did not answer in time",
            retry_after: None,
        },
    ]
}

#[tokio::test]
async fn each_error_class_maps_to_its_status_and_an_actionable_reason() {
    for case in error_cases() {
        let mock = MockProvider::start().await;
        let broker = Broker::new(&mock);
        mock.push_fault(case.fault.clone());
        let reply = broker
            .refresh(&broker.seal("googledrive", &mock.issue_refresh_token()))
            .await;
        assert_eq!(
            reply.status, case.status,
            "{:?}: {}",
            case.fault, reply.body
        );
        assert_error_shape(&reply);
        let reason = reply.header("x-reason").unwrap();
        assert!(reason.contains(case.reason), "{:?}: {reason}", case.fault);
        assert_eq!(
            reply.header("retry-after"),
            case.retry_after,
            "{:?}",
            case.fault
        );
    }
}

#[tokio::test]
async fn an_unknown_route_is_json_not_html() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let reply = broker.get("/nope").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_error_shape(&reply);
    let reply = broker.post_form("/refresh", &"a".repeat(100 * 1024)).await;
    assert!(reply.status.is_client_error());
    assert_error_shape(&reply);
}

#[tokio::test]
async fn logs_of_all_refresh_traffic_hold_no_token_secret_or_authid() {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUse);
    let broker = Broker::new(&mock);
    let mut secrets = vec![crate::support::broker::CLIENT_SECRET.to_string()];
    for service in ["googledrive", "box.com", "dropbox"] {
        let rt = mock.issue_refresh_token();
        let authid = broker.seal(service, &rt);
        let reply = broker.refresh(&authid).await.json();
        secrets.extend([
            rt,
            authid.clone(),
            reply["access_token"].as_str().unwrap().to_string(),
        ]);
        if let Some(v2) = reply["v2_authid"].as_str() {
            secrets.push(v2.to_string());
        }
        let encoded: String = url::form_urlencoded::byte_serialize(authid.as_bytes()).collect();
        broker.get(&format!("/refresh?authid={encoded}")).await;
    }
    let legacy_rt = mock.issue_refresh_token();
    broker.refresh(&format!("v2:googledrive:{legacy_rt}")).await;
    secrets.push(legacy_rt);
    for fault in [
        Fault::OAuthError {
            status: 400,
            error: "invalid_grant".into(),
            description: None,
        },
        Fault::OAuthError {
            status: 401,
            error: "invalid_client".into(),
            description: None,
        },
        Fault::BrokenJson,
        Fault::Throttle {
            status: 429,
            retry_after: Some("5".into()),
        },
    ] {
        mock.push_fault(fault);
        let rt = mock.issue_refresh_token();
        let authid = broker.seal("googledocs", &rt);
        broker.refresh(&authid).await;
        secrets.extend([rt, authid]);
    }
    for bad in [
        "v3:a.b.c.d.e",
        "v2:googledrive:rt-not-a-real-token-0000000000",
        "garbage-authid-text",
    ] {
        broker.refresh(bad).await;
        secrets.push(bad.to_string());
    }
    let captured = logs::captured();
    assert!(captured.contains("answered"), "the capture works");
    for secret in &secrets {
        assert!(
            !captured.contains(secret.as_str()),
            "a secret reached the logs"
        );
    }
}

#[tokio::test]
async fn retiring_a_key_ends_the_cached_answers_of_its_authids() {
    use std::collections::HashSet;

    use oauth_broker::authid::{Keyring, ServerKey};

    let mock = mock_like("googledrive").await;
    let broker = Broker::new(&mock);
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    for _ in 0..2 {
        let r = broker.refresh(&authid).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(
        mock.token_calls(),
        1,
        "the second answer came from the cache"
    );

    let old = broker.app.keyring().current().primary().kid().to_string();
    let (new, _) = ServerKey::generate("after-retirement", 2).unwrap();
    let keyring = Keyring::new([new], "after-retirement", HashSet::from([old])).unwrap();
    broker.app.install_keyring(keyring);

    let r = broker.refresh(&authid).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_error_shape(&r);
    assert!(r.body.contains("retired"), "{}", r.body);
    assert_eq!(mock.token_calls(), 1);
}

#[tokio::test]
async fn a_key_retired_as_compromised_ends_the_cached_answers_of_its_carried_over_authids() {
    use std::collections::HashSet;
    use std::sync::Arc;

    use oauth_broker::authid::{Keyring, ServerKey};

    let mock = mock_like("googledrive").await;
    let broker = Broker::new(&mock);
    let old = Arc::new(ServerKey::generate("old", 1).unwrap().0);
    let new = Arc::new(ServerKey::generate("new", 2).unwrap().0);
    let ring = |keys: Vec<&Arc<ServerKey>>, retired: &[&str]| {
        let retired: HashSet<String> = retired.iter().map(|s| s.to_string()).collect();
        Keyring::new(keys.into_iter().cloned(), "new", retired).unwrap()
    };
    broker
        .app
        .install_keyring(Keyring::new([Arc::clone(&old)], "old", HashSet::new()).unwrap());
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    broker.app.install_keyring(ring(vec![&old, &new], &[]));
    assert_eq!(broker.refresh(&authid).await.status, StatusCode::OK);

    // Retired: served from the carry-over and the cache, no new call.
    broker.app.install_keyring(ring(vec![&new], &["old"]));
    for _ in 0..2 {
        let r = broker.refresh(&authid).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(mock.token_calls(), 1);

    let compromised = HashSet::from(["old".to_string()]);
    broker
        .app
        .install_keyring(ring(vec![&new], &["old"]).with_compromised(compromised));
    let r = broker.refresh(&authid).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_error_shape(&r);
    assert!(r.body.contains("exposed"), "{}", r.body);
    assert_eq!(mock.token_calls(), 1);
}
