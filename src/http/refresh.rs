//! `GET|POST /refresh`: the Duplicati-compatible token endpoint.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::ApiError;
use super::client_ip::ClientIp;
use super::input::Params;
use crate::app::SharedApp;
use crate::provider::is_provider_id;
use crate::refresh::RefreshAnswer;

pub async fn refresh(
    State(app): State<SharedApp>,
    ClientIp(client): ClientIp,
    method: Method,
    params: Params,
) -> Result<Response, ApiError> {
    let Some(authid) = params.authid()? else {
        return no_authid(&method, &params, &super::page::base_path(&app));
    };
    let answer = app.refresher.refresh(authid, client).await?;
    Ok(token_response(&answer))
}

/// `GET /refresh?type=X` is a login link some clients open by mistake.
/// `base` is the path of `PUBLIC_URL`, where the provider list lives.
fn no_authid(method: &Method, params: &Params, base: &str) -> Result<Response, ApiError> {
    match params.get("type") {
        Some(provider) if *method == Method::GET && is_provider_id(provider) => {
            Ok(Redirect::to(&format!("{base}/?type={provider}")).into_response())
        }
        _ => Err(ApiError::bad_request(
            "Missing AuthID: send it in the X-AuthID header",
        )),
    }
}

/// The JSON the cache prepared for this answer (the fast path sends the
/// same bytes).
fn token_response(answer: &RefreshAnswer) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        answer.json_body(),
    )
        .into_response();
    no_store(response.headers_mut());
    response
}

/// Responses carrying a token must never be cached anywhere.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
