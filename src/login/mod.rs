//! Logging in: the authorization-code flow with sealed state and PKCE, the
//! Jottacloud login-token flow, the fetch rendezvous for polling clients,
//! and revocation. Free of HTTP types; the handlers in `http` call in here.
//!
//! Every call these flows make to a provider passes the same admission as
//! a refresh (backoff, quota, bulkhead), and the requests that can cause
//! one (callbacks, login-token logins, revocations) are counted per client
//! address: anyone can send them, made up, without an AuthID.

pub mod cli_token;
mod error;
pub mod fetch;
pub mod pkce;
mod revoke;
pub mod state;
pub mod templates;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::authid::{Claims, KeyringHandle};
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::outage::StoreOutage;
use crate::provider::client::FormField;
use crate::provider::hosts;
use crate::provider::outcome::is_oauth_error_code;
use crate::provider::{
    Catalogue, Protection, Provider, Refusal, TokenClient, TokenGrant, UpstreamError, classify,
};
use crate::refresh::Refresher;
use crate::refresh::limits::WindowLimiter;
use crate::secret::{Sensitive, fingerprint, random_id};
use crate::store::{Space, Store, StoreKey};

pub use error::LoginError;
pub use fetch::{FetchState, FetchStore, FetchToken};
pub use revoke::{RevokeError, RevokeOutcome};
use state::{LoginState, STATE_LIFETIME};
pub use templates::Templates;

/// Longest authorization code accepted from a callback.
const MAX_CODE_LEN: usize = 4096;
/// Scope of the Jottacloud password grant when the provider names none.
const CLI_TOKEN_SCOPE: &str = "openid offline_access";

/// Everything the login flows need from the application.
pub struct LoginDeps {
    pub keyring: Arc<KeyringHandle>,
    pub catalogue: Arc<Catalogue>,
    pub client: Arc<dyn TokenClient>,
    pub clock: SharedClock,
    /// For revocation: opening AuthIDs and forgetting their logins.
    pub refresher: Refresher,
    /// Backoff, quota and bulkhead: code exchanges, login-token logins and
    /// revocations pass them like refreshes.
    pub protection: Arc<Protection>,
    pub metrics: Arc<Metrics>,
    /// Callbacks, login-token logins and revocations per client address
    /// and minute.
    pub attempts_per_minute: u32,
    /// Client addresses counted at most.
    pub address_capacity: u64,
    /// The state instances share: the fetch rendezvous and used states.
    pub store: Arc<dyn Store>,
    pub outage: Arc<StoreOutage>,
    /// `PUBLIC_URL/logged-in`.
    pub redirect_uri: String,
}

pub struct LoginService {
    deps: LoginDeps,
    fetch_store: FetchStore,
    /// Nonces of states already used here. The store has them for every
    /// instance; this copy still refuses a replay here while the store is
    /// unreachable.
    used_nonces: moka::sync::Cache<String, ()>,
    /// Requests that may call a provider, per client address.
    attempts: WindowLimiter<IpAddr>,
}

/// How long a used state is remembered: longer than it is valid.
const USED_STATE_TTL: Duration = Duration::from_secs(STATE_LIFETIME as u64 + 60);

/// The store entry of a used state: an HMAC under the state's nonce, which
/// exists only inside the sealed state.
fn used_state_key(nonce: &str) -> StoreKey {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(nonce.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"oauth-broker used login state");
    StoreKey::new(Space::UsedState, mac.finalize().into_bytes().into())
}

/// Where `/login` sends the browser.
#[derive(Debug)]
pub enum Start {
    /// To the provider's authorize URL; the cookie must carry `nonce`.
    Authorize { url: Url, nonce: Sensitive },
    /// The provider logs in with a pasted token instead.
    CliToken { provider: String },
}

/// The query of a callback to `/logged-in`.
#[derive(Default)]
pub struct Callback<'a> {
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    /// pCloud's regional API host.
    pub hostname: Option<&'a str>,
}

/// The code buys tokens until it is used: `Debug` says only whether one came.
impl std::fmt::Debug for Callback<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("state", &self.state)
            .field("code", &self.code.map(|_| "[redacted]"))
            .field("error", &self.error)
            .field("hostname", &self.hostname)
            .finish()
    }
}

