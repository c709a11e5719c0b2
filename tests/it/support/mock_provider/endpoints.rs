//! The HTTP side of the mock: the routes, request parsing, client
//! authentication and the shape of OAuth answers (RFC 6749, RFC 7009).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::faults::{Fault, canned_response};
use super::grants::{code_grant, password_grant, refresh_grant};
use super::{Decision, Inner, PCLOUD_LOCATION_ID, Settings};

#[derive(Clone)]
struct AppState {
    inner: Arc<Mutex<Inner>>,
    base_url: Arc<str>,
}

impl AppState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The mock's routes over its shared state; `base_url` is where it listens.
pub(super) fn router(inner: Arc<Mutex<Inner>>, base_url: String) -> Router {
    let app_state = AppState {
        inner,
        base_url: base_url.into(),
    };
    Router::new()
        .route("/token", post(token_endpoint))
        .route("/authorize", get(authorize_endpoint))
        .route("/revoke", post(revoke_endpoint))
        .route("/userinfo", get(userinfo_endpoint))
        .route("/.well-known/openid-configuration", get(discovery_endpoint))
        .with_state(app_state)
}

pub(super) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// JSON answer with the headers RFC 6749 section 5.1 asks for.
pub(super) fn json_response(code: u16, body: &Value) -> Response {
    let mut resp = (status(code), body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

pub(super) fn oauth_error(code: u16, error: &str, description: &str) -> Response {
    json_response(
        code,
        &json!({ "error": error, "error_description": description }),
    )
}

pub(super) fn with_retry_after(mut resp: Response, retry_after: Option<&str>) -> Response {
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn parse_pairs(input: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(input).into_owned().collect()
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `(client_id, client_secret)` from HTTP Basic (RFC 6749 section 2.3.1:
/// both parts form-urlencoded), when the header is present.
fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = match STANDARD.decode(rest.trim()) {
        Ok(d) => d,
        Err(_) => return Some(Err(())),
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Some(Err(()));
    };
    let Some((id, secret)) = decoded.split_once(':') else {
        return Some(Err(()));
    };
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some(Ok((unescape(id), unescape(secret))))
}

/// Checks client authentication; on success returns the client id.
fn authenticate_client(
    s: &Settings,
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
) -> Result<String, Box<Response>> {
    let invalid = |basic: bool| -> Box<Response> {
        let mut resp = oauth_error(401, "invalid_client", "Client authentication failed.");
        if basic {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mock\""),
            );
        }
        Box::new(resp)
    };
    let (id, secret, basic) = match basic_credentials(headers) {
        Some(Ok((id, secret))) => {
            if form.get("client_id").is_some_and(|f| *f != id) {
                return Err(invalid(true));
            }
            (id, Some(secret), true)
        }
        Some(Err(())) => return Err(invalid(true)),
        None => match form.get("client_id") {
            Some(id) => (id.clone(), form.get("client_secret").cloned(), false),
            None => return Err(invalid(false)),
        },
    };
    let secret_ok = match secret {
        Some(given) => given == s.client_secret,
        None => s.client_secret.is_empty(),
    };
    if id == s.client_id && secret_ok {
        Ok(id)
    } else {
        Err(invalid(basic))
    }
}

// ---- /token ----------------------------------------------------------------

async fn token_endpoint(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = {
        let mut s = app.lock();
        s.calls.record_token_request(&headers, parse_pairs(&body));
        s.faults.next()
    };

    match fault {
        None => {}
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Hang) => {
            std::future::pending::<()>().await;
        }
        Some(other) => {
            if let Some(resp) = canned_response(other) {
                return resp;
            }
        }
    }

    let mut s = app.lock();
    process_token_request(&mut s, &headers, &body)
}

fn process_token_request(s: &mut Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    if !is_form(headers) {
        return oauth_error(
            400,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded.",
        );
    }
    let form = parse_pairs(body);
    let client_id = match authenticate_client(&s.settings, headers, &form) {
        Ok(id) => id,
        Err(resp) => return *resp,
    };
    match form.get("grant_type").map(String::as_str) {
        None => oauth_error(400, "invalid_request", "Missing grant_type."),
        Some("refresh_token") => refresh_grant(s, &client_id, &form),
        Some("authorization_code") => code_grant(s, &client_id, &form),
        Some("password") => password_grant(s, &client_id, &form),
        Some(_) => oauth_error(
            400,
            "unsupported_grant_type",
            "The grant type is not supported.",
        ),
    }
}

// ---- /authorize ------------------------------------------------------------

async fn authorize_endpoint(State(app): State<AppState>, uri: Uri) -> Response {
    let query = parse_pairs(uri.query().unwrap_or("").as_bytes());
    let mut s = app.lock();
    s.calls.authorize_calls += 1;
    s.calls.last_authorize_query = Some(query.clone());

    // Errors the user sees at the provider (no redirect, RFC 6749 4.1.2.1).
    if query.get("client_id") != Some(&s.settings.client_id) {
        return (StatusCode::BAD_REQUEST, "Unknown client_id.").into_response();
    }
    let Some(redirect_uri) = query.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "Missing redirect_uri.").into_response();
    };
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "Invalid redirect_uri.").into_response();
    };

    let challenge = query.get("code_challenge").cloned();
    let method = query
        .get("code_challenge_method")
        .cloned()
        .unwrap_or_else(|| "plain".to_owned());
    let error = if query.get("response_type").map(String::as_str) != Some("code") {
        Some("unsupported_response_type")
    } else if (s.settings.require_pkce && challenge.is_none())
        || (challenge.is_some() && method != "S256" && method != "plain")
    {
        Some("invalid_request")
    } else if s.settings.decision == Decision::Deny {
        Some("access_denied")
    } else {
        None
    };

    {
        let mut pairs = target.query_pairs_mut();
        match error {
            Some(e) => {
                pairs.append_pair("error", e);
            }
            None => {
                let client_id = s.settings.client_id.clone();
                let code = s.grants.issue_code(
                    client_id,
                    redirect_uri.clone(),
                    challenge.map(|c| (c, method)),
                    query.get("scope").cloned(),
                );
                pairs.append_pair("code", &code);
            }
        }
        if let Some(state) = query.get("state") {
            pairs.append_pair("state", state);
        }
        if error.is_none() && s.settings.access_token_only {
            let host = app
                .base_url
                .strip_prefix("http://")
                .unwrap_or(&app.base_url)
                .to_owned();
            pairs.append_pair("hostname", &host);
            pairs.append_pair("locationid", &PCLOUD_LOCATION_ID.to_string());
        }
    }
    let location =
        HeaderValue::from_str(target.as_str()).unwrap_or_else(|_| HeaderValue::from_static("/"));
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

