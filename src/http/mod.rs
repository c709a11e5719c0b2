//! The HTTP edge: router, middleware stack, handlers and the error type.

mod error;
mod input;
mod middleware;
mod ops;
mod refresh;

use axum::Router;
use axum::routing::get;

pub use error::ApiError;

use crate::app::SharedApp;

/// The whole application: routes plus the middleware stack.
pub fn router(app: SharedApp) -> Router {
    let routes = Router::new()
        .route("/health", get(ops::health))
        .route("/refresh", get(refresh::refresh).post(refresh::refresh))
        .fallback(error::not_found)
        .with_state(app);
    middleware::apply(routes)
}
