//! The baseline of the load benchmark: a bare axum server (the same axum,
//! tokio and hyper as the broker) answering `GET /refresh` with a JSON body
//! of a chosen size and the broker's cache headers, and nothing else: no
//! middleware, no cache, no logging. `scripts/bench-load.sh` runs it next
//! to the broker.
//!
//!   cargo run --release --example bare_json -- [LISTEN] [BODY_BYTES]
//!
//! Prints `listening <address>` on stdout once bound.

use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

#[derive(Serialize)]
struct Body<'a> {
    access_token: &'a str,
    expires: u64,
    #[serde(rename = "type")]
    service: &'a str,
}

/// The JSON without the token, so the token can be sized to the target.
const SKELETON: &str = r#"{"access_token":"","expires":3599,"type":"mock"}"#;

async fn refresh(State(token): State<Arc<str>>) -> Response {
    let body = Body {
        access_token: &token,
        expires: 3599,
        service: "mock",
    };
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into());
    let body_bytes: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(120);
    let token: Arc<str> = "t"
        .repeat(body_bytes.saturating_sub(SKELETON.len()).max(1))
        .into();
    let app = Router::new()
        .route("/refresh", get(refresh))
        .with_state(token);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await
}