// ---- /revoke ---------------------------------------------------------------

async fn revoke_endpoint(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = app.lock();
    s.calls.record_revoke_request(&headers, parse_pairs(&body));
    if !is_form(&headers) {
        return oauth_error(
            400,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded.",
        );
    }
    let form = parse_pairs(&body);
    if s.settings.revoke_requires_client_auth {
        if let Err(resp) = authenticate_client(&s.settings, &headers, &form) {
            return *resp;
        }
    }
    let Some(token) = form.get("token") else {
        return oauth_error(400, "invalid_request", "Missing token.");
    };
    s.calls.revoked.push(token.clone());
    // A refresh token takes its whole grant with it (RFC 7009 section 2.1);
    // an access token only itself. Unknown tokens are answered 200 as well.
    if let Some(family) = s.grants.refresh_tokens.get(token).map(|i| i.family) {
        s.grants.revoke_family(family);
    } else if let Some(at) = s.grants.access_tokens.get_mut(token) {
        at.revoked = true;
    }
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

// ---- /userinfo, discovery ----------------------------------------------------

async fn userinfo_endpoint(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let family = token
        .as_deref()
        .and_then(|t| app.lock().grants.live_access_token(t));
    match family {
        Some(f) => json_response(200, &json!({ "sub": format!("user-{f}") })),
        None => {
            let mut resp = oauth_error(401, "invalid_token", "The access token is not valid.");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            resp
        }
    }
}

async fn discovery_endpoint(State(app): State<AppState>) -> Response {
    app.lock().calls.discovery_calls += 1;
    let base = &app.base_url;
    json_response(
        200,
        &json!({
            "issuer": base.as_ref(),
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "revocation_endpoint": format!("{base}/revoke"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", "password"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        }),
    )
}
