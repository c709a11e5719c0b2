//! The login routes: `/login` starts, `/logged-in` finishes, and the
//! Jottacloud token form posts to `/cli-token-login`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::client_ip::ClientIp;
use super::input::{OwnForm, PageParams};
use super::page::{self, LOGIN_COOKIE, Page};
use super::state::{AppState, HttpState};
use crate::login::state::STATE_LIFETIME;
use crate::login::{Callback, Finished, LoginError, LoginService, Start};
use crate::metrics::Metrics;

/// `GET /login?id=ID[&token=T]`: to the provider's consent screen, with
/// the login bound to this browser by a cookie.
pub async fn login(State(app): State<AppState>, PageParams(params): PageParams) -> Response {
    let from_elsewhere = sent_from_another_site(params.headers());
    let id = params.get("id").unwrap_or("");
    // A login whose AuthID goes to the program that opened the window
    // starts on this site's page, which says so before the user consents;
    // another site may not send the browser straight to the provider.
    if from_elsewhere {
        if let (Ok(Some(token)), Ok(provider)) = (
            LoginService::fetch_token(params.get("token")),
            app.login().provider(id),
        ) {
            return redirect(&page::index_href(&app, provider, &token), None);
        }
    }
    let started = LoginService::fetch_token(params.get("token"))
        .and_then(|token| app.login().start(id, token));
    if started.is_ok() {
        if let Some(p) = app.catalogue().get(id) {
            app.metrics()
                .logins_started
                .get_or_create(&Metrics::provider(&p.id))
                .inc();
        }
    }
    match started {
        Ok(Start::Authorize { url, nonce }) => {
            let cookie = page::login_cookie(&app, nonce.expose(), STATE_LIFETIME);
            redirect(url.as_str(), Some(cookie))
        }
        Ok(Start::CliToken { provider }) => {
            let provider = app.catalogue().get(&provider).cloned();
            match provider {
                Some(p) => redirect(&page::login_href(&app, &p, params.get("token")), None),
                None => page::error(&app, LoginError::UnknownProvider).into_response(),
            }
        }
        Err(e) => page::error(&app, e).into_response(),
    }
}

/// The browser says the navigation came from another site's page
/// (`Sec-Fetch-Site`); browsers that do not send it are taken at their word.
fn sent_from_another_site(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

/// A 302 to a URL this server built (never one taken from a request).
fn redirect(location: &str, cookie: Option<String>) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            headers.insert(header::LOCATION, v);
        }
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, v);
    }
    response
}

/// `GET /logged-in`: the provider's redirect back.
pub async fn logged_in(
    State(app): State<AppState>,
    ClientIp(client): ClientIp,
    PageParams(params): PageParams,
) -> Page {
    let cookie = page::cookie(params.headers(), LOGIN_COOKIE);
    let callback = Callback {
        state: params.get("state"),
        code: params.get("code"),
        error: params.get("error"),
        hostname: params.get("hostname"),
    };
    let result = app.login().finish(callback, cookie, client).await;
    record_finish(&app, &result);
    // The cookie is spent once this browser's login was checked; a callback
    // from elsewhere must not disturb a login in progress here, and one
    // held back by the per-address limit may be reloaded later.
    let clear = match &result {
        Ok(_) => true,
        Err(e) => !matches!(
            e,
            LoginError::WrongBrowser | LoginError::State(_) | LoginError::TooMany { .. }
        ),
    };
    let page = match result {
        Ok(finished) => success_page(&app, &finished),
        Err(e) => page::error(&app, e),
    };
    if clear {
        page.with_cookie(page::login_cookie(&app, "", 0))
    } else {
        page
    }
}

/// `POST /cli-token-login` (form `id`, `token`, optional `fetchtoken`).
pub async fn cli_token_login(
    State(app): State<AppState>,
    ClientIp(client): ClientIp,
    OwnForm(params): OwnForm,
) -> Page {
    let fetch_token = match LoginService::fetch_token(params.get("fetchtoken")) {
        Ok(t) => t,
        Err(e) => return page::error(&app, e),
    };
    let result = app
        .login()
        .cli_token_login(
            params.get("id").unwrap_or(""),
            params.get("token").unwrap_or(""),
            fetch_token,
            client,
        )
        .await;
    record_finish(&app, &result);
    match result {
        Ok(finished) => success_page(&app, &finished),
        Err(e) => page::error(&app, e),
    }
}

fn record_finish(app: &HttpState, result: &Result<Finished, LoginError>) {
    let (provider, outcome) = match result {
        Ok(f) => (f.provider.id.as_str(), "ok"),
        Err(e) => ("-", e.label()),
    };
    app.metrics().logins_finished.inc(provider, outcome);
}

fn success_page(app: &HttpState, finished: &Finished) -> Page {
    let provider = &finished.provider;
    page::render(
        app,
        StatusCode::OK,
        "logged_in.html",
        json!({
            "authid": finished.authid.expose(),
            "provider_name": provider.name,
            "provider_id": provider.id,
            "access_token_only": provider.access_token_only,
            "deauth_link": provider.deauth_link,
            "fetch_token": finished.fetch_token.as_ref().map(|t| t.as_str()),
            "opener_origins": app.settings().opener_origins.join(" "),
        }),
    )
    .no_store()
}
