//! A local OAuth 2.0 provider for integration tests.
//!
//! It plays the token endpoint (RFC 6749), authorization endpoint, token
//! revocation (RFC 7009), an OpenID discovery document and a userinfo
//! endpoint, with the quirks of the real providers the broker talks to:
//!
//! * Google: refresh tokens are not rotated and answers carry no
//!   `refresh_token` ([`Rotation::None`]).
//! * Microsoft: every refresh answer carries a new refresh token, the old one
//!   keeps working ([`Rotation::Rotating`]).
//! * Box: refresh tokens are single use ([`Rotation::SingleUse`]).
//! * Jottacloud: single use, and presenting a spent token revokes the whole
//!   grant ([`Rotation::SingleUseReuseDetection`]); login with a personal
//!   login token through the `password` grant; discovery document.
//! * Dropbox: `redirect_uri` on a refresh request is rejected
//!   ([`RedirectRule::Forbidden`]).
//! * pCloud: access token only, regional API host in the callback
//!   ([`MockProvider::set_access_token_only`]), errors as `200` with a
//!   `result` code ([`Fault::PcloudError`]).
//!
//! The server listens on `127.0.0.1` with a port picked by the system and
//! runs on the tokio runtime that called [`MockProvider::start`]. Every
//! token it hands out is random and carries a prefix (`at-`, `rt-`, `code-`)
//! so tests can search logs and responses for leaks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng as _;
use rand::distributions::Alphanumeric;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Default client credentials the mock expects.
pub const DEFAULT_CLIENT_ID: &str = "test-client";
pub const DEFAULT_CLIENT_SECRET: &str = "test-secret";
/// Default access token lifetime in seconds (`expires_in`).
pub const DEFAULT_ACCESS_TOKEN_LIFETIME: u64 = 3600;
/// `locationid` and `uid` the mock reports in pCloud mode.
pub const PCLOUD_LOCATION_ID: u32 = 2;
pub const PCLOUD_UID: u64 = 4_242_424;

/// How the provider treats refresh tokens on a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The refresh token never changes; answers carry no `refresh_token`
    /// (Google).
    None,
    /// Every answer carries a new refresh token; older ones of the same grant
    /// keep working (Microsoft).
    Rotating,
    /// Every answer carries a new refresh token; the presented one is spent
    /// and is refused from then on (Box).
    SingleUse,
    /// Like [`Rotation::SingleUse`], and presenting a spent token revokes the
    /// whole grant, newest token included (Jottacloud).
    SingleUseReuseDetection,
}

/// What the provider does with `redirect_uri` on a `refresh_token` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectRule {
    /// Accepted and ignored.
    Allowed,
    /// `400 invalid_request` when present (Dropbox).
    Forbidden,
    /// `400 invalid_request` when absent.
    Required,
}

/// Outcome of the consent screen at `/authorize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The user consents: redirect with `code`.
    Approve,
    /// The user declines: redirect with `error=access_denied`.
    Deny,
}

/// A canned answer of the token endpoint, used instead of normal processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Exactly this status and body (`Content-Type: application/json` when
    /// the body starts with `{`, else `text/plain`), with `Retry-After` when
    /// given.
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// Throttling (`429` or `503`): `{"error":"temporarily_unavailable"}`
    /// plus `Retry-After` when given.
    Throttle {
        status: u16,
        retry_after: Option<String>,
    },
    /// An OAuth error answer: `{"error": .., "error_description": ..}`.
    OAuthError {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// Never answers; the request stays open until the client gives up.
    Hang,
    /// Waits, then processes the request normally.
    Delay(Duration),
    /// `200` with a truncated JSON body.
    BrokenJson,
    /// An HTML error page with this status.
    Html(u16),
    /// `200` with a JSON body of exactly this many bytes (or filler bytes
    /// when too small for JSON).
    HugeBody(usize),
    /// pCloud style error: `200 {"result": .., "error": ..}`.
    PcloudError { result: u32, error: String },
}

