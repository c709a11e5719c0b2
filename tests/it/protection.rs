//! Provider protection and rotation continuity: Retry-After backoff,
//! quotas, bulkheads, per-login limits, and single-use refresh tokens that
//! are never lost or replayed.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use oauth_broker::clock::{Clock, ManualClock, SystemClock};
use oauth_broker::config::Limits;
use oauth_broker::provider::retry_after::http_date;

use crate::support::broker::{Broker, Setup, assert_error_shape, concurrent_refreshes};
use crate::support::mock_provider::{Fault, MockProvider, Rotation};

fn manual_clock() -> ManualClock {
    ManualClock::new(SystemClock.now())
}

fn retry_after(reply: &crate::support::broker::Reply) -> u64 {
    reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds")
}

async fn throttled_provider_is_left_alone(retry_after_value: impl Fn(i64) -> String) {
    let google = MockProvider::start().await;
    let dropbox = MockProvider::start().await;
    let clock = manual_clock();
    let broker = Setup::new(&google, &["googledrive", "googledocs"])
        .and(&dropbox, &["dropbox"])
        .clock(Arc::new(clock.clone()))
        .build();
    google.push_fault(Fault::Throttle {
        status: 429,
        retry_after: Some(retry_after_value(clock.now())),
    });
    let first = broker
        .refresh(&broker.seal("googledrive", &google.issue_refresh_token()))
        .await;
    assert_eq!(
        first.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        first.body
    );
    assert_error_shape(&first);
    let blocked_for = retry_after(&first);
    assert!((85..=120).contains(&blocked_for), "{blocked_for}");
    assert_eq!(google.token_calls(), 1);

    // Inside the window: no call for any AuthID of that registration, and
    // the remaining time counts down. Another provider keeps working.
    for step in 0..5 {
        clock.advance(10);
        for service in ["googledrive", "googledocs"] {
            let reply = broker
                .refresh(&broker.seal(service, &google.issue_refresh_token()))
                .await;
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_error_shape(&reply);
            assert_eq!(retry_after(&reply), blocked_for - 10 * (step + 1));
        }
        let other = broker
            .refresh(&broker.seal("dropbox", &dropbox.issue_refresh_token()))
            .await;
        assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    }
    assert_eq!(
        google.token_calls(),
        1,
        "nothing was sent inside the window"
    );
    clock.advance(blocked_for as i64);
    let after = broker
        .refresh(&broker.seal("googledrive", &google.issue_refresh_token()))
        .await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
    assert_eq!(google.token_calls(), 2);
}

#[tokio::test]
async fn retry_after_in_seconds_blocks_the_provider_for_that_long() {
    throttled_provider_is_left_alone(|_| "120".to_string()).await;
}

#[tokio::test]
async fn retry_after_as_an_http_date_blocks_the_provider_until_then() {
    throttled_provider_is_left_alone(|now| http_date(now + 90)).await;
}

#[tokio::test]
async fn a_throttle_without_retry_after_backs_off_exponentially() {
    let mock = MockProvider::start().await;
    let clock = manual_clock();
    let broker = Setup::new(&mock, &["googledrive"])
        .clock(Arc::new(clock.clone()))
        .build();
    let mut waits = Vec::new();
    for _ in 0..4 {
        mock.push_fault(Fault::Throttle {
            status: 503,
            retry_after: None,
        });
        let reply = broker
            .refresh(&broker.seal("googledrive", &mock.issue_refresh_token()))
            .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        let wait = retry_after(&reply);
        waits.push(wait);
        clock.advance(wait as i64);
    }
    assert_eq!(mock.token_calls(), 4);
    // 1, 2, 4, 8 seconds, each jittered down by at most half.
    for (i, wait) in waits.iter().enumerate() {
        let base = 1u64 << i;
        assert!((base.div_ceil(2)..=base).contains(wait), "{waits:?}");
    }
}

