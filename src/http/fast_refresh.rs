//! The `/refresh` fast path: a cache hit answered ahead of the router and
//! its middleware stack. Everything a hit does is in this file; anything
//! that is not a plain hit goes to the full stack unchanged.
//!
//! A hit is `GET /refresh` with an `X-AuthID` whose text the in-process
//! cache holds a fresh answer for (no open, no provider, no await). The
//! general stack would spend most of a hit's time on things a hit cannot
//! need: a timer for the request timeout (nothing here waits), a span, a
//! boxed clone of the route, reading the query into a map, and counters
//! found by label. What a hit still does, and how it keeps the general
//! stack's behaviour:
//!
//! - the per-login request limit: counted by the refresher as on the full
//!   path; a login over its limit falls through, and the full path answers
//!   the 429 (it does not count a refused request, so nothing counts twice);
//! - metrics: `http_requests{route="/refresh",status="200"}` and
//!   `refreshes{provider,outcome="cache_hit"}`, the same series, counted on
//!   their atomics directly (found once, kept here);
//! - the answer: the JSON the cache prepared when the token arrived, with
//!   the seconds left written in; the same headers as the full stack
//!   (`Cache-Control: no-store`, `Pragma`, the security headers, the
//!   request id: the client's own or the next of the shared sequence);
//! - the concurrency limit: while no permit is free, requests fall through
//!   and the stack sheds them as it would have. A hit holds no permit: it
//!   returns before anything else can run on its thread;
//! - `X-Forwarded-For` from a peer that is not a trusted proxy is counted
//!   and logged as the full path's client address extractor does (the
//!   address itself matters only on a miss);
//! - the request timeout cannot fire on a hit, which never waits.
//!
//! Falling through: any other method or path, no `X-AuthID` (or an empty
//! or too long one; one that is not text is a miss), a form body (the full path reads it and
//! may refuse its size), headers over the limits, a cache miss, a login
//! over its limit.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use futures::future::Either;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;
use tower::Service;

use super::client_ip::notice_forwarded;
use super::middleware::{REQUEST_ID, RequestIds, over_header_limits};
use crate::app::SharedApp;
use crate::authid::MAX_AUTHID_LEN;

static X_AUTHID: HeaderName = HeaderName::from_static("x-authid");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The router's entry point: answers cache hits, hands the rest to `full`.
#[derive(Clone)]
pub struct FastRefresh(Arc<Shared>);

struct Shared {
    app: SharedApp,
    /// Every route with the whole middleware stack.
    full: Router,
    ids: RequestIds,
    /// The stack's concurrency limit.
    permits: Arc<Semaphore>,
    /// The headers of every hit answer, the request id to be filled in.
    headers: HeaderMap,
    /// `http_requests{route="/refresh",status="200"}`, found on first use
    /// (a series appears in `/metrics` only once counted).
    answered: OnceLock<Counter>,
    /// `refreshes{provider,outcome="cache_hit"}` per provider of the
    /// catalogue, found on first use.
    hits: Box<[(String, OnceLock<Counter>)]>,
}

