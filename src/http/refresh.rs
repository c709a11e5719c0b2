//! `GET|POST /refresh`: the Duplicati-compatible token endpoint (the full
//! path; a plain cache hit is answered ahead of the router by
//! `fast_refresh`, with the same core call and headers).

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};

use super::ApiError;
use super::client_ip::ClientIp;
use super::headers::token_headers;
use super::input::Params;
use super::state::AppState;
use crate::provider::is_provider_id;

pub async fn refresh(
    State(app): State<AppState>,
    ClientIp(client): ClientIp,
    method: Method,
    params: Params,
) -> Result<Response, ApiError> {
    let Some(authid) = params.authid()? else {
        return no_authid(&method, &params, &super::page::base_path(&app));
    };
    let body = app.refresh(authid, client).await?;
    // The JSON the cache prepared (the fast path sends the same bytes).
    let mut response = body.into_response();
    token_headers(response.headers_mut());
    Ok(response)
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