#[tokio::test]
async fn microsoft_loop_detection_and_pcloud_errors_count_as_throttling() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["onedrivev2"]).build();
    mock.push_fault(Fault::OAuthError {
        status: 400,
        error: "invalid_grant".into(),
        description: Some("AADSTS50196: The server terminated an operation because it encountered a client request loop.".into()),
    });
    let reply = broker
        .refresh(&broker.seal("onedrivev2", &mock.issue_refresh_token()))
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        broker
            .app
            .protection()
            .blocked("onedrivev2", SystemClock.now())
            .is_some()
    );

    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"]).build();
    mock.push_fault(Fault::PcloudError {
        result: 4000,
        error: "Too many login tries from this IP address.".into(),
    });
    let reply = broker
        .refresh(&broker.seal("googledrive", &mock.issue_refresh_token()))
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_brokers_own_quota_answers_503_with_the_limiters_wait() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .tweak(|_, entry| entry["rateLimit"] = serde_json::json!({"perSecond": 1, "burst": 2}))
        .build();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = broker
            .refresh(&broker.seal("googledrive", &mock.issue_refresh_token()))
            .await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_error_shape(&reply);
            assert!(retry_after(&reply) >= 1);
        }
        statuses.push(reply.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::SERVICE_UNAVAILABLE
        ]
    );
    assert_eq!(mock.token_calls(), 2);
}

#[tokio::test]
async fn a_hanging_provider_does_not_delay_another() {
    let slow = MockProvider::start().await;
    let fast = MockProvider::start().await;
    slow.set_sticky_fault(Some(Fault::Hang));
    let broker = Arc::new(
        Setup::new(&slow, &["box.com"])
            .and(&fast, &["dropbox"])
            .build(),
    );
    let hanging = {
        let broker = Arc::clone(&broker);
        let authid = broker.seal("box.com", &slow.issue_refresh_token());
        tokio::spawn(async move { broker.refresh(&authid).await })
    };
    while slow.token_calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..5 {
        let reply = broker
            .refresh(&broker.seal("dropbox", &fast.issue_refresh_token()))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(!hanging.is_finished(), "the other provider answered first");
    }
    let reply = hanging.await.unwrap();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
}

/// Five backup runs, each starting from `authid_for_run(i)`, an hour apart
/// (every cached access token has expired).
async fn five_runs(id: &str, rotation: Rotation, swap_v2: bool) {
    let mock = MockProvider::start().await;
    mock.set_rotation(rotation);
    let clock = manual_clock();
    let broker = Setup::new(&mock, &[id])
        .clock(Arc::new(clock.clone()))
        .build();
    if id == "jottacloud" {
        mock.set_client("jottacli", "");
    }
    let original = broker.seal(id, &mock.issue_refresh_token());
    let mut latest = original.clone();
    for run in 0..5 {
        let presented = if swap_v2 {
            latest.clone()
        } else {
            original.clone()
        };
        // Within a run, several client objects start from the same AuthID.
        for _ in 0..3 {
            let reply = broker.refresh(&presented).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{id} run {run}: {}",
                reply.body
            );
            let json = reply.json();
            assert!(mock.is_valid_access_token(json["access_token"].as_str().unwrap()));
            let v2 = json["v2_authid"]
                .as_str()
                .expect("the newest AuthID is offered");
            latest = v2.to_string();
        }
        clock.advance(3600);
    }
    assert_eq!(
        mock.spent_token_presentations(),
        0,
        "{id}: a spent token reached the provider"
    );
    assert_eq!(mock.token_calls(), 5, "{id}: one refresh per run");
}

#[tokio::test]
async fn box_runs_from_the_original_authid_never_send_a_spent_token() {
    five_runs("box.com", Rotation::SingleUse, false).await;
}

#[tokio::test]
async fn box_runs_with_a_client_that_swaps_v2_authid() {
    five_runs("box.com", Rotation::SingleUse, true).await;
}

#[tokio::test]
async fn jottacloud_runs_from_the_original_authid_never_trip_reuse_detection() {
    five_runs("jottacloud", Rotation::SingleUseReuseDetection, false).await;
}

#[tokio::test]
async fn jottacloud_runs_with_a_client_that_swaps_v2_authid() {
    five_runs("jottacloud", Rotation::SingleUseReuseDetection, true).await;
}

