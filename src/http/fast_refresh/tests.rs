//! The fast path against the full stack: same bytes, headers, metrics and
//! limits, and what falls through.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;

use super::fixture::{Reply, fixture, get, header_set, reply};
use super::*;
use crate::authid::MAX_AUTHID_LEN;
use crate::config::Limits;

#[tokio::test]
async fn a_hit_answers_the_bytes_and_headers_of_the_full_stack() {
    let f = fixture(Limits::default());
    for service in ["googledrive", "box.com"] {
        let authid = f.authid(service);
        let first = f.full(get(&authid)).await;
        assert_eq!(first.status, StatusCode::OK);
        let fast = reply(f.hit(&get(&authid)).expect("a hit")).await;
        let full = f.full(get(&authid)).await;
        assert_eq!(fast.status, full.status);
        assert_eq!(fast.body, full.body, "{service}");
        assert_eq!(header_set(&fast.headers), header_set(&full.headers));
        assert_eq!(fast.headers["cache-control"], "no-store");
        let json: serde_json::Value = serde_json::from_slice(&fast.body).unwrap();
        assert_eq!(json["type"], service);
        assert_eq!(json["expires"], 3600);
        // Box rotates: the hit carries the new AuthID like the full path.
        assert_eq!(json.get("v2_authid").is_some(), service == "box.com");
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn expires_counts_down_and_a_nearly_expired_token_falls_through() {
    let f = fixture(Limits::default());
    let authid = f.authid("googledrive");
    f.full(get(&authid)).await;
    f.clock.advance(1234);
    // The first request after a minute looks for a revocation, on the
    // full path; the next is a fast hit again.
    assert!(f.hit(&get(&authid)).is_none());
    assert_eq!(f.full(get(&authid)).await.status, StatusCode::OK);
    let fast = reply(f.hit(&get(&authid)).unwrap()).await;
    let json: serde_json::Value = serde_json::from_slice(&fast.body).unwrap();
    assert_eq!(json["expires"], 3600 - 1234);
    assert_eq!(fast.body, f.full(get(&authid)).await.body);
    f.clock.advance(3600 - 1234 - 60);
    assert!(f.hit(&get(&authid)).is_none(), "a minute left: refreshed");
    let renewed = f.full(get(&authid)).await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 2);
    assert!(f.hit(&get(&authid)).is_some());
}

#[tokio::test]
async fn request_ids_come_from_one_sequence_or_from_the_client() {
    let f = fixture(Limits::default());
    let authid = f.authid("googledrive");
    let id = |r: &Reply| r.headers[&REQUEST_ID].to_str().unwrap().to_string();
    let a = id(&f.full(get(&authid)).await);
    let b = id(&reply(f.hit(&get(&authid)).unwrap()).await);
    let c = id(&f.full(get(&authid)).await);
    let (prefix, n) = a.split_once('-').unwrap();
    let n = u64::from_str_radix(n, 16).unwrap();
    assert_eq!(b, format!("{prefix}-{:x}", n + 1));
    assert_eq!(c, format!("{prefix}-{:x}", n + 2));
    let mut own = get(&authid);
    own.headers_mut()
        .insert(&REQUEST_ID, HeaderValue::from_static("client-7"));
    let echoed = reply(f.hit(&own).unwrap()).await;
    assert_eq!(echoed.headers[&REQUEST_ID], "client-7");
}

#[tokio::test]
async fn hits_are_counted_in_the_same_series_as_the_full_path() {
    let f = fixture(Limits::default());
    let authid = f.authid("googledrive");
    f.full(get(&authid)).await;
    let requests = r#"oauth_broker_http_requests_total{route="/refresh",status="200"}"#;
    let hits = r#"oauth_broker_refreshes_total{provider="googledrive",outcome="cache_hit"}"#;
    assert_eq!(f.metric(requests), 1.0);
    assert_eq!(f.metric(hits), 0.0);
    f.full(get(&authid)).await;
    for _ in 0..3 {
        f.hit(&get(&authid)).unwrap();
    }
    assert_eq!(f.metric(requests), 5.0);
    assert_eq!(f.metric(hits), 4.0);
}

#[tokio::test]
async fn hits_count_toward_the_login_limit_and_the_full_path_refuses_past_it() {
    let f = fixture(Limits {
        login_requests_per_hour: 3,
        ..Limits::default()
    });
    let authid = f.authid("googledrive");
    assert_eq!(f.routed(get(&authid)).await.status, StatusCode::OK);
    assert!(f.hit(&get(&authid)).is_some());
    assert!(f.hit(&get(&authid)).is_some());
    assert!(f.hit(&get(&authid)).is_none(), "over the limit: not a hit");
    let refused = f.routed(get(&authid)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key("retry-after"));
    assert!(refused.headers.contains_key("x-reason"));
    let limited = r#"oauth_broker_refreshes_total{provider="googledrive",outcome="limited"}"#;
    assert_eq!(f.metric(limited), 1.0);
}

#[tokio::test]
async fn anything_but_a_plain_hit_falls_through() {
    let f = fixture(Limits {
        max_concurrent_requests: 4,
        ..Limits::default()
    });
    let authid = f.authid("googledrive");
    assert!(f.hit(&get(&authid)).is_none(), "a miss");
    f.full(get(&authid)).await;
    assert!(f.hit(&get(&authid)).is_some());
    let with = |edit: &dyn Fn(&mut Request)| {
        let mut r = get(&authid);
        edit(&mut r);
        f.hit(&r)
    };
    assert!(with(&|r| *r.method_mut() = Method::POST).is_none());
    assert!(with(&|r| *r.method_mut() = Method::HEAD).is_none());
    assert!(with(&|r| *r.uri_mut() = "/refreshx".parse().unwrap()).is_none());
    assert!(with(&|r| *r.uri_mut() = "/fetch".parse().unwrap()).is_none());
    assert!(
        with(&|r| *r.uri_mut() = "/refresh?authid=x".parse().unwrap()).is_some(),
        "the header wins over the query, as on the full path"
    );
    assert!(
        with(&|r| {
            r.headers_mut().remove("x-authid");
        })
        .is_none()
    );
    assert!(
        with(&|r| {
            r.headers_mut()
                .insert("x-authid", HeaderValue::from_static("  "));
        })
        .is_none()
    );
    let spaced = format!(" \t{authid}\t ");
    assert!(
        with(&|r| {
            r.headers_mut().insert("x-authid", spaced.parse().unwrap());
        })
        .is_some(),
        "spaces around are trimmed, as on the full path"
    );
    let not_text = [authid.as_bytes(), b"\xff"].concat();
    assert!(
        with(&|r| {
            let value = HeaderValue::from_bytes(&not_text).unwrap();
            r.headers_mut().insert("x-authid", value);
        })
        .is_none(),
        "not text: the full path refuses it"
    );
    assert!(
        with(&|r| {
            r.headers_mut()
                .insert("x-authid", HeaderValue::from_bytes(b"v3:\xe9").unwrap());
        })
        .is_none()
    );
    let long = "v".repeat(MAX_AUTHID_LEN + 1);
    assert!(
        with(&|r| {
            r.headers_mut().insert("x-authid", long.parse().unwrap());
        })
        .is_none()
    );
}

#[tokio::test]
async fn a_form_or_big_headers_fall_through_and_a_full_stack_does_not_stop_hits() {
    let f = fixture(Limits {
        max_concurrent_requests: 4,
        ..Limits::default()
    });
    let authid = f.authid("googledrive");
    assert!(f.hit(&get(&authid)).is_none(), "a miss");
    f.full(get(&authid)).await;
    assert!(f.hit(&get(&authid)).is_some());
    let with = |edit: &dyn Fn(&mut Request)| {
        let mut r = get(&authid);
        edit(&mut r);
        f.hit(&r)
    };
    assert!(
        with(&|r| {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        })
        .is_none()
    );
    assert!(
        with(&|r| {
            for i in 0..70 {
                let name = HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap();
                r.headers_mut().insert(name, HeaderValue::from_static("1"));
            }
        })
        .is_none()
    );
    let padded = f
        .routed({
            let mut r = get(&authid);
            r.headers_mut()
                .insert("x-pad", "p".repeat(17 * 1024).parse().unwrap());
            r
        })
        .await;
    assert_eq!(padded.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // At the concurrency limit, a hit is still answered (it takes no
    // permit); anything else reaches the stack, which sheds it.
    let held = f.permits.clone().acquire_many_owned(4).await.unwrap();
    assert!(f.hit(&get(&authid)).is_some());
    assert_eq!(f.routed(get(&authid)).await.status, StatusCode::OK);
    assert_eq!(
        f.routed(get(&f.authid("box.com"))).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    drop(held);
    assert!(f.hit(&get(&authid)).is_some());
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_noticed_on_a_hit_too() {
    let f = fixture(Limits::default());
    let authid = f.authid("googledrive");
    f.full(get(&authid)).await;
    let mut request = get(&authid);
    request
        .headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
    let peer = std::net::SocketAddr::from(([198, 51, 100, 1], 4321));
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    assert!(f.hit(&request).is_some());
    assert_eq!(f.metric("oauth_broker_untrusted_forwarded_total"), 1.0);
    assert!(f.hit(&get(&authid)).is_some());
    assert_eq!(f.metric("oauth_broker_untrusted_forwarded_total"), 1.0);
}

#[tokio::test]
async fn a_revoked_login_is_no_longer_a_hit() {
    let f = fixture(Limits::default());
    let authid = f.authid("googledrive");
    f.full(get(&authid)).await;
    assert!(f.hit(&get(&authid)).is_some());
    let login = f.app.refresher().open(&authid).unwrap();
    let ending = f
        .app
        .refresher()
        .begin_ending(&authid, login)
        .await
        .unwrap();
    ending.finish().await.unwrap();
    assert!(f.hit(&get(&authid)).is_none());
}

#[tokio::test]
async fn a_revocation_on_another_instance_is_looked_for_on_the_full_path() {
    let f = fixture(Limits::default());
    let authid = f.authid("googledrive");
    f.full(get(&authid)).await;
    // Another instance on the same store ends the login.
    let login = f.app.refresher().open(&authid).unwrap();
    crate::refresh::Refresher::revoke_in_store(f.store.as_ref(), &login).await;
    f.clock.advance(crate::refresh::REVOCATION_RECHECK_SECS - 1);
    assert!(f.hit(&get(&authid)).is_some(), "within the minute");
    f.clock.advance(1);
    assert!(f.hit(&get(&authid)).is_none(), "then the full path looks");
    assert_eq!(f.full(get(&authid)).await.status, StatusCode::UNAUTHORIZED);
    assert!(f.hit(&get(&authid)).is_none());
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}
