//! Operational endpoints: liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::{App, SharedApp};

/// Alive: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when keys are loaded and at least one provider is usable: the
/// verdict, the number of keys and of providers.
fn readiness(app: &App) -> (bool, usize, usize) {
    let keys = app.keyring.current().len();
    let providers = app.catalogue().providers().len();
    (keys > 0 && providers > 0, keys, providers)
}

/// Ready: keys are loaded and at least one provider is usable.
pub async fn ready(State(app): State<SharedApp>) -> Response {
    let (ok, keys, providers) = readiness(&app);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "ready": ok, "keys": keys, "providers": providers });
    (status, Json(body)).into_response()
}

/// Prometheus text format.
pub async fn metrics(State(app): State<SharedApp>) -> Response {
    app.refresher.update_gauges();
    app.metrics.ready.set(i64::from(readiness(&app).0));
    let keyring = app.keyring.current();
    let loaded: Vec<&str> = keyring.keys().iter().map(|k| k.kid()).collect();
    app.metrics.record_keys(
        keyring.primary().kid(),
        &loaded,
        &app.keyring.stats().snapshot(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