#[tokio::test]
async fn fifty_concurrent_refreshes_of_a_single_use_login_make_one_call() {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUse);
    mock.push_fault(Fault::Delay(Duration::from_millis(300)));
    let broker = Arc::new(Setup::new(&mock, &["box.com"]).build());
    let authid = broker.seal("box.com", &mock.issue_refresh_token());
    let v2: std::collections::HashSet<String> = concurrent_refreshes(&broker, &authid, 50)
        .await
        .iter()
        .map(|body| body["v2_authid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(mock.token_calls(), 1);
    assert_eq!(v2.len(), 1, "everyone gets the same new AuthID");
    assert_eq!(mock.spent_token_presentations(), 0);
}

#[tokio::test]
async fn a_lost_answer_on_a_single_use_provider_rests_then_retries_once() {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUseReuseDetection);
    let clock = manual_clock();
    let broker = Setup::new(&mock, &["box.com"])
        .clock(Arc::new(clock.clone()))
        .build();
    let authid = broker.seal("box.com", &mock.issue_refresh_token());
    mock.push_fault(Fault::Hang);
    let lost = broker.refresh(&authid).await;
    assert_eq!(lost.status, StatusCode::GATEWAY_TIMEOUT);
    // Duplicati retries 5xx after 1, 2, 4, 8 and 16 s: none reaches the
    // provider while the login rests.
    for wait in [1, 2, 4, 8] {
        clock.advance(wait);
        let reply = broker.refresh(&authid).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_error_shape(&reply);
        assert!(reply.header("x-reason").unwrap().contains("interrupted"));
        assert!(retry_after(&reply) <= 30);
    }
    assert_eq!(mock.token_calls(), 1);
    clock.advance(16);
    let reply = broker.refresh(&authid).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(mock.token_calls(), 2);
    assert_eq!(mock.spent_token_presentations(), 0);
}

#[tokio::test]
async fn per_login_caps_answer_429_and_reset_after_the_window() {
    let mock = MockProvider::start().await;
    let clock = manual_clock();
    let broker = Setup::new(&mock, &["googledrive"])
        .clock(Arc::new(clock.clone()))
        .limits(Limits {
            login_requests_per_hour: 5,
            login_refreshes_per_hour: 2,
            ..Limits::default()
        })
        .build();
    // All requests, cache hits included.
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    for _ in 0..5 {
        assert_eq!(broker.refresh(&authid).await.status, StatusCode::OK);
    }
    let limited = broker.refresh(&authid).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_error_shape(&limited);
    assert_eq!(retry_after(&limited), 3600);
    // Keyed on the login, not the text: a re-sealed AuthID shares the cap.
    let other_text = {
        let login = broker.app.refresher().open(&authid).unwrap();
        broker.app.keyring().seal(&login.claims).unwrap()
    };
    assert_eq!(
        broker.refresh(&other_text).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    clock.advance(3600);
    assert_eq!(broker.refresh(&authid).await.status, StatusCode::OK);

    // Upstream refreshes: tokens that expire at once force a call each time.
    mock.set_access_token_lifetime(30);
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    let before = mock.token_calls();
    assert_eq!(broker.refresh(&authid).await.status, StatusCode::OK);
    assert_eq!(broker.refresh(&authid).await.status, StatusCode::OK);
    let limited = broker.refresh(&authid).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(mock.token_calls() - before, 2);
    clock.advance(3600);
    assert_eq!(broker.refresh(&authid).await.status, StatusCode::OK);
}

#[tokio::test]
async fn repeated_unopenable_authids_from_one_address_are_limited() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(Limits {
            bad_authids_per_minute: 3,
            ..Limits::default()
        })
        .build();
    let base = broker.serve().await;
    let foreign = Setup::new(&mock, &["googledrive"])
        .build()
        .seal("googledrive", "rt-foreign");
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let reply = client
            .get(format!("{base}/refresh"))
            .header("X-AuthID", &foreign)
            .send()
            .await
            .unwrap();
        statuses.push(reply.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
}

#[tokio::test]
async fn oversized_headers_get_431_json() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let request = axum::http::Request::builder()
        .uri("/refresh")
        .header("X-AuthID", "v3:a.b.c.d.e")
        .header("X-Padding", "a".repeat(20_000))
        .body(axum::body::Body::empty())
        .unwrap();
    let reply = broker.request(request).await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_error_shape(&reply);
}

/// Anyone can make up `v2:<provider>:<token>`; each made-up one costs a
/// provider call with the broker's credentials.
#[tokio::test]
async fn made_up_legacy_authids_leave_the_budget_of_sealed_authids_alone() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["box.com"])
        .tweak(|_, entry| entry["rateLimit"] = serde_json::json!({"perSecond": 10, "burst": 20}))
        .build();
    let mut held = 0;
    for i in 0..60 {
        let ip = format!("198.51.100.{}", i % 6 + 1);
        let reply = broker
            .refresh_from(&ip, &format!("v2:box.com:made-up-token-{i}"))
            .await;
        assert_error_shape(&reply);
        match reply.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    reply.header("x-reason").unwrap().contains("legacy AuthIDs"),
                    "{}",
                    reply.body
                );
                held += 1;
            }
            other => panic!("{other}: {}", reply.body),
        }
    }
    assert!(held > 0, "the made-up AuthIDs have a budget of their own");
    let sealed = broker.seal("box.com", &mock.issue_refresh_token());
    let real = broker.refresh(&sealed).await;
    assert_eq!(real.status, StatusCode::OK, "{}", real.body);
}

