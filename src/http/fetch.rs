//! `/fetch` and `/token-state`: the polling side of the fetch rendezvous.
//! `/fetch` answers JSONP when asked with a safe callback name.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiError;
use super::input::Params;
use super::state::AppState;
use crate::login::fetch::is_jsonp_callback;
use crate::login::{FetchState, FetchToken, LoginService};

/// `GET /fetch?token=T[&callback=NAME]`.
pub async fn fetch(State(app): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let callback = match params.get("callback").filter(|c| !c.is_empty()) {
        Some(c) if is_jsonp_callback(c) => Some(c.to_string()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "The callback must be a JavaScript name such as angular.callbacks._0",
            ));
        }
        None => None,
    };
    let answer = match token_of(&params) {
        Ok(token) => match app.fetch(&token).await {
            Ok(Some(FetchState::Pending)) => Ok(json!({ "wait": "Not ready" })),
            Ok(Some(FetchState::Ready(authid))) => Ok(json!({ "authid": authid.expose() })),
            Ok(Some(FetchState::Failed(reason))) => Err(ApiError::bad_request(reason)),
            Ok(Some(FetchState::Fetched) | None) => Err(no_such_token()),
            Err(_) => Err(ApiError::store_unavailable()),
        },
        Err(e) => Err(e),
    };
    Ok(match callback {
        Some(name) => jsonp(&name, answer, app.settings().public_base()),
        None => match answer {
            Ok(body) => json_no_store(body),
            Err(e) => e.into_response(),
        },
    })
}

/// `GET /token-state?token=T`: `{"success": true}` once the client has
/// fetched the AuthID, `false` before that or when the login failed.
pub async fn token_state(
    State(app): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    let token = token_of(&params)?;
    let state = app
        .fetch_state(&token)
        .await
        .map_err(|_| ApiError::store_unavailable())?;
    let body = match state.ok_or_else(no_such_token)? {
        FetchState::Pending => json!({ "wait": "Not ready" }),
        FetchState::Ready(_) | FetchState::Failed(_) => json!({ "success": false }),
        FetchState::Fetched => json!({ "success": true }),
    };
    Ok(json_no_store(body))
}

fn token_of(params: &Params) -> Result<FetchToken, ApiError> {
    LoginService::fetch_token(params.get("token"))
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::bad_request("Missing token"))
}

fn no_such_token() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "No such token: it expired, was already fetched, or was never registered; start the login again",
    )
}

fn json_no_store(body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    super::headers::no_store(response.headers_mut());
    response
}

/// JSONP answers are always 200: a script that fails to load tells the
/// page nothing, while `{"error": ...}` lets it show the reason (as the
/// original service did). `X-Reason` still carries it.
fn jsonp(callback: &str, answer: Result<Value, ApiError>, public_base: &str) -> Response {
    let (body, reason) = match answer {
        Ok(body) => (body, None),
        Err(e) => {
            let text = e.text(Some(public_base)).into_owned();
            (json!({ "error": text }), Some(text))
        }
    };
    let mut response = format!("/**/{callback}({body});").into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    super::headers::no_store(headers);
    if let Some(text) = reason {
        super::error::set_reason(headers, &text);
    }
    response
}
