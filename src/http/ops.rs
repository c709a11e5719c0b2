//! Operational endpoints: liveness, readiness, metrics, and the old App
//! Engine service's worker check.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiError;
use super::input::Params;
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
    let mut store = json!({ "kind": app.store.kind(), "up": store_up });
    if let (Some(fields), Some(details)) = (store.as_object_mut(), app.store.details()) {
        fields.insert("details".into(), details);
    }
    let body = json!({
        "status": if ok { "ready" } else { "not ready" },
        "ready": ok,
        "keys": keys,
        "providers": providers,
        "store": store,
    });
    (status, Json(body)).into_response()
}

/// Longest `data` echoed by `/isalive`; the old service sends 30 to 32
/// hex digits.
pub const MAX_ISALIVE_DATA: usize = 256;

/// `GET|POST /isalive?data=X` → `{"data": "X"}`: how the old App Engine
/// service checks the workers it forwards `/refresh` to. A broker that is
/// not ready answers 503, so the old service stops forwarding to it.
pub async fn isalive(State(app): State<SharedApp>, params: Params) -> Result<Response, ApiError> {
    let data = params
        .get("data")
        .ok_or_else(|| ApiError::bad_request("Missing data"))?;
    if data.chars().count() > MAX_ISALIVE_DATA {
        return Err(ApiError::bad_request(format!(
            "data is longer than {MAX_ISALIVE_DATA} characters"
        )));
    }
    if !readiness(&app).0 {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: no keys or no usable provider",
        ));
    }
    Ok(Json(json!({ "data": data })).into_response())
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
