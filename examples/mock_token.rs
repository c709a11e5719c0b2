//! A minimal OAuth 2.0 token endpoint for load tests: `POST /token` with a
//! `refresh_token` grant answers a fresh access token at once. Refresh
//! tokens starting with `rot-` rotate (the answer carries a new `rot-`
//! token, as Box does); others do not. It keeps no state, so any number of
//! distinct logins can refresh. `scripts/bench-load.sh` and
//! `scripts/soak.sh` run it as the provider behind the broker.
//!
//!   cargo run --release --example mock_token -- [LISTEN]
//!
//! Prints `listening <address>` on stdout once bound.

use std::collections::HashMap;
use std::io::Write;

use axum::Form;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngCore;
use serde_json::json;

fn random(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

async fn token(Form(form): Form<HashMap<String, String>>) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if field("grant_type") != "refresh_token" || field("refresh_token").is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_grant" })),
        )
            .into_response();
    }
    let mut body = json!({
        "access_token": random("mock-at-"),
        "token_type": "Bearer",
        "expires_in": 3600,
    });
    if field("refresh_token").starts_with("rot-") {
        body["refresh_token"] = random("rot-").into();
    }
    axum::Json(body).into_response()
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new()
        .route("/token", post(token))
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app).await
}