#[derive(Debug, Clone)]
struct RefreshTokenInfo {
    family: u64,
    client_id: String,
    /// Refused from now on (single-use rotation).
    spent: bool,
    /// A newer refresh token of the same grant exists.
    superseded: bool,
}

#[derive(Debug, Clone)]
struct AccessTokenInfo {
    family: u64,
    expires_at: Instant,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct Family {
    scope: Option<String>,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct CodeInfo {
    client_id: String,
    redirect_uri: Option<String>,
    challenge: Option<(String, String)>,
    scope: Option<String>,
    used: bool,
    /// Grant created when the code was exchanged; revoked if the code is
    /// replayed (RFC 6749 section 4.1.2).
    family: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    client_id: String,
    client_secret: String,
    rotation: Rotation,
    access_token_lifetime: u64,
    redirect_rule: RedirectRule,
    require_pkce: bool,
    access_token_only: bool,
    decision: Decision,
    default_scope: Option<String>,
    password_logins: HashMap<String, String>,

    next_family: u64,
    families: HashMap<u64, Family>,
    refresh_tokens: HashMap<String, RefreshTokenInfo>,
    access_tokens: HashMap<String, AccessTokenInfo>,
    codes: HashMap<String, CodeInfo>,

    faults: VecDeque<Fault>,
    sticky_fault: Option<Fault>,

    token_calls: usize,
    refresh_tokens_received: Vec<String>,
    spent_token_presentations: usize,
    last_token_request: Option<BTreeMap<String, String>>,
    last_authorize_query: Option<BTreeMap<String, String>>,
    authorize_calls: usize,
    revoked: Vec<String>,
    revoke_requires_client_auth: bool,
    last_revoke_request: Option<BTreeMap<String, String>>,
    revoke_calls: usize,
    discovery_calls: usize,
}

impl Inner {
    fn new() -> Self {
        Inner {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            rotation: Rotation::None,
            access_token_lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
            redirect_rule: RedirectRule::Allowed,
            require_pkce: false,
            access_token_only: false,
            decision: Decision::Approve,
            default_scope: None,
            password_logins: HashMap::new(),
            next_family: 1,
            families: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            codes: HashMap::new(),
            faults: VecDeque::new(),
            sticky_fault: None,
            token_calls: 0,
            refresh_tokens_received: Vec::new(),
            spent_token_presentations: 0,
            last_token_request: None,
            last_authorize_query: None,
            authorize_calls: 0,
            revoked: Vec::new(),
            revoke_requires_client_auth: true,
            last_revoke_request: None,
            revoke_calls: 0,
            discovery_calls: 0,
        }
    }

    fn new_family(&mut self, scope: Option<String>) -> u64 {
        let id = self.next_family;
        self.next_family += 1;
        self.families.insert(
            id,
            Family {
                scope,
                revoked: false,
            },
        );
        id
    }

    fn mint_refresh_token(&mut self, family: u64, client_id: &str) -> String {
        let token = random_token("rt-");
        self.refresh_tokens.insert(
            token.clone(),
            RefreshTokenInfo {
                family,
                client_id: client_id.to_owned(),
                spent: false,
                superseded: false,
            },
        );
        token
    }

    fn mint_access_token(&mut self, family: u64) -> String {
        let token = random_token("at-");
        self.access_tokens.insert(
            token.clone(),
            AccessTokenInfo {
                family,
                expires_at: Instant::now() + Duration::from_secs(self.access_token_lifetime),
                revoked: false,
            },
        );
        token
    }

    fn revoke_family(&mut self, family: u64) {
        if let Some(f) = self.families.get_mut(&family) {
            f.revoked = true;
        }
    }

    fn family_alive(&self, family: u64) -> bool {
        self.families.get(&family).is_some_and(|f| !f.revoked)
    }

    /// The standard successful token answer for a grant.
    fn token_answer(&mut self, family: u64, refresh_token: Option<String>) -> Value {
        let access_token = self.mint_access_token(family);
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.access_token_lifetime,
        });
        if let Some(scope) = self.families.get(&family).and_then(|f| f.scope.clone()) {
            body["scope"] = Value::String(scope);
        }
        if let Some(rt) = refresh_token {
            body["refresh_token"] = Value::String(rt);
        }
        body
    }
}

