//! The HTTP edge: router, middleware stack, handlers and the error type.

mod client_ip;
mod demo;
mod error;
mod input;
mod middleware;
mod ops;
mod refresh;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use error::ApiError;

use crate::app::SharedApp;

/// The whole application: routes plus the middleware stack.
pub fn router(app: SharedApp) -> Router {
    let metrics = Arc::clone(&app.metrics);
    let max_concurrent = app.settings.limits.max_concurrent_requests;
    let demo = app.demo.is_some().then(|| demo::routes(Arc::clone(&app)));
    let mut routes = Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/refresh", get(refresh::refresh).post(refresh::refresh))
        .fallback(error::not_found)
        .with_state(app);
    if let Some(demo) = demo {
        routes = routes.merge(demo);
    }
    middleware::apply(routes, metrics, max_concurrent)
}
