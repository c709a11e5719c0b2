//! HTTP face of the built-in demo provider (`oauth-broker demo` only): a
//! consent page, a token endpoint, a revocation endpoint and a tiny API
//! that checks access tokens.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::ApiError;
use super::input::Params;
use super::state::AppState;
use super::templates::escape_html;
use crate::demo::DemoProvider;

pub fn routes(app: AppState) -> Router {
    Router::new()
        .route("/demo/authorize", get(consent).post(decide))
        .route("/demo/token", post(token))
        .route("/demo/revoke", post(revoke))
        .route("/demo/api/me", get(me))
        .with_state(app)
}

fn demo(app: &AppState) -> Result<&Arc<DemoProvider>, ApiError> {
    app.demo()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "No such page"))
}

async fn consent(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let demo = demo(&app)?;
    let field = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    demo.check_authorize(
        field("client_id"),
        field("redirect_uri"),
        field("response_type"),
    )
    .map_err(ApiError::bad_request)?;
    let hidden: String = [
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
    ]
    .iter()
    .map(|k| {
        format!(
            r#"<input type="hidden" name="{k}" value="{}">"#,
            escape_html(field(k))
        )
    })
    .collect();
    let page = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo provider: allow access?</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}button{{font-size:1rem;padding:.6rem 1.2rem;margin-right:.5rem}}</style>
</head><body>
<h1>Demo provider</h1>
<p>The application <strong>{client}</strong> asks for access to your demo files (scope <code>{scope}</code>).</p>
<p>This provider lives inside the broker; nothing leaves this machine.</p>
<form method="post" action="{base}/demo/authorize">{hidden}
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form></body></html>"#,
        base = escape_html(&super::page::base_path(&app)),
        client = escape_html(field("client_id")),
        scope = escape_html(field("scope")),
    );
    let mut response = Html(page).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        "no-store"
            .parse()
            .map_err(|_| ApiError::bad_request("header"))?,
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            .parse()
            .map_err(|_| ApiError::bad_request("header"))?,
    );
    Ok(response)
}

async fn decide(State(app): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let demo = demo(&app)?;
    let field = |k: &str| params.get(k).unwrap_or("");
    // Only the registered redirect URI: the consent form is no open redirect.
    let redirect_uri = field("redirect_uri");
    demo.check_authorize(crate::demo::CLIENT_ID, redirect_uri, "code")
        .map_err(ApiError::bad_request)?;
    let mut target =
        url::Url::parse(redirect_uri).map_err(|_| ApiError::bad_request("invalid redirect_uri"))?;
    {
        let mut pairs = target.query_pairs_mut();
        if field("decision") == "approve" {
            let challenge = (field("code_challenge_method") == "S256"
                && !field("code_challenge").is_empty())
            .then(|| field("code_challenge").to_string());
            pairs.append_pair("code", &demo.approve(redirect_uri, challenge, app.now()));
        } else {
            pairs.append_pair("error", "access_denied");
        }
        if !field("state").is_empty() {
            pairs.append_pair("state", field("state"));
        }
    }
    Ok(Redirect::to(target.as_str()).into_response())
}

fn oauth_error((status, error): (u16, &'static str)) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({ "error": error }))).into_response()
}

async fn token(State(app): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let demo = demo(&app)?;
    let form = params.into_map();
    Ok(match demo.token(&form, app.now()) {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            super::headers::no_store(response.headers_mut());
            response
        }
        Err(e) => oauth_error(e),
    })
}

async fn revoke(State(app): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let demo = demo(&app)?;
    let form = params.into_map();
    Ok(match demo.revoke(&form) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(e),
    })
}

async fn me(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let demo = demo(&app)?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if demo.check_access_token(token, app.now()) {
        Ok(
            axum::Json(json!({ "user": "demo user", "files": ["backup-2026-11-01.zip"] }))
                .into_response(),
        )
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "The access token is not valid",
        ))
    }
}