/// Handle to a running mock provider. Dropping it stops accepting new
/// connections.
#[derive(Debug)]
pub struct MockProvider {
    addr: SocketAddr,
    state: Arc<Mutex<Inner>>,
    server: JoinHandle<()>,
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

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

impl MockProvider {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start() -> MockProvider {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("mock provider cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("mock provider has no local address: {e}"));
        let state = Arc::new(Mutex::new(Inner::new()));
        let app_state = AppState {
            inner: Arc::clone(&state),
            base_url: format!("http://{addr}").into(),
        };
        let app = Router::new()
            .route("/token", post(token_endpoint))
            .route("/authorize", get(authorize_endpoint))
            .route("/revoke", post(revoke_endpoint))
            .route("/userinfo", get(userinfo_endpoint))
            .route("/.well-known/openid-configuration", get(discovery_endpoint))
            .with_state(app_state);
        let server = tokio::spawn(async move {
            // Ends only when the task is aborted or the runtime shuts down.
            let _ = axum::serve(listener, app).await;
        });
        MockProvider {
            addr,
            state,
            server,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // ---- addresses -------------------------------------------------------

    /// The socket the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` of the mock, as pCloud reports its regional API host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `{base}/token`
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// `{base}/authorize`
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.base_url())
    }

    /// `{base}/revoke`
    pub fn revoke_url(&self) -> String {
        format!("{}/revoke", self.base_url())
    }

    /// `{base}/userinfo` (GET with `Authorization: Bearer <access token>`).
    pub fn userinfo_url(&self) -> String {
        format!("{}/userinfo", self.base_url())
    }

    /// `{base}/.well-known/openid-configuration`
    pub fn well_known_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.base_url())
    }

    // ---- configuration ---------------------------------------------------

    /// Credentials the mock expects. An empty secret makes a public client
    /// (no secret required, as Jottacloud's `jottacli`).
    pub fn set_client(&self, client_id: &str, client_secret: &str) {
        let mut s = self.lock();
        s.client_id = client_id.to_owned();
        s.client_secret = client_secret.to_owned();
    }

    pub fn set_rotation(&self, r: Rotation) {
        self.lock().rotation = r;
    }

    /// `expires_in` of new access tokens, and how long they stay valid.
    pub fn set_access_token_lifetime(&self, secs: u64) {
        self.lock().access_token_lifetime = secs;
    }

    pub fn set_redirect_uri_on_refresh(&self, rule: RedirectRule) {
        self.lock().redirect_rule = rule;
    }

    /// When on, `/authorize` demands a `code_challenge` and the code exchange
    /// a matching `code_verifier`.
    pub fn set_require_pkce(&self, on: bool) {
        self.lock().require_pkce = on;
    }

    /// pCloud mode: the code exchange answers
    /// `{"access_token", "token_type":"bearer", "uid", "locationid"}` with no
    /// refresh token and no `expires_in`, and the `/authorize` redirect
    /// carries `hostname` (this mock's `host:port`) and `locationid`.
    pub fn set_access_token_only(&self, on: bool) {
        self.lock().access_token_only = on;
    }

    pub fn set_authorize_decision(&self, d: Decision) {
        self.lock().decision = d;
    }

    /// Scope reported for grants whose request named none (default: none).
    pub fn set_default_scope(&self, scope: Option<&str>) {
        self.lock().default_scope = scope.map(str::to_owned);
    }

    /// Accepts `grant_type=password` with this username and password
    /// (Jottacloud personal login token: the password is its `auth_token`).
    pub fn set_password_login(&self, username: &str, password: &str) {
        self.lock()
            .password_logins
            .insert(username.to_owned(), password.to_owned());
    }

