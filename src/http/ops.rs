//! Operational endpoints: liveness, readiness, metrics, and the old App
//! Engine service's worker check.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiError;
use super::input::Params;
use super::state::{AppState, HttpState};

/// Alive: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when keys are loaded and at least one provider is usable: the
/// verdict, the number of keys and of providers.
fn readiness(app: &HttpState) -> (bool, usize, usize) {
    let keys = app.keyring().current().len();
    let providers = app.catalogue().providers().len();
    (keys > 0 && providers > 0, keys, providers)
}

/// How long `/ready` waits for the store to answer a ping.
const STORE_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Ready: keys are loaded and at least one provider is usable. The store's
/// state is reported but does not decide: a store outage must not take
/// every instance out of the load balancer, since logins of providers that
/// do not rotate keep working without it.
pub async fn ready(State(app): State<AppState>) -> Response {
    let (ok, keys, providers) = readiness(&app);
    let status_of_store = app.store_status(STORE_PING_TIMEOUT).await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut store = json!({ "kind": status_of_store.kind, "up": status_of_store.up });
    if let (Some(fields), Some(details)) = (store.as_object_mut(), status_of_store.details) {
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
pub async fn isalive(State(app): State<AppState>, params: Params) -> Result<Response, ApiError> {
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
pub async fn metrics(State(app): State<AppState>) -> Response {
    let body = app.render_metrics(readiness(&app).0);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
