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

/// How long `/ready` waits for the store to answer a ping.
const STORE_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Ready: keys are loaded and at least one provider is usable. The store's
/// state is reported but does not decide: a store outage must not take
/// every instance out of the load balancer, since logins of providers that
/// do not rotate keep working without it.
pub async fn ready(State(app): State<SharedApp>) -> Response {
    let (ok, keys, providers) = readiness(&app);
    let store_up = matches!(
        tokio::time::timeout(STORE_PING_TIMEOUT, app.store.ping()).await,
        Ok(Ok(()))
    );
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ok { "ready" } else { "not ready" },
        "ready": ok,
        "keys": keys,
        "providers": providers,
        "store": { "kind": app.store.kind(), "up": store_up },
    });
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
