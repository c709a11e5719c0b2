//! The `/refresh` fast path: a cache hit answered ahead of the router and
//! its middleware stack. Anything that is not a plain hit goes to the full
//! stack unchanged. The rules both paths share are the same functions: the
//! AuthID as sent and form detection (`headers`), the cache decision and
//! its metric (`App::hit`, through `Refresher::hit_in_process`), the token
//! answer's headers (`headers::token_headers`, `SECURITY_HEADERS`).
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
//! - metrics: `refreshes{provider,outcome="cache_hit"}` counted by the core
//!   as for a full-path hit; `http_requests{route="/refresh",status="200"}`
//!   (the middleware's series) counted here on its atomic (found once);
//! - the answer: the JSON the cache prepared when the token arrived, with
//!   the seconds left written in; the same headers as the full stack
//!   (`Cache-Control: no-store`, `Pragma`, the security headers, the
//!   request id: the client's own or the next of the shared sequence);
//! - the concurrency limit: a hit takes no permit and is answered even
//!   while none is free (it returns before anything else can run on its
//!   thread, so it never holds capacity others need), so requests waiting
//!   on a slow dependency cannot turn cache hits into 503s (SPEC 7);
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
use tower::Service;

use super::client_ip::notice_forwarded;
use super::headers::{SECURITY_HEADERS, SentAuthId, is_form, sent_authid, token_headers};
use super::middleware::{REQUEST_ID, RequestIds, over_header_limits};
use super::state::AppState;

static X_AUTHID: HeaderName = HeaderName::from_static("x-authid");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The router's entry point: answers cache hits, hands the rest to `full`.
#[derive(Clone)]
pub struct FastRefresh(Arc<Shared>);

struct Shared {
    app: AppState,
    /// Every route with the whole middleware stack.
    full: Router,
    ids: RequestIds,
    /// The headers of every hit answer, the request id to be filled in.
    headers: HeaderMap,
    /// `http_requests{route="/refresh",status="200"}`, found on first use
    /// (a series appears in `/metrics` only once counted).
    answered: OnceLock<Counter>,
}

impl FastRefresh {
    pub(super) fn new(app: AppState, full: Router, ids: RequestIds) -> Self {
        // What the handler and the middleware stack set on a token answer.
        let mut headers = HeaderMap::with_capacity(6);
        token_headers(&mut headers);
        for (name, value) in SECURITY_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
        headers.insert(REQUEST_ID.clone(), HeaderValue::from_static("-"));
        Self(Arc::new(Shared {
            app,
            full,
            ids,
            headers,
            answered: OnceLock::new(),
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
        // The bytes as they came: checking that they are text would cost
        // more than the whole lookup, and bytes that are not an AuthID match
        // no cached one (the full path then answers the 400).
        let SentAuthId::Given(authid) = sent_authid(authid?.as_bytes()) else {
            return None;
        };
        // A form: the full path reads it (and may refuse its size).
        if is_form(content_type) || over_header_limits(bytes, count) {
            return None;
        }
        let body = self.app.hit(authid)?;
        if forwarded {
            // What the full path's client address extractor would notice.
            notice_forwarded(&self.app, request.headers(), request.extensions());
        }
        let metrics = self.app.metrics();
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
mod fixture;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
