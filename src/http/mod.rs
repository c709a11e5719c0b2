//! The HTTP edge: router, middleware stack, handlers, the error type, and
//! the pages (templates and how they are rendered).

mod client_ip;
mod demo;
mod error;
mod fast_refresh;
mod fetch;
mod headers;
mod input;
mod login;
mod middleware;
mod ops;
mod page;
mod refresh;
mod revoke;
pub mod server;
mod site;
mod slow_clients;
mod state;
mod templates;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub use error::ApiError;
pub use fast_refresh::FastRefresh;
pub use state::{AppState, HttpState};
pub use templates::Templates;

use crate::app::SharedApp;

/// The whole application as one service: the `/refresh` fast path in front
/// of the router and its middleware stack. Served as it is (not inside
/// another `Router`, whose routing a hit would pay for twice).
pub fn router(app: SharedApp) -> FastRefresh {
    let state = Arc::new(HttpState::new(app));
    let (full, ids, _) = full_stack(Arc::clone(&state));
    FastRefresh::new(state, full, ids)
}

/// What the listener of `METRICS_LISTEN` serves: `/metrics` and
/// `/health`, with the same middleware stack and a concurrency limit of its
/// own, so scrapes never wait behind client requests (nor they behind
/// scrapes).
pub fn metrics_router(app: SharedApp) -> FastRefresh {
    let state = Arc::new(HttpState::new(app));
    let edge = middleware::Edge {
        metrics: Arc::clone(state.metrics()),
        public_base: state.settings().public_base().to_string(),
        request_timeout: state.settings().limits.request_timeout,
    };
    let ids = middleware::RequestIds::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(METRICS_PERMITS));
    let routes = Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/health", get(ops::health))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(Arc::clone(&state));
    let full = middleware::apply(routes, edge, ids.clone(), Some(permits));
    FastRefresh::new(state, full, ids)
}

/// Scrapes handled at once on the metrics listener.
const METRICS_PERMITS: usize = 8;

/// Every route with the middleware stack, and what the fast path shares
/// with the stack: the request ids and the concurrency limit's permits.
fn full_stack(app: AppState) -> (Router, middleware::RequestIds, Arc<tokio::sync::Semaphore>) {
    let edge = middleware::Edge {
        metrics: Arc::clone(app.metrics()),
        public_base: app.settings().public_base().to_string(),
        request_timeout: app.settings().limits.request_timeout,
    };
    let ids = middleware::RequestIds::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(
        app.settings().limits.max_concurrent_requests.max(1),
    ));
    let demo = app.demo().is_some().then(|| demo::routes(Arc::clone(&app)));
    // The probes wait on nothing (`/ready`'s store ping is bounded): no
    // load may make them fail.
    let probes = Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(Arc::clone(&app));
    // Each request of these waits on a provider or the store.
    let waiting = Router::new()
        .route("/logged-in", get(login::logged_in))
        .route("/cli-token-login", post(login::cli_token_login))
        .route("/fetch", get(fetch::fetch))
        .route("/token-state", get(fetch::token_state))
        .route("/revoke", get(revoke::form).post(revoke::revoke_json))
        .route("/revoked", post(revoke::revoked_page))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            middleware::waits_on_dependency,
        ))
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(Arc::clone(&app));
    let mut routes = Router::new()
        .route("/isalive", get(ops::isalive).post(ops::isalive))
        .route("/refresh", get(refresh::refresh).post(refresh::refresh))
        .route("/", get(site::index))
        .route("/login", get(login::login))
        .route("/cli-token", get(site::cli_token_form))
        .route("/privacy-policy", get(site::privacy))
        .route("/static/{name}", get(site::asset))
        .route("/favicon.ico", get(site::favicon))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    // With a listener of its own, /metrics is not on the public one.
    if app.settings().metrics_listen.is_none() {
        routes = routes.route("/metrics", get(ops::metrics));
    }
    let mut routes = routes.with_state(app).merge(waiting);
    if let Some(demo) = demo {
        routes = routes.merge(demo);
    }
    let probes = middleware::apply(probes, edge.clone(), ids.clone(), None);
    let full =
        middleware::apply(routes, edge, ids.clone(), Some(Arc::clone(&permits))).merge(probes);
    (full, ids, permits)
}