#[tokio::test]
async fn legacy_authids_the_provider_refuses_count_against_the_address() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(Limits {
            bad_authids_per_minute: 5,
            ..Limits::default()
        })
        .build();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let reply = broker
            .refresh_from("203.0.113.9", &format!("v2:googledrive:made-up-{i}"))
            .await;
        assert_error_shape(&reply);
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert_eq!(statuses[5..], [429; 7]);
    assert_eq!(mock.token_calls(), 5);
    // Another address is not held back by this one.
    let other = broker
        .refresh_from("203.0.113.10", "v2:googledrive:made-up-x")
        .await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
}

/// A flood of callbacks with made-up codes: each login state is real (the
/// attacker started the logins), each code is not.
#[tokio::test]
async fn anonymous_login_callbacks_pass_the_provider_quota() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .tweak(|_, entry| entry["rateLimit"] = serde_json::json!({"perSecond": 2, "burst": 2}))
        .build();
    let mut callbacks = Vec::new();
    for _ in 0..100 {
        let started = crate::login::start(&broker, "/login?id=googledrive").await;
        let state = crate::login::query(&started.authorize)["state"].clone();
        callbacks.push((state, started.cookie));
    }
    let began = std::time::Instant::now();
    let mut held = 0;
    for (i, (state, cookie)) in callbacks.iter().enumerate() {
        let path = format!(
            "/logged-in?state={}&code=made-up-code-{i}",
            url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
        );
        let reply = crate::login::callback(&broker, &path, Some(cookie)).await;
        match reply.status.as_u16() {
            // The provider refused the made-up code.
            400 => assert!(reply.body.contains("refused the login"), "{}", reply.body),
            503 => {
                assert!(reply.header("retry-after").is_some());
                assert!(reply.body.contains("budget"), "{}", reply.body);
                held += 1;
            }
            other => panic!("{other}: {}", reply.body),
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    // The quota allows its burst plus its rate over the time taken.
    let allowed = 2 + (2.0 * elapsed).ceil() as usize;
    let calls = mock.token_calls();
    assert!(calls <= allowed, "{calls} token calls, {allowed} allowed");
    assert_eq!(calls + held, 100);
    assert_eq!(broker.app.protection().active_backoffs(broker.app.now()), 0);
}

#[tokio::test]
async fn login_callbacks_token_logins_and_revocations_are_limited_per_address() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive", "jottacloud"])
        .limits(Limits {
            login_attempts_per_minute: 3,
            ..Limits::default()
        })
        .build();
    let callback = |ip: &'static str| {
        let request = axum::http::Request::builder()
            .uri("/logged-in?state=ls1.made-up&code=made-up")
            .body(axum::body::Body::empty())
            .unwrap();
        broker.request_from(ip, request)
    };
    for _ in 0..3 {
        assert_eq!(callback("192.0.2.1").await.status, StatusCode::BAD_REQUEST);
    }
    let page = callback("192.0.2.1").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(retry_after(&page) >= 1);
    assert!(page.body.contains("Too many logins"), "{}", page.body);

    let token_login = axum::http::Request::builder()
        .method("POST")
        .uri("/cli-token-login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from("id=jottacloud&token=made-up"))
        .unwrap();
    let page = broker.request_from("192.0.2.1", token_login).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&page) >= 1);

    // Google's revocation endpoint takes the token alone.
    mock.set_revoke_requires_client_auth(false);
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    let json = broker
        .request_from("192.0.2.1", crate::support::broker::revoke_request(&authid))
        .await;
    assert_eq!(json.status, StatusCode::TOO_MANY_REQUESTS);
    assert_error_shape(&json);
    assert!(retry_after(&json) >= 1);
    assert_eq!(mock.revoke_calls(), 0);

    // Another address is not held back.
    assert_eq!(callback("192.0.2.2").await.status, StatusCode::BAD_REQUEST);
    let json = broker
        .request_from("192.0.2.2", crate::support::broker::revoke_request(&authid))
        .await;
    assert_eq!(json.status, StatusCode::OK, "{}", json.body);
}
