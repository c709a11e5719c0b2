//! The middleware stack, built in one place: request id, tracing (path
//! only: queries can carry AuthIDs and codes), panic catching, timeouts,
//! body limits and baseline security headers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::{Level, Span};

use std::sync::Arc;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::middleware::Next;
use axum::response::IntoResponse;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

use super::ApiError;
use super::error;
use super::headers::SECURITY_HEADERS;
use crate::metrics::Metrics;

/// Largest request body accepted (forms carrying an AuthID are far smaller).
const BODY_LIMIT: usize = 64 * 1024;

pub(super) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids: a random prefix per router and a counter, `{prefix:08x}-{n:x}`.
/// Shared by the middleware stack and the `/refresh` fast path, so ids stay
/// unique whichever path answers.
#[derive(Clone)]
pub(super) struct RequestIds(Arc<IdState>);

struct IdState {
    prefix: u32,
    counter: AtomicU64,
}

impl RequestIds {
    pub(super) fn new() -> Self {
        Self(Arc::new(IdState {
            prefix: rand::random(),
            counter: AtomicU64::new(0),
        }))
    }

    /// The next id, formatted without an intermediate string.
    pub(super) fn next(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.0.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = [0u8; 8 + 1 + 16];
        for (i, slot) in out[..8].iter_mut().enumerate() {
            *slot = HEX[(self.0.prefix >> (28 - 4 * i) & 0xf) as usize];
        }
        out[8] = b'-';
        let digits = (16 - n.leading_zeros() as usize / 4).max(1);
        for (i, slot) in out[9..9 + digits].iter_mut().enumerate() {
            *slot = HEX[(n >> (4 * (digits - 1 - i)) & 0xf) as usize];
        }
        // Hex digits and a dash are always a valid header value.
        HeaderValue::from_bytes(&out[..9 + digits])
            .unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        Some(RequestId::new(self.next()))
    }
}

/// A span per request at debug level only: at info, creating and formatting
/// it cost a fifth of a cache hit's throughput. Error answers are logged by
/// [`per_route`] with the request id, method and route instead.
fn span_for<B>(request: &Request<B>) -> Span {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // The path only: query strings may carry AuthIDs, codes and tokens.
    tracing::debug_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

fn on_response<B>(response: &Response<B>, latency: Duration, _span: &Span) {
    tracing::debug!(
        status = response.status().as_u16(),
        ms = latency.as_millis() as u64,
        "answered"
    );
}

/// Total size and count of request headers accepted.
const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Whether the request headers are over the limits `per_route` enforces.
fn headers_too_large(headers: &axum::http::HeaderMap) -> bool {
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    over_header_limits(size, headers.len())
}

/// The header limits, from the total of name and value lengths and the
/// count of values.
pub(super) fn over_header_limits(bytes: usize, count: usize) -> bool {
    bytes > MAX_HEADER_BYTES || count > MAX_HEADERS
}

/// What [`per_route`] needs.
#[derive(Clone)]
pub struct Edge {
    pub metrics: Arc<Metrics>,
    /// `PUBLIC_URL` without a trailing slash: where a new AuthID is created.
    pub public_base: String,
    /// `REQUEST_TIMEOUT`: a request still running after it is answered 504.
    pub request_timeout: Duration,
}

/// Per matched route: refuses oversized headers, finishes error answers
/// (see [`error::finish`]), counts requests by route template (never the
/// raw path) and status, and logs error answers with their cause, once
/// (client errors at info, server errors at warn; successes only at debug,
/// the metrics count them). One function, so the route service is cloned
/// once per request, not once per concern.
async fn per_route(
    State(edge): State<Arc<Edge>>,
    request: axum::extract::Request,
    next: Next,
) -> Response<Body> {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("other", MatchedPath::as_str);
    let method = request.method().clone();
    let id = request.headers().get(&REQUEST_ID).cloned();
    let mut response = if headers_too_large(request.headers()) {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "The request headers are too large",
        )
        .into_response()
    } else {
        next.run(request).await
    };
    let cause = error::finish(&mut response, &edge.public_base);
    let status = response.status().as_u16();
    edge.metrics.http_requests.inc(route, &status);
    if status >= 400 {
        let id = id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-");
        let ms = started.elapsed().as_millis() as u64;
        let cause = cause.as_ref().map(tracing::field::display);
        if status >= 500 {
            tracing::warn!(id, %method, route, status, ms, cause, "answered");
        } else {
            tracing::info!(id, %method, route, status, ms, cause, "answered");
        }
    }
    response
}

/// A request that outlived `REQUEST_TIMEOUT`: answered like every other
/// error, JSON with `X-Reason`.
async fn timed_out(seconds: u64) -> ApiError {
    tracing::warn!(seconds, "a request took too long and was answered 504");
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "The request took too long; try again later",
    )
}

fn overloaded() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "The server is busy; try again shortly",
    )
    .with_retry_after(1)
}

/// The server's concurrency limit: a request is handled while it holds a
/// permit, and shed (503) when none is free rather than queued.
async fn limited(
    State(permits): State<Arc<Semaphore>>,
    request: axum::extract::Request,
    next: Next,
) -> Response<Body> {
    let Ok(_permit) = permits.try_acquire() else {
        return overloaded().into_response();
    };
    next.run(request).await
}

/// Routes whose every request waits on a dependency (a provider or the
/// store) draw on the app's pool for such requests as well (shed when it
/// is full), so they never hold every permit of the server's limit.
pub(super) async fn waits_on_dependency(
    State(app): State<super::AppState>,
    request: axum::extract::Request,
    next: Next,
) -> Response<Body> {
    let Some(_slot) = app.dependency_slot() else {
        return overloaded().into_response();
    };
    next.run(request).await
}

/// The whole stack in one `ServiceBuilder`, applied once: each separate
/// `Router::layer` call would box and clone the route service again on
/// every request. Outermost first. `permits` is the one concurrency limit
/// of the routes it is given for (`None` for the probes, which wait on
/// nothing and must answer whatever the load; the `/refresh` fast path
/// answers hits without one).
pub fn apply(
    routes: Router,
    edge: Edge,
    ids: RequestIds,
    permits: Option<Arc<Semaphore>>,
) -> Router {
    let [referrer, sniff] = SECURITY_HEADERS;
    let request_timeout = edge.request_timeout;
    let seconds = request_timeout.as_secs();
    let stack = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), ids))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span_for)
                .on_request(())
                .on_response(on_response)
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(HandleErrorLayer::new(move |_: tower::BoxError| {
            timed_out(seconds)
        }))
        .layer(tower::timeout::TimeoutLayer::new(request_timeout))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetResponseHeaderLayer::if_not_present(
            referrer.0,
            HeaderValue::from_static(referrer.1),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            sniff.0,
            HeaderValue::from_static(sniff.1),
        ))
        .option_layer(
            permits.map(|permits| axum::middleware::from_fn_with_state(permits, limited)),
        );
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(edge),
            per_route,
        ))
        .layer(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_prefix_dash_counter_in_hex() {
        let ids = RequestIds::new();
        let prefix = ids.0.prefix;
        for n in [0u64, 1, 0xf, 0x10, 0xabc, u64::MAX] {
            ids.0.counter.store(n, Ordering::Relaxed);
            assert_eq!(ids.next().to_str().unwrap(), format!("{prefix:08x}-{n:x}"));
        }
    }
}