    /// Whether `/revoke` demands client authentication (RFC 7009, Box) or
    /// takes a bare `token` (Google). Default: demanded.
    pub fn set_revoke_requires_client_auth(&self, on: bool) {
        self.lock().revoke_requires_client_auth = on;
    }

    // ---- grants ----------------------------------------------------------

    /// Creates a new grant for the current client and returns its refresh
    /// token.
    pub fn issue_refresh_token(&self) -> String {
        let mut s = self.lock();
        let scope = s.default_scope.clone();
        let family = s.new_family(scope);
        let client_id = s.client_id.clone();
        s.mint_refresh_token(family, &client_id)
    }

    /// Revokes the grant a refresh or access token belongs to, as a user
    /// de-authorizing the application at the provider would.
    pub fn revoke_grant_of(&self, token: &str) {
        let mut s = self.lock();
        let family = s
            .refresh_tokens
            .get(token)
            .map(|i| i.family)
            .or_else(|| s.access_tokens.get(token).map(|i| i.family));
        if let Some(f) = family {
            s.revoke_family(f);
        }
    }

    /// True when the refresh token would be accepted now.
    pub fn is_valid_refresh_token(&self, rt: &str) -> bool {
        let s = self.lock();
        s.refresh_tokens
            .get(rt)
            .is_some_and(|i| !i.spent && s.family_alive(i.family))
    }

    /// True when the access token exists, is not expired and not revoked.
    pub fn is_valid_access_token(&self, at: &str) -> bool {
        let s = self.lock();
        s.access_tokens.get(at).is_some_and(|i| {
            !i.revoked && Instant::now() < i.expires_at && s.family_alive(i.family)
        })
    }

    // ---- faults ----------------------------------------------------------

    /// The next token endpoint request answers with this fault (FIFO, each
    /// used once). Queued faults win over the sticky one.
    pub fn push_fault(&self, f: Fault) {
        self.lock().faults.push_back(f);
    }

