//! The HTTP edge: router, middleware stack, handlers and the error type.

mod error;
mod input;
mod ops;
mod refresh;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

use crate::app::SharedApp;

/// Largest request body accepted (forms carrying an AuthID are far smaller).
const BODY_LIMIT: usize = 64 * 1024;
/// Upper bound on one request, above the upstream timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The whole application: routes plus the middleware stack.
pub fn router(app: SharedApp) -> Router {
    let routes = Router::new()
        .route("/health", get(ops::health))
        .route("/refresh", get(refresh::refresh).post(refresh::refresh))
        .with_state(app);
    with_middleware(routes)
}

fn with_middleware(routes: Router) -> Router {
    routes
        .fallback(error::not_found)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(TraceLayer::new_for_http())
}
