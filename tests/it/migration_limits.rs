//! What a flood of old App Engine AuthIDs may cost: the per-address limit
//! counted before the export, the broker-wide export caps, remembered
//! failures, and the capacity left for everyone else while exports hang.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use oauth_broker::config::Limits;

use crate::support::broker::{Broker, Reply, Setup, assert_error_shape};
use crate::support::legacy_service::{API_KEY, FakeLegacyService, LegacyFault, key_id, password};
use crate::support::mock_provider::MockProvider;

fn made_up() -> String {
    format!("{}:{}", key_id(), password())
}

fn broker(mock: &MockProvider, fake: &FakeLegacyService, limits: Limits) -> Arc<Broker> {
    Arc::new(
        Setup::new(mock, &["googledrive"])
            .legacy_service(&fake.url(), API_KEY)
            .limits(limits)
            .build(),
    )
}

/// `n` refreshes at once, each of a made-up old AuthID, from `ip(i)`.
async fn flood(broker: &Arc<Broker>, n: usize, ip: impl Fn(usize) -> String) -> Vec<Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let broker = Arc::clone(broker);
            let ip = ip(i);
            tokio::spawn(async move { broker.refresh_from(&ip, &made_up()).await })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn count(replies: &[Reply], status: StatusCode) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

#[tokio::test]
async fn one_address_cannot_export_more_than_its_budget_even_concurrently() {
    let mock = MockProvider::start().await;
    for status in [404, 503] {
        let fake = FakeLegacyService::start().await;
        fake.set_fault(Some(LegacyFault::Slow(Duration::from_millis(300), status)));
        let broker = broker(
            &mock,
            &fake,
            Limits {
                bad_authids_per_minute: 5,
                ..Limits::default()
            },
        );
        let replies = flood(&broker, 30, |_| "198.51.100.7".into()).await;
        assert!(
            fake.export_calls() <= 5,
            "{} exports for one address answered {status}",
            fake.export_calls()
        );
        assert_eq!(count(&replies, StatusCode::TOO_MANY_REQUESTS), 25);
        // Failures counted: the address stays refused, without a call.
        let calls = fake.export_calls();
        let later = broker.refresh_from("198.51.100.7", &made_up()).await;
        assert_eq!(later.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(fake.export_calls(), calls);
        // Another address has its own budget.
        let other = broker.refresh_from("198.51.100.8", &made_up()).await;
        assert_ne!(other.status, StatusCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test]
async fn a_successful_migration_gives_its_count_back() {
    let mock = MockProvider::start().await;
    let fake = FakeLegacyService::start().await;
    let broker = broker(
        &mock,
        &fake,
        Limits {
            bad_authids_per_minute: 2,
            ..Limits::default()
        },
    );
    for _ in 0..4 {
        let old = fake.add("googledrive", &mock.issue_refresh_token());
        let reply = broker.refresh_from("198.51.100.9", &old).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
}

#[tokio::test]
async fn the_broker_wide_export_rate_holds_across_addresses() {
    let mock = MockProvider::start().await;
    let fake = FakeLegacyService::start().await;
    let broker = broker(
        &mock,
        &fake,
        Limits {
            legacy_exports_per_minute: 4,
            ..Limits::default()
        },
    );
    let mut statuses = Vec::new();
    for i in 0..10 {
        let reply = broker
            .refresh_from(&format!("203.0.113.{i}"), &made_up())
            .await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(reply.header("retry-after").is_some());
            assert_error_shape(&reply);
        }
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(fake.export_calls(), 4);
    assert_eq!(statuses, [401, 401, 401, 401, 503, 503, 503, 503, 503, 503]);
}

#[tokio::test]
async fn the_broker_wide_export_cap_holds_while_exports_hang() {
    let mock = MockProvider::start().await;
    let fake = FakeLegacyService::start().await;
    fake.set_fault(Some(LegacyFault::Hang));
    let broker = broker(
        &mock,
        &fake,
        Limits {
            legacy_export_concurrency: 3,
            ..Limits::default()
        },
    );
    let replies = flood(&broker, 20, |i| format!("203.0.113.{i}")).await;
    assert!(fake.export_calls() <= 3, "{} exports", fake.export_calls());
    assert!(count(&replies, StatusCode::SERVICE_UNAVAILABLE) == 20);
}

#[tokio::test]
async fn a_failed_old_authid_is_refused_without_another_call() {
    let mock = MockProvider::start().await;
    let fake = FakeLegacyService::start().await;
    let broker = broker(&mock, &fake, Limits::default());
    let guess = made_up();
    for _ in 0..5 {
        let reply = broker.refresh_from("192.0.2.44", &guess).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    }
    assert_eq!(fake.export_calls(), 1);
}

#[tokio::test]
async fn health_ready_and_hits_answer_while_exports_hang() {
    let mock = MockProvider::start().await;
    let fake = FakeLegacyService::start().await;
    let broker = broker(
        &mock,
        &fake,
        Limits {
            max_concurrent_requests: 8,
            legacy_export_concurrency: 64,
            ..Limits::default()
        },
    );
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    assert_eq!(broker.refresh(&authid).await.status, StatusCode::OK);
    fake.set_fault(Some(LegacyFault::Hang));
    let hanging: Vec<_> = (0..40)
        .map(|i| {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                broker
                    .refresh_from(&format!("203.0.113.{i}"), &made_up())
                    .await
            })
        })
        .collect();
    // Bounded: until the exports hold what they may.
    for _ in 0..500 {
        if fake.export_calls() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(fake.export_calls(), 6, "three quarters of 8 wait at most");
    // The others were shed at once.
    for _ in 0..500 {
        if hanging.iter().filter(|t| t.is_finished()).count() >= 34 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for path in ["/health", "/ready"] {
        let reply = broker.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    }
    assert_eq!(broker.refresh(&authid).await.status, StatusCode::OK);
    let form = Request::builder()
        .method("POST")
        .uri("/refresh")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("authid={authid}")))
        .unwrap();
    let reply = broker.request(form).await;
    assert_eq!(reply.status, StatusCode::OK, "a hit on the full path");
    for task in hanging {
        task.abort();
    }
}

#[tokio::test]
async fn bad_authids_from_one_ipv6_64_share_a_budget() {
    let mock = MockProvider::start().await;
    let broker = Setup::new(&mock, &["googledrive"])
        .limits(Limits {
            bad_authids_per_minute: 2,
            ..Limits::default()
        })
        .build();
    let bad = "v3:not-an-authid";
    assert_eq!(
        broker.refresh_from("2001:db8:5:6::1", bad).await.status,
        400
    );
    assert_eq!(
        broker
            .refresh_from("2001:db8:5:6:ffff::2", bad)
            .await
            .status,
        400
    );
    let third = broker.refresh_from("2001:db8:5:6:1:2:3:4", bad).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "one /64");
    assert_eq!(
        broker.refresh_from("2001:db8:5:7::1", bad).await.status,
        400
    );
    assert_eq!(broker.refresh_from("192.0.2.1", bad).await.status, 400);
    assert_eq!(broker.refresh_from("192.0.2.2", bad).await.status, 400);
    assert_eq!(
        broker.refresh_from("::ffff:192.0.2.1", bad).await.status,
        400
    );
    assert_eq!(
        broker.refresh_from("::ffff:192.0.2.1", bad).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "an IPv4-mapped address counts as its IPv4 address"
    );
}

#[tokio::test]
async fn an_old_live_connect_authid_gets_401_and_a_500_gets_503_with_retry_after() {
    let mock = MockProvider::start().await;
    let fake = FakeLegacyService::start().await;
    let broker = broker(&mock, &fake, Limits::default());
    let live_connect = fake.add("onedrive", "rt-live-connect");
    let reply = broker.refresh(&live_connect).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_error_shape(&reply);
    assert!(reply.body.contains("Live Connect"), "{}", reply.body);

    fake.set_fault(Some(LegacyFault::Status(500, "Server error".into())));
    let reply = broker.refresh(&made_up()).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert_error_shape(&reply);
    assert!(reply.header("retry-after").is_some());
}