    /// Every token endpoint request answers with this fault until cleared.
    pub fn set_sticky_fault(&self, f: Option<Fault>) {
        self.lock().sticky_fault = f;
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    // ---- observations ----------------------------------------------------

    /// Requests received at `/token`, all grants, faults and failures
    /// included.
    pub fn token_calls(&self) -> usize {
        self.lock().token_calls
    }

    /// Every `refresh_token` presented at `/token` in order, including
    /// requests answered with a fault.
    pub fn refresh_tokens_received(&self) -> Vec<String> {
        self.lock().refresh_tokens_received.clone()
    }

    /// Times a refresh token that had already been replaced by a newer one
    /// was presented: spent tokens under single-use rotation (refused), and
    /// superseded tokens under [`Rotation::Rotating`] (still accepted).
    pub fn spent_token_presentations(&self) -> usize {
        self.lock().spent_token_presentations
    }

    /// Form fields of the last `/token` request, plus key `authorization`
    /// (the raw header value) when HTTP Basic was used.
    pub fn last_token_request(&self) -> Option<BTreeMap<String, String>> {
        self.lock().last_token_request.clone()
    }

    /// Query parameters of the last `/authorize` request.
    pub fn last_authorize_query(&self) -> Option<BTreeMap<String, String>> {
        self.lock().last_authorize_query.clone()
    }

    /// Requests received at `/authorize`.
    pub fn authorize_calls(&self) -> usize {
        self.lock().authorize_calls
    }

    /// Tokens presented at `/revoke` with valid client authentication, in
    /// order.
    pub fn revoked(&self) -> Vec<String> {
        self.lock().revoked.clone()
    }

    /// Form fields of the last `/revoke` request, plus key `authorization`
    /// when an Authorization header was sent.
    pub fn last_revoke_request(&self) -> Option<BTreeMap<String, String>> {
        self.lock().last_revoke_request.clone()
    }

    /// Requests received at `/revoke`.
    pub fn revoke_calls(&self) -> usize {
        self.lock().revoke_calls
    }

    /// Requests received at `/.well-known/openid-configuration`.
    pub fn discovery_calls(&self) -> usize {
        self.lock().discovery_calls
    }
}

// ---- helpers ---------------------------------------------------------------

fn random_token(prefix: &str) -> String {
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{prefix}{body}")
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// JSON answer with the headers RFC 6749 section 5.1 asks for.
fn json_response(code: u16, body: &Value) -> Response {
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

fn oauth_error(code: u16, error: &str, description: &str) -> Response {
    json_response(
        code,
        &json!({ "error": error, "error_description": description }),
    )
}

fn with_retry_after(mut resp: Response, retry_after: Option<&str>) -> Response {
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
    s: &Inner,
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

fn pkce_matches(method: &str, challenge: &str, verifier: &str) -> bool {
    match method {
        "S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge,
        "plain" => verifier == challenge,
        _ => false,
    }
}

fn scope_subset(requested: &str, granted: Option<&str>) -> bool {
    let granted: Vec<&str> = granted.unwrap_or("").split_whitespace().collect();
    requested.split_whitespace().all(|s| granted.contains(&s))
}

// ---- /token ----------------------------------------------------------------

async fn token_endpoint(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = {
        let mut s = app.lock();
        s.token_calls += 1;
        let form = parse_pairs(&body);
        if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
            if let Some(rt) = form.get("refresh_token") {
                s.refresh_tokens_received.push(rt.clone());
            }
        }
        let mut recorded = form;
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            if let Ok(v) = auth.to_str() {
                if v.len() > 6 && v[..6].eq_ignore_ascii_case("basic ") {
                    recorded.insert("authorization".to_owned(), v.to_owned());
                }
            }
        }
        s.last_token_request = Some(recorded);
        match s.faults.pop_front() {
            Some(f) => Some(f),
            None => s.sticky_fault.clone(),
        }
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

/// The answer of a fault that replaces normal processing; `None` for the
/// faults that only change timing.
fn canned_response(fault: Fault) -> Option<Response> {
    let resp = match fault {
        Fault::Status {
            status: code,
            body,
            retry_after,
        } => {
            let ct = if body.trim_start().starts_with('{') {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            let resp = (
                status(code),
                [(header::CONTENT_TYPE, HeaderValue::from_static(ct))],
                body,
            )
                .into_response();
            with_retry_after(resp, retry_after.as_deref())
        }
        Fault::Throttle {
            status: code,
            retry_after,
        } => with_retry_after(
            oauth_error(
                code,
                "temporarily_unavailable",
                "Too many requests, try again later.",
            ),
            retry_after.as_deref(),
        ),
        Fault::OAuthError {
            status: code,
            error,
            description,
        } => {
            let mut body = json!({ "error": error });
            if let Some(d) = description {
                body["error_description"] = Value::String(d);
            }
            json_response(code, &body)
        }
        Fault::BrokenJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"access_token\":\"at-trunc",
        )
            .into_response(),
        Fault::Html(code) => (
            status(code),
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!DOCTYPE html>\n<html><head><title>Error {code}</title></head>\
                 <body><h1>Error {code}</h1><p>The server encountered a problem.</p></body></html>\n"
            ),
        )
            .into_response(),
        Fault::HugeBody(n) => {
            let prefix = "{\"padding\":\"";
            let suffix = "\"}";
            let body = if n >= prefix.len() + suffix.len() {
                let mut b = String::with_capacity(n);
                b.push_str(prefix);
                b.extend(std::iter::repeat_n('x', n - prefix.len() - suffix.len()));
                b.push_str(suffix);
                b
            } else {
                "x".repeat(n)
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from(body),
            )
                .into_response()
        }
        Fault::PcloudError { result, error } => {
            json_response(200, &json!({ "result": result, "error": error }))
        }
        Fault::Hang | Fault::Delay(_) => return None,
    };
    Some(resp)
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
    let client_id = match authenticate_client(s, headers, &form) {
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

fn refresh_grant(s: &mut Inner, client_id: &str, form: &BTreeMap<String, String>) -> Response {
    match (s.redirect_rule, form.contains_key("redirect_uri")) {
        (RedirectRule::Forbidden, true) => {
            return oauth_error(
                400,
                "invalid_request",
                "redirect_uri is not allowed on a refresh request.",
            );
        }
        (RedirectRule::Required, false) => {
            return oauth_error(400, "invalid_request", "Missing redirect_uri.");
        }
        _ => {}
    }
    let Some(rt) = form.get("refresh_token") else {
        return oauth_error(400, "invalid_request", "Missing refresh_token.");
    };
    let Some(info) = s.refresh_tokens.get(rt).cloned() else {
        return oauth_error(400, "invalid_grant", "Invalid refresh token.");
    };
    if info.client_id != client_id {
        return oauth_error(
            400,
            "invalid_grant",
            "Refresh token was issued to another client.",
        );
    }
    if !s.family_alive(info.family) {
        return oauth_error(400, "invalid_grant", "Refresh token has been revoked.");
    }
    if info.spent {
        s.spent_token_presentations += 1;
        if s.rotation == Rotation::SingleUseReuseDetection {
            s.revoke_family(info.family);
        }
        return oauth_error(400, "invalid_grant", "Refresh token has already been used.");
    }
    if info.superseded {
        s.spent_token_presentations += 1;
    }
    if let Some(requested) = form.get("scope") {
        let granted = s.families.get(&info.family).and_then(|f| f.scope.clone());
        if !scope_subset(requested, granted.as_deref()) {
            return oauth_error(
                400,
                "invalid_scope",
                "Requested scope exceeds the granted scope.",
            );
        }
    }
    let new_rt = match s.rotation {
        Rotation::None => None,
        Rotation::Rotating | Rotation::SingleUse | Rotation::SingleUseReuseDetection => {
            let single_use = s.rotation != Rotation::Rotating;
            if let Some(old) = s.refresh_tokens.get_mut(rt) {
                old.superseded = true;
                old.spent = single_use;
            }
            Some(s.mint_refresh_token(info.family, client_id))
        }
    };
    json_response(200, &s.token_answer(info.family, new_rt))
}

fn code_grant(s: &mut Inner, client_id: &str, form: &BTreeMap<String, String>) -> Response {
    let Some(code) = form.get("code") else {
        return oauth_error(400, "invalid_request", "Missing code.");
    };
    let Some(info) = s.codes.get(code).cloned() else {
        return oauth_error(400, "invalid_grant", "Invalid authorization code.");
    };
    if info.used {
        if let Some(f) = info.family {
            s.revoke_family(f);
        }
        return oauth_error(
            400,
            "invalid_grant",
            "Authorization code has already been used.",
        );
    }
    if info.client_id != client_id {
        return oauth_error(
            400,
            "invalid_grant",
            "Authorization code was issued to another client.",
        );
    }
    if info.redirect_uri.is_some() && form.get("redirect_uri") != info.redirect_uri.as_ref() {
        return oauth_error(400, "invalid_grant", "redirect_uri mismatch.");
    }
    match (&info.challenge, form.get("code_verifier")) {
        (Some((challenge, method)), Some(verifier)) => {
            if !pkce_matches(method, challenge, verifier) {
                return oauth_error(400, "invalid_grant", "PKCE verification failed.");
            }
        }
        (Some(_), None) => {
            return oauth_error(400, "invalid_grant", "Missing code_verifier.");
        }
        (None, Some(_)) => {
            return oauth_error(
                400,
                "invalid_grant",
                "code_verifier given but the authorization request had no code_challenge.",
            );
        }
        (None, None) => {
            if s.require_pkce {
                return oauth_error(400, "invalid_grant", "Missing code_verifier.");
            }
        }
    }

    let scope = info.scope.clone().or_else(|| s.default_scope.clone());
    let family = s.new_family(scope);
    if let Some(c) = s.codes.get_mut(code) {
        c.used = true;
        c.family = Some(family);
    }
    if s.access_token_only {
        let access_token = s.mint_access_token(family);
        return json_response(
            200,
            &json!({
                "result": 0,
                "access_token": access_token,
                "token_type": "bearer",
                "uid": PCLOUD_UID,
                "locationid": PCLOUD_LOCATION_ID,
            }),
        );
    }
    let rt = s.mint_refresh_token(family, client_id);
    json_response(200, &s.token_answer(family, Some(rt)))
}

fn password_grant(s: &mut Inner, client_id: &str, form: &BTreeMap<String, String>) -> Response {
    let (Some(user), Some(pass)) = (form.get("username"), form.get("password")) else {
        return oauth_error(400, "invalid_request", "Missing username or password.");
    };
    if s.password_logins.get(user) != Some(pass) {
        return oauth_error(400, "invalid_grant", "Invalid user credentials.");
    }
    let scope = form
        .get("scope")
        .cloned()
        .or_else(|| s.default_scope.clone());
    let offline = scope
        .as_deref()
        .is_some_and(|sc| sc.split_whitespace().any(|x| x == "offline_access"));
    let family = s.new_family(scope);
    let rt = offline.then(|| s.mint_refresh_token(family, client_id));
    json_response(200, &s.token_answer(family, rt))
}

// ---- /authorize ------------------------------------------------------------

async fn authorize_endpoint(State(app): State<AppState>, uri: Uri) -> Response {
    let query = parse_pairs(uri.query().unwrap_or("").as_bytes());
    let mut s = app.lock();
    s.authorize_calls += 1;
    s.last_authorize_query = Some(query.clone());

    // Errors the user sees at the provider (no redirect, RFC 6749 4.1.2.1).
    if query.get("client_id") != Some(&s.client_id) {
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
    } else if (s.require_pkce && challenge.is_none())
        || (challenge.is_some() && method != "S256" && method != "plain")
    {
        Some("invalid_request")
    } else if s.decision == Decision::Deny {
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
                let code = random_token("code-");
                let client_id = s.client_id.clone();
                s.codes.insert(
                    code.clone(),
                    CodeInfo {
                        client_id,
                        redirect_uri: Some(redirect_uri.clone()),
                        challenge: challenge.map(|c| (c, method)),
                        scope: query.get("scope").cloned(),
                        used: false,
                        family: None,
                    },
                );
                pairs.append_pair("code", &code);
            }
        }
        if let Some(state) = query.get("state") {
            pairs.append_pair("state", state);
        }
        if error.is_none() && s.access_token_only {
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
    s.revoke_calls += 1;
    let mut recorded = parse_pairs(&body);
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        recorded.insert("authorization".to_owned(), v.to_owned());
    }
    s.last_revoke_request = Some(recorded);
    if !is_form(&headers) {
        return oauth_error(
            400,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded.",
        );
    }
    let form = parse_pairs(&body);
    if s.revoke_requires_client_auth {
        if let Err(resp) = authenticate_client(&s, &headers, &form) {
            return *resp;
        }
    }
    let Some(token) = form.get("token") else {
        return oauth_error(400, "invalid_request", "Missing token.");
    };
    s.revoked.push(token.clone());
    // A refresh token takes its whole grant with it (RFC 7009 section 2.1);
    // an access token only itself. Unknown tokens are answered 200 as well.
    if let Some(family) = s.refresh_tokens.get(token).map(|i| i.family) {
        s.revoke_family(family);
    } else if let Some(at) = s.access_tokens.get_mut(token) {
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
    let s = app.lock();
    let family = token.as_deref().and_then(|t| {
        s.access_tokens
            .get(t)
            .filter(|i| !i.revoked && Instant::now() < i.expires_at && s.family_alive(i.family))
            .map(|i| i.family)
    });
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
    app.lock().discovery_calls += 1;
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
