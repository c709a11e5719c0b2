//! The site's own pages, the ones a visitor browses rather than the login
//! flow's redirects: the provider list, the login-token form, the privacy
//! policy and the static assets. How any page is rendered is `page`'s job.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiError;
use super::client_ip::ClientIp;
use super::input::PageParams;
use super::page::{self, Page};
use super::state::AppState;
use crate::login::state::STATE_LIFETIME;
use crate::login::{LoginError, LoginService};

/// `GET /`: every listed provider, or just `?type=ID`; `?token=T` registers
/// a polling client's fetch token.
pub async fn index(
    State(app): State<AppState>,
    ClientIp(client): ClientIp,
    PageParams(params): PageParams,
) -> Page {
    let token = match LoginService::fetch_token(params.get("token")) {
        Ok(t) => t,
        Err(e) => return page::error(&app, e),
    };
    if let Some(t) = &token {
        if let Err(e) = app.login().register_fetch_token(t, client).await {
            return page::error(&app, e);
        }
    }
    let wanted = params.get("type").map(str::trim).filter(|t| !t.is_empty());
    let providers: Vec<_> = match wanted {
        Some(name) => match app.login().provider(name) {
            Ok(p) => vec![p.clone()],
            Err(e) => return page::error(&app, e),
        },
        None => app
            .catalogue()
            .providers()
            .iter()
            .filter(|p| !p.hidden)
            .cloned()
            .collect(),
    };
    let fetch_token = token.as_ref().map(|t| t.as_str());
    let list: Vec<_> = providers
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.name,
                "notes": p.notes,
                "brand_image": p.brand_image.as_deref().filter(|u| u.starts_with("https://")),
                "login_href": page::login_href(&app, p, fetch_token),
            })
        })
        .collect();
    let page = page::render(
        &app,
        StatusCode::OK,
        "index.html",
        json!({
            "providers": list,
            "single": wanted.is_some(),
            "fetch_token": fetch_token,
        }),
    );
    // A page carrying a fetch token is specific to one login.
    if token.is_some() {
        page.no_store()
    } else {
        page
    }
}

/// `GET /cli-token?id=jottacloud`: the form for a personal login token.
pub async fn cli_token_form(State(app): State<AppState>, PageParams(params): PageParams) -> Page {
    let provider = match app.login().provider(params.get("id").unwrap_or("")) {
        Ok(p) => p.clone(),
        Err(e) => return page::error(&app, e),
    };
    if !provider.cli_token {
        return page::error(
            &app,
            LoginError::BadInput(format!(
                "{} does not log in with a token; use its login link",
                provider.name
            )),
        );
    }
    let token = match LoginService::fetch_token(params.get("token")) {
        Ok(t) => t,
        Err(e) => return page::error(&app, e),
    };
    page::render(
        &app,
        StatusCode::OK,
        "cli_token.html",
        json!({
            "provider": {
                "id": provider.id,
                "name": provider.name,
                "link": provider.deauth_link.as_deref().or(provider.service_link.as_deref()),
            },
            "fetch_token": token.as_ref().map(|t| t.as_str()),
        }),
    )
    .no_store()
}

pub async fn privacy(State(app): State<AppState>) -> Page {
    page::render(
        &app,
        StatusCode::OK,
        "privacy.html",
        json!({ "login_minutes": STATE_LIFETIME / 60 }),
    )
}

/// `GET /static/{name}`: the stylesheet and the page script.
pub async fn asset(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(asset) = app.templates.asset(&name) else {
        return ApiError::new(StatusCode::NOT_FOUND, "No such file").into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// `GET /favicon.ico`: browsers ask on every page; no icon, no error.
pub async fn favicon() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::CACHE_CONTROL, "public, max-age=86400")],
    )
        .into_response()
}