/// A finished login.
pub struct Finished {
    pub provider: Arc<Provider>,
    /// The AuthID to show (for access-token-only providers, the token).
    pub authid: Sensitive,
    pub fetch_token: Option<FetchToken>,
}

impl LoginService {
    pub fn new(deps: LoginDeps) -> Self {
        Self {
            fetch_store: FetchStore::new(Arc::clone(&deps.store)),
            attempts: WindowLimiter::new(deps.attempts_per_minute, 60, deps.address_capacity),
            deps,
            used_nonces: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(USED_STATE_TTL)
                .build(),
        }
    }

    /// Counts a request that may call a provider; `Err(seconds)` when the
    /// address has sent too many this minute. Requests without a known
    /// address (driven in-process) are not counted.
    fn count_attempt(&self, client: Option<IpAddr>) -> Result<(), u64> {
        match client {
            Some(ip) => self.attempts.hit(&ip, self.now()),
            None => Ok(()),
        }
    }

    /// Admits one call to the provider, as a refresh is admitted: not
    /// inside a backoff window (on any instance), within the quota, and a
    /// free slot. Hold the permit for the length of the call.
    async fn admit(
        &self,
        provider: &Provider,
        gate: &str,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Refusal> {
        let protection = &self.deps.protection;
        let now = self.now();
        let admitted = match protection.blocked_anywhere(gate, now).await {
            Some(left) => Err(Refusal::Blocked(left)),
            None => protection.admit(gate, now).await,
        };
        if let Err(refusal) = &admitted {
            self.deps.metrics.throttle(&provider.id, refusal.label());
        }
        admitted
    }

    /// [`LoginService::admit`] for the login flows.
    async fn admit_login(
        &self,
        provider: &Provider,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, LoginError> {
        self.admit(provider, &provider.id)
            .await
            .map_err(|refusal| LoginError::Held {
                provider: provider.id.clone(),
                refusal,
            })
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.deps.catalogue
    }

    pub fn now(&self) -> i64 {
        self.deps.clock.now()
    }

    /// A provider by id or alias.
    pub fn provider(&self, name: &str) -> Result<&Arc<Provider>, LoginError> {
        self.deps
            .catalogue
            .get(name.trim())
            .ok_or(LoginError::UnknownProvider)
    }

    /// Checks an optional fetch token from a request.
    pub fn fetch_token(text: Option<&str>) -> Result<Option<FetchToken>, LoginError> {
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => FetchToken::parse(t).map(Some).ok_or_else(|| {
                LoginError::BadInput(format!(
                    "The token parameter must be {} to {} letters, digits, '-' or '_'",
                    fetch::MIN_TOKEN_LEN,
                    fetch::MAX_TOKEN_LEN
                ))
            }),
        }
    }

    pub fn fetch_store(&self) -> &FetchStore {
        &self.fetch_store
    }

    /// Registers a polling client's token (the login page was opened with
    /// it). Without the store the page still works: the login completes
    /// the token later if the store is back by then.
    pub async fn register_fetch_token(&self, token: &FetchToken) {
        if let Err(e) = self.fetch_store.register(token, self.now()).await {
            self.deps.outage.failed("registering a fetch token", &e);
        }
    }

    /// Spends a login state: true the first time, on any instance.
    async fn spend_state(&self, nonce: &str) -> bool {
        let fresh_here = self
            .used_nonces
            .entry(nonce.to_string())
            .or_insert(())
            .is_fresh();
        if !fresh_here {
            return false;
        }
        match self
            .deps
            .store
            .put_new(&used_state_key(nonce), vec![1], USED_STATE_TTL)
            .await
        {
            Ok(fresh) => fresh,
            Err(e) => {
                // The state is bound to the browser and the code is single
                // use at the provider; this instance's copy still refuses
                // a replay here.
                self.deps.outage.failed("spending a login state", &e);
                true
            }
        }
    }

    /// `/login`: where to send the browser, with a fresh sealed state.
    pub fn start(&self, name: &str, fetch_token: Option<FetchToken>) -> Result<Start, LoginError> {
        let provider = self.provider(name)?;
        let Some(authorize_url) = provider
            .authorize_url
            .as_ref()
            .filter(|_| !provider.cli_token)
        else {
            return Ok(Start::CliToken {
                provider: provider.id.clone(),
            });
        };
        let verifier = provider.pkce.then(pkce::new_verifier);
        let login_state = LoginState {
            provider: provider.id.clone(),
            fetch_token: fetch_token.map(|t| t.as_str().to_string()),
            verifier: verifier.clone(),
            nonce: random_id(),
            expires_at: self.now() + STATE_LIFETIME,
        };
        let sealed = state::seal(&self.deps.keyring.current(), &login_state)
            .map_err(|_| LoginError::Seal)?;
        let mut url = authorize_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &provider.client_id);
            q.append_pair("redirect_uri", &self.deps.redirect_uri);
            if !provider.scope.is_empty() {
                q.append_pair("scope", &provider.scope);
            }
            q.append_pair("state", &sealed);
            if let Some(v) = &verifier {
                q.append_pair("code_challenge", &pkce::challenge(v));
                q.append_pair("code_challenge_method", "S256");
            }
            let extra = provider.extra_url.trim_start_matches(['?', '&']);
            for (k, v) in url::form_urlencoded::parse(extra.as_bytes()) {
                q.append_pair(&k, &v);
            }
        }
        tracing::info!(
            provider = %provider.id,
            login = %fingerprint(login_state.nonce.as_bytes()),
            "login started"
        );
        Ok(Start::Authorize {
            url,
            nonce: Sensitive::new(login_state.nonce),
        })
    }

    /// `/logged-in`: checks the state against the browser's cookie, spends
    /// it, exchanges the code and seals the AuthID.
    pub async fn finish(
        &self,
        callback: Callback<'_>,
        cookie_nonce: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Finished, LoginError> {
        self.count_attempt(client)
            .map_err(|retry_after| LoginError::TooMany { retry_after })?;
        let state_text = callback.state.unwrap_or("");
        let login_state =
            state::open(&self.deps.keyring.current(), state_text).map_err(LoginError::State)?;
        let login = fingerprint(login_state.nonce.as_bytes());
        if login_state.expires_at <= self.now() {
            return Err(LoginError::Expired {
                provider: login_state.provider,
            });
        }
        let same_browser = cookie_nonce.is_some_and(|c| {
            use subtle::ConstantTimeEq;
            bool::from(c.as_bytes().ct_eq(login_state.nonce.as_bytes()))
        });
        if !same_browser {
            tracing::warn!(login = %login, "login callback in a browser that did not start it");
            return Err(LoginError::WrongBrowser);
        }
        if !self.spend_state(&login_state.nonce).await {
            tracing::warn!(login = %login, "login callback replayed");
            return Err(LoginError::Replayed {
                provider: login_state.provider,
            });
        }
        let fetch_token = login_state
            .fetch_token
            .as_deref()
            .and_then(FetchToken::parse);
        let result = self.exchange(&login_state, state_text, &callback).await;
        self.conclude(result, fetch_token, &login).await
    }

    async fn exchange(
        &self,
        login_state: &LoginState,
        state_text: &str,
        callback: &Callback<'_>,
    ) -> Result<(Arc<Provider>, Sensitive), LoginError> {
        let provider = Arc::clone(self.provider(&login_state.provider)?);
        if let Some(code) = callback.error {
            let code = if is_oauth_error_code(code) {
                code
            } else {
                "unknown"
            };
            return Err(LoginError::Declined {
                provider: provider.id.clone(),
                code: code.to_string(),
            });
        }
        let code = callback
            .code
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.len() <= MAX_CODE_LEN)
            .ok_or_else(|| {
                LoginError::BadInput("The provider sent no usable authorization code".into())
            })?;
        let token_url = self.token_url(&provider, callback.hostname)?;
        let mut form: Vec<FormField> = vec![
            ("grant_type".into(), Sensitive::new("authorization_code")),
            ("code".into(), Sensitive::new(code)),
            (
                "redirect_uri".into(),
                Sensitive::new(self.deps.redirect_uri.as_str()),
            ),
        ];
        provider.push_client_auth(&mut form);
        if let Some(verifier) = &login_state.verifier {
            form.push(("code_verifier".into(), verifier.clone()));
        }
        if !provider.no_state_for_token_request {
            form.push(("state".into(), Sensitive::new(state_text)));
        }
        provider.push_additional(&mut form);
        let _permit = self.admit_login(&provider).await?;
        let grant = self.token_request(&provider, &token_url, &form).await?;
        self.authid_from(&provider, grant)
            .map(|authid| (provider, authid))
    }

    /// The token endpoint for a code exchange. pCloud names its regional API
    /// host in the callback; only hosts in `allowedHosts` are contacted.
    fn token_url(&self, provider: &Provider, hostname: Option<&str>) -> Result<Url, LoginError> {
        let Some(hostname) = hostname.filter(|_| provider.access_token_only) else {
            return Ok(provider.token_url.clone());
        };
        let refuse = || LoginError::HostNotAllowed("API host named by the provider's callback");
        let (host, port) = hosts::parse_host_port(hostname).ok_or_else(refuse)?;
        if !hosts::is_allowed(&provider.allowed_hosts, &host, port) {
            tracing::warn!(provider = %provider.id, "callback named an API host outside allowedHosts");
            return Err(refuse());
        }
        let mut url = provider.token_url.clone();
        url.set_host(Some(&host)).map_err(|_| refuse())?;
        url.set_port(port).map_err(|_| refuse())?;
        Ok(url)
    }

    /// A token request; the caller holds the provider's admission.
    async fn token_request(
        &self,
        provider: &Provider,
        url: &Url,
        form: &[FormField],
    ) -> Result<TokenGrant, LoginError> {
        let protection = &self.deps.protection;
        let result = self
            .deps
            .client
            .post_form(url, form, None)
            .await
            .map_err(UpstreamError::from)
            .and_then(|raw| classify(&raw, self.now()));
        match &result {
            Ok(_) => protection.succeeded(&provider.id),
            Err(UpstreamError::Throttled { retry_after }) => {
                let blocked = protection
                    .throttled(&provider.id, *retry_after, self.now())
                    .await;
                self.deps.metrics.throttle(&provider.id, "provider");
                tracing::warn!(provider = %provider.id, seconds = blocked, "provider throttled a login; calls held back");
            }
            Err(_) => {}
        }
        result.map_err(|error| LoginError::Upstream {
            provider: provider.id.clone(),
            error,
        })
    }

    /// Seals the refresh token (or, for access-token-only providers, hands
    /// out the access token itself).
    fn authid_from(&self, provider: &Provider, grant: TokenGrant) -> Result<Sensitive, LoginError> {
        if provider.access_token_only {
            return Ok(grant.access_token);
        }
        let refresh_token = grant
            .refresh_token
            .ok_or_else(|| LoginError::NoRefreshToken {
                provider: provider.id.clone(),
            })?;
        let mut claims = Claims::new(provider.id.clone(), refresh_token, self.now());
        // The registration travels with the grant, so the AuthID keeps
        // working after this client moves to previousClients.
        claims.set_client_id(&provider.client_id);
        self.deps
            .keyring
            .seal(&claims)
            .map(Sensitive::new)
            .map_err(|_| LoginError::Seal)
    }

    /// Logs the outcome and completes the fetch token either way, so a
    /// polling client stops waiting.
    async fn conclude(
        &self,
        result: Result<(Arc<Provider>, Sensitive), LoginError>,
        fetch_token: Option<FetchToken>,
        login: &str,
    ) -> Result<Finished, LoginError> {
        let now = self.now();
        match result {
            Ok((provider, authid)) => {
                tracing::info!(provider = %provider.id, login = %login, "login finished");
                if let Some(t) = &fetch_token {
                    self.complete_fetch(t, Ok(authid.clone()), now).await;
                }
                Ok(Finished {
                    provider,
                    authid,
                    fetch_token,
                })
            }
            Err(e) => {
                tracing::warn!(login = %login, reason = e.label(), "login failed");
                if let Some(t) = &fetch_token {
                    self.complete_fetch(t, Err(e.message()), now).await;
                }
                Err(e)
            }
        }
    }

    /// Hands the outcome to a polling client. Without the store, the user
    /// still has the AuthID on the page to copy.
    async fn complete_fetch(
        &self,
        token: &FetchToken,
        outcome: Result<Sensitive, String>,
        now: i64,
    ) {
        if let Err(e) = self.fetch_store.complete(token, outcome, now).await {
            self.deps.outage.failed("completing a fetch token", &e);
        }
    }

    /// `/cli-token-login`: Jottacloud's personal login token, exchanged with
    /// the `password` grant at the token endpoint its identity server names.
    pub async fn cli_token_login(
        &self,
        name: &str,
        token_text: &str,
        fetch_token: Option<FetchToken>,
        client: Option<IpAddr>,
    ) -> Result<Finished, LoginError> {
        self.count_attempt(client)
            .map_err(|retry_after| LoginError::TooMany { retry_after })?;
        let provider = Arc::clone(self.provider(name)?);
        if !provider.cli_token {
            return Err(LoginError::BadInput(format!(
                "{} does not log in with a token; use its login link",
                provider.name
            )));
        }
        let login = fingerprint(random_id().as_bytes());
        let result = self.cli_token_exchange(&provider, token_text).await;
        self.conclude(result.map(|a| (provider, a)), fetch_token, &login)
            .await
    }

    async fn cli_token_exchange(
        &self,
        provider: &Provider,
        token_text: &str,
    ) -> Result<Sensitive, LoginError> {
        let token = cli_token::parse(token_text).map_err(|e| LoginError::BadInput(e.into()))?;
        let well_known = hosts::check_url(&provider.allowed_hosts, &token.well_known_link).ok_or(
            LoginError::HostNotAllowed("identity server named by the login token"),
        )?;
        let upstream = |error| LoginError::Upstream {
            provider: provider.id.clone(),
            error,
        };
        // One admission covers the discovery document and the token
        // request: one login, one unit of the provider's budget.
        let _permit = self.admit_login(provider).await?;
        let raw = self
            .deps
            .client
            .get_json(&well_known)
            .await
            .map_err(|e| upstream(UpstreamError::from(e)))?;
        if !(200..300).contains(&raw.status) {
            return Err(upstream(UpstreamError::Unavailable {
                detail: "the identity server's discovery document is unavailable",
            }));
        }
        let endpoint = serde_json::from_slice::<Value>(&raw.body)
            .ok()
            .and_then(|doc| doc.get("token_endpoint")?.as_str().map(str::to_string))
            .ok_or_else(|| {
                upstream(UpstreamError::Unavailable {
                    detail: "the discovery document names no token endpoint",
                })
            })?;
        let token_url = hosts::check_url(&provider.allowed_hosts, &endpoint).ok_or(
            LoginError::HostNotAllowed("token endpoint named by the identity server"),
        )?;
        let scope = if provider.scope.is_empty() {
            CLI_TOKEN_SCOPE
        } else {
            provider.scope.as_str()
        };
        let mut form: Vec<FormField> = vec![("grant_type".into(), Sensitive::new("password"))];
        provider.push_client_auth(&mut form);
        form.push(("username".into(), Sensitive::new(token.username.as_str())));
        form.push(("password".into(), token.auth_token.clone()));
        form.push(("scope".into(), Sensitive::new(scope)));
        provider.push_additional(&mut form);
        let grant = self.token_request(provider, &token_url, &form).await?;
        self.authid_from(provider, grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_code_and_the_nonce() {
        let callback = Callback {
            code: Some("secret-code"),
            ..Default::default()
        };
        assert!(!format!("{callback:?}").contains("secret-code"));
        let url = Url::parse("https://p.example/authorize").unwrap();
        let start = Start::Authorize {
            url,
            nonce: Sensitive::new("secret-nonce"),
        };
        assert!(!format!("{start:?}").contains("secret-nonce"));
    }
}