impl FastRefresh {
    pub(super) fn new(
        app: SharedApp,
        full: Router,
        ids: RequestIds,
        permits: Arc<Semaphore>,
    ) -> Self {
        let mut headers = HeaderMap::with_capacity(6);
        for (name, value) in [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REQUEST_ID.clone(), "-"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let hits = app
            .catalogue()
            .providers()
            .iter()
            .map(|p| (p.id.clone(), OnceLock::new()))
            .collect();
        Self(Arc::new(Shared {
            app,
            full,
            ids,
            permits,
            headers,
            answered: OnceLock::new(),
            hits,
        }))
    }
}

impl Shared {
    /// The answer to `request` if it is a cache hit; `None` sends it to the
    /// full stack.
    fn hit(&self, request: &Request) -> Option<Response> {
        if request.method() != Method::GET || request.uri().path() != "/refresh" {
            return None;
        }
        // One pass over the headers: the limits, and the first value of
        // each header the full path reads (as its `get` would).
        let (mut authid, mut id, mut content_type) = (None, None, None);
        let mut forwarded = false;
        let (mut bytes, mut count) = (0, 0);
        for (name, value) in request.headers() {
            bytes += name.as_str().len() + value.len();
            count += 1;
            if *name == X_AUTHID {
                authid = authid.or(Some(value));
            } else if *name == REQUEST_ID {
                id = id.or(Some(value));
            } else if *name == header::CONTENT_TYPE {
                content_type = content_type.or(Some(value));
            } else if *name == X_FORWARDED_FOR {
                forwarded = true;
            }
        }
        // A form: the full path reads it (and may refuse its size).
        let form = content_type.is_some_and(|v| {
            v.as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
        // The bytes as they came: checking that they are text would cost
        // more than the whole lookup, and bytes that are not an AuthID match
        // no cached one (the full path then answers the 400).
        let authid = trim_spaces(authid?.as_bytes());
        if authid.is_empty()
            || authid.len() > MAX_AUTHID_LEN
            || form
            || over_header_limits(bytes, count)
            || self.permits.available_permits() == 0
        {
            return None;
        }
        let body = self.app.refresher.hit_in_process(authid, |hit, expires| {
            self.count_hit(hit.provider());
            hit.json_body(expires)
        })?;
        if forwarded {
            // What the full path's client address extractor would notice.
            notice_forwarded(&self.app, request.headers(), request.extensions());
        }
        let metrics = &self.app.metrics;
        self.answered
            .get_or_init(|| metrics.http_requests.handle("/refresh", &200))
            .inc();
        let id = match id {
            Some(id) => id.clone(),
            None => self.ids.next(),
        };
        tracing::debug!(id = ?id, "GET /refresh answered 200 from the cache");
        let mut response = Response::new(Body::from(body));
        // The template has a slot for the id: filling it allocates nothing.
        let headers = response.headers_mut();
        *headers = self.headers.clone();
        if let Some(slot) = headers.get_mut(&REQUEST_ID) {
            *slot = id;
        }
        Some(response)
    }

    fn count_hit(&self, provider: &str) {
        let metrics = &self.app.metrics;
        match self.hits.iter().find(|(id, _)| id == provider) {
            Some((id, counter)) => {
                counter
                    .get_or_init(|| metrics.refreshes.handle(id, "cache_hit"))
                    .inc();
            }
            // A provider outside the catalogue (the demo's): found by label.
            None => metrics.refresh(provider, "cache_hit"),
        }
    }
}

/// The trim of the full path: in a header value that is text, the only
/// whitespace is spaces and tabs.
fn trim_spaces(bytes: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

impl Service<Request> for FastRefresh {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, <Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready; so is a hit.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self.0.hit(&request) {
            Some(response) => Either::Left(ready(Ok(response))),
            None => Either::Right(self.0.full.clone().call(request)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use futures::future::BoxFuture;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    use url::Url;

    use super::*;
    use crate::app::App;
    use crate::authid::{Claims, Keyring};
    use crate::clock::ManualClock;
    use crate::config::{Limits, Settings};
    use crate::provider::client::FormField;
    use crate::provider::{Catalogue, RawAnswer, TokenClient, TransportError};
    use crate::secret::Sensitive;

    /// A provider that grants every refresh; at a `/rotating` token URL it
    /// also rotates the refresh token.
    #[derive(Default)]
    struct Grants {
        calls: AtomicUsize,
    }

    impl TokenClient for Grants {
        fn post_form<'a>(
            &'a self,
            url: &'a Url,
            _form: &'a [FormField],
            _bearer: Option<&'a Sensitive>,
        ) -> BoxFuture<'a, Result<RawAnswer, TransportError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let rotated = if url.path() == "/rotating" {
                format!(r#","refresh_token":"rt-{n}""#)
            } else {
                String::new()
            };
            Box::pin(async move {
                Ok(RawAnswer {
                    status: 200,
                    retry_after: None,
                    // Quotes and a backslash: the body's escaping is
                    // compared too.
                    body: format!(r#"{{"access_token":"at-{n}\"q\\","expires_in":3600{rotated}}}"#)
                        .into(),
                })
            })
        }

        fn get_json<'a>(
            &'a self,
            _url: &'a Url,
        ) -> BoxFuture<'a, Result<RawAnswer, TransportError>> {
            Box::pin(async { Err(TransportError::Connect) })
        }
    }

    struct Fixture {
        app: SharedApp,
        fast: FastRefresh,
        client: Arc<Grants>,
        clock: ManualClock,
    }

    fn fixture(limits: Limits) -> Fixture {
        let catalogue = Catalogue::load(
            &crate::provider::catalogue::CatalogueSource {
                configfile: Some(
                    r#"[{"id": "googledrive", "authUrl": "http://127.0.0.1:9/token", "loginUrl": "http://127.0.0.1:9/auth"},
                        {"id": "box.com", "authUrl": "http://127.0.0.1:9/rotating", "loginUrl": "http://127.0.0.1:9/auth"}]"#,
                ),
                ..Default::default()
            },
            &|name| {
                name.ends_with("_CLIENT_ID")
                    .then(|| "id".to_string())
                    .or_else(|| name.ends_with("_SECRET").then(|| "s".to_string()))
            },
        )
        .unwrap();
        let mut settings = Settings::for_url("http://127.0.0.1:9").unwrap();
        settings.limits = limits;
        let client = Arc::new(Grants::default());
        let clock = ManualClock::new(1_800_000_000);
        let app = Arc::new(App::new(
            settings,
            Keyring::ephemeral().unwrap(),
            None,
            catalogue,
            client.clone(),
            Arc::new(clock.clone()),
            Arc::new(crate::store::MemoryStore::default()),
        ));
        // What `router` puts behind its entry point, so the tests can call
        // `hit` alone and the full stack alone.
        let (full, ids, permits) = super::super::full_stack(Arc::clone(&app));
        let fast = FastRefresh::new(Arc::clone(&app), full, ids, permits);
        Fixture {
            app,
            fast,
            client,
            clock,
        }
    }

    impl Fixture {
        fn authid(&self, provider: &str) -> String {
            let claims = Claims::new(provider, Sensitive::new("rt-start"), self.app.clock.now());
            self.app.keyring.seal(&claims).unwrap()
        }

        fn hit(&self, request: &Request) -> Option<Response> {
            self.fast.0.hit(request)
        }

        async fn full(&self, request: Request) -> Reply {
            reply(self.fast.0.full.clone().oneshot(request).await.unwrap()).await
        }

        async fn routed(&self, request: Request) -> Reply {
            reply(self.fast.clone().oneshot(request).await.unwrap()).await
        }

        fn metric(&self, needle: &str) -> f64 {
            self.app
                .metrics
                .render()
                .lines()
                .find(|l| l.starts_with(needle))
                .and_then(|l| l.rsplit(' ').next())
                .map_or(0.0, |v| v.parse().unwrap())
        }
    }

    #[derive(Debug)]
    struct Reply {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    async fn reply(response: Response) -> Reply {
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes().to_vec(),
        }
    }

    fn get(authid: &str) -> Request {
        axum::http::Request::get("/refresh")
            .header("x-authid", authid)
            .header("user-agent", "Duplicati v2.1.0.5")
            .body(Body::empty())
            .unwrap()
    }

    /// Headers as sorted (name, value) pairs, without the request id and
    /// the length (the router sets it in process, hyper on the wire for
    /// both).
    fn header_set(headers: &HeaderMap) -> Vec<(String, String)> {
        let mut set: Vec<_> = headers
            .iter()
            .filter(|(k, _)| *k != REQUEST_ID && *k != header::CONTENT_LENGTH)
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        set.sort();
        set
    }

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
        // At the concurrency limit, the stack decides (and sheds).
        let held = f
            .fast
            .0
            .permits
            .clone()
            .acquire_many_owned(4)
            .await
            .unwrap();
        assert!(f.hit(&get(&authid)).is_none());
        assert_eq!(
            f.routed(get(&authid)).await.status,
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
        let login = f.app.refresher.open(&authid).unwrap();
        let ending = f.app.refresher.begin_ending(&authid, login).await.unwrap();
        ending.finish().await.unwrap();
        assert!(f.hit(&get(&authid)).is_none());
    }

    #[tokio::test]
    async fn a_revocation_on_another_instance_is_looked_for_on_the_full_path() {
        let f = fixture(Limits::default());
        let authid = f.authid("googledrive");
        f.full(get(&authid)).await;
        // Another instance on the same store ends the login.
        let login = f.app.refresher.open(&authid).unwrap();
        crate::refresh::Refresher::revoke_in_store(f.app.store.as_ref(), &login).await;
        f.clock.advance(crate::refresh::REVOCATION_RECHECK_SECS - 1);
        assert!(f.hit(&get(&authid)).is_some(), "within the minute");
        f.clock.advance(1);
        assert!(f.hit(&get(&authid)).is_none(), "then the full path looks");
        assert_eq!(f.full(get(&authid)).await.status, StatusCode::UNAUTHORIZED);
        assert!(f.hit(&get(&authid)).is_none());
        assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
    }
}
