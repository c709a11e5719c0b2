//! Revocation: `GET /revoke` (the form), `POST /revoked` (its HTML answer)
//! and `POST /revoke` with `X-AuthID` for programs (JSON).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use super::client_ip::ClientIp;
use super::input::{OwnForm, Params};
use super::page::{self, Page};
use super::state::AppState;
use crate::login::RevokeOutcome;

pub async fn form(State(app): State<AppState>) -> Page {
    page::render(&app, StatusCode::OK, "revoke.html", json!({}))
}

/// `POST /revoke`: JSON `{"result": "revoked"}` or the error format.
pub async fn revoke_json(
    State(app): State<AppState>,
    ClientIp(client): ClientIp,
    params: Params,
) -> Result<Response, ApiError> {
    let authid = params
        .authid()?
        .ok_or_else(|| ApiError::bad_request("Missing AuthID: send it in the X-AuthID header"))?;
    match app.login().revoke(authid, client).await {
        Ok(RevokeOutcome::Revoked { provider }) => {
            let mut response =
                axum::Json(json!({ "result": "revoked", "type": provider.id })).into_response();
            super::headers::no_store(response.headers_mut());
            Ok(response)
        }
        Ok(RevokeOutcome::NoEndpoint { provider }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            match &provider.deauth_link {
                Some(link) => format!(
                    "{} cannot be asked to revoke access; this server no longer accepts the AuthID, and the access ends once you remove the application at {link}",
                    provider.name
                ),
                None => format!(
                    "{} cannot be asked to revoke access; this server no longer accepts the AuthID, and the access ends once you remove the application in your account there",
                    provider.name
                ),
            },
        )),
        Err(e) => Err(e.into()),
    }
}

/// `POST /revoked` (form `authid`): the same, as a page.
pub async fn revoked_page(
    State(app): State<AppState>,
    ClientIp(client): ClientIp,
    OwnForm(params): OwnForm,
) -> Page {
    let authid = match params.authid() {
        Ok(Some(a)) => a,
        Ok(None) => {
            return page::error(
                &app,
                ApiError::bad_request("Paste the AuthID to revoke").titled("No AuthID"),
            );
        }
        Err(e) => return page::error(&app, e.titled("Not revoked")),
    };
    let (revoked, provider) = match app.login().revoke(authid, client).await {
        Ok(RevokeOutcome::Revoked { provider }) => (true, provider),
        Ok(RevokeOutcome::NoEndpoint { provider }) => (false, provider),
        Err(e) => return page::error(&app, ApiError::from(e).titled("Not revoked")),
    };
    page::render(
        &app,
        StatusCode::OK,
        "revoked.html",
        json!({
            "revoked": revoked,
            "provider_name": provider.name,
            "deauth_link": provider.deauth_link,
        }),
    )
    .no_store()
}
