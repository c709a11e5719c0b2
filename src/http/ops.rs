//! Operational endpoints: liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::SharedApp;
use crate::metrics::KeyLabels;

/// Alive: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready: keys are loaded and at least one provider is usable.
pub async fn ready(State(app): State<SharedApp>) -> Response {
    let keys = app.keyring.current().len();
    let providers = app.catalogue().providers().len();
    let ok = keys > 0 && providers > 0;
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
    for (kid, count) in app.keyring.stats().snapshot() {
        app.metrics
            .authids_opened
            .get_or_create(&KeyLabels { kid })
            .set(count as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
