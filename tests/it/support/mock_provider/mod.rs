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
//!
//! The parts: `grants` (the provider's grants and the grant types that act
//! on them), `faults` (canned failures of the token endpoint), `recorder`
//! (what the mock saw, for assertions) and `endpoints` (the HTTP side).

mod endpoints;
mod faults;
mod grants;
mod recorder;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use faults::Fault;

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

/// How the mock behaves, as set through the `set_*` methods.
#[derive(Debug)]
struct Settings {
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
    revoke_requires_client_auth: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
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
            revoke_requires_client_auth: true,
        }
    }
}

/// Everything the mock holds, behind one lock.
#[derive(Debug, Default)]
struct Inner {
    settings: Settings,
    grants: grants::Grants,
    faults: faults::Faults,
    calls: recorder::Calls,
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

impl MockProvider {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start() -> MockProvider {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("mock provider cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("mock provider has no local address: {e}"));
        let state = Arc::new(Mutex::new(Inner::default()));
        let app = endpoints::router(Arc::clone(&state), format!("http://{addr}"));
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
        s.settings.client_id = client_id.to_owned();
        s.settings.client_secret = client_secret.to_owned();
    }

    pub fn set_rotation(&self, r: Rotation) {
        self.lock().settings.rotation = r;
    }

    /// `expires_in` of new access tokens, and how long they stay valid.
    pub fn set_access_token_lifetime(&self, secs: u64) {
        self.lock().settings.access_token_lifetime = secs;
    }

    pub fn set_redirect_uri_on_refresh(&self, rule: RedirectRule) {
        self.lock().settings.redirect_rule = rule;
    }

    /// When on, `/authorize` demands a `code_challenge` and the code exchange
    /// a matching `code_verifier`.
    pub fn set_require_pkce(&self, on: bool) {
        self.lock().settings.require_pkce = on;
    }

    /// pCloud mode: the code exchange answers
    /// `{"access_token", "token_type":"bearer", "uid", "locationid"}` with no
    /// refresh token and no `expires_in`, and the `/authorize` redirect
    /// carries `hostname` (this mock's `host:port`) and `locationid`.
    pub fn set_access_token_only(&self, on: bool) {
        self.lock().settings.access_token_only = on;
    }

    pub fn set_authorize_decision(&self, d: Decision) {
        self.lock().settings.decision = d;
    }

    /// Scope reported for grants whose request named none (default: none).
    pub fn set_default_scope(&self, scope: Option<&str>) {
        self.lock().settings.default_scope = scope.map(str::to_owned);
    }

    /// Accepts `grant_type=password` with this username and password
    /// (Jottacloud personal login token: the password is its `auth_token`).
    pub fn set_password_login(&self, username: &str, password: &str) {
        self.lock()
            .settings
            .password_logins
            .insert(username.to_owned(), password.to_owned());
    }

    /// Whether `/revoke` demands client authentication (RFC 7009, Box) or
    /// takes a bare `token` (Google). Default: demanded.
    pub fn set_revoke_requires_client_auth(&self, on: bool) {
        self.lock().settings.revoke_requires_client_auth = on;
    }
}
