//! Logging in: the authorization-code flow with sealed state and PKCE
//! (`code`), the Jottacloud login-token flow (`cli_token`), the fetch
//! rendezvous for polling clients (`fetch`) and revocation (`revoke`). This
//! file holds what they share: the service, admission to the provider, the
//! token request, sealing the AuthID and concluding a login. Free of HTTP
//! types; the handlers in `http` call in here and render the pages.
//!
//! Every call these flows make to a provider passes the same admission as
//! a refresh (backoff, quota, bulkhead), and the requests that can cause
//! one (callbacks, login-token logins, revocations) are counted per client
//! address: anyone can send them, made up, without an AuthID.

pub mod cli_token;
mod code;
mod error;
pub mod fetch;
pub mod pkce;
mod revoke;
pub mod state;

use std::net::IpAddr;
use std::sync::Arc;

use url::Url;

use crate::authid::{Claims, KeyringHandle};
use crate::cause::Cause;
use crate::clock::SharedClock;
use crate::metrics::Metrics;
use crate::outage::StoreOutage;
use crate::provider::client::FormField;
use crate::provider::{
    Admission, Catalogue, Protection, Provider, Refusal, TokenClient, TokenGrant, UpstreamError,
    classify,
};
use crate::refresh::Refresher;
use crate::secret::Sensitive;
use crate::store::Store;
use crate::sync::AddressLimiter;

pub use code::{Callback, Start};
pub use error::LoginError;
pub use fetch::{FetchState, FetchStore, FetchToken};
pub use revoke::{RevokeError, RevokeOutcome};

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
    /// Leading bits of an IPv6 address that name one client.
    pub ipv6_prefix_length: u8,
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
    attempts: AddressLimiter,
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
            attempts: AddressLimiter::new(
                deps.attempts_per_minute,
                60,
                deps.address_capacity,
                deps.ipv6_prefix_length,
            ),
            deps,
            used_nonces: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(code::USED_STATE_TTL)
                .build(),
        }
    }

    /// Counts a request that may call a provider; `Err(seconds)` when the
    /// address has sent too many this minute. Requests without a known
    /// address (driven in-process) are not counted.
    fn count_attempt(&self, client: Option<IpAddr>) -> Result<(), u64> {
        match client {
            Some(ip) => self.attempts.hit(ip, self.now()),
            None => Ok(()),
        }
    }

    /// Admits one call to the provider, as a refresh is admitted: not
    /// inside a backoff window (on any instance), within the quota, and a
    /// free slot. Hold the admission for the length of the call and settle
    /// it with the outcome.
    async fn admit<'a>(
        &'a self,
        provider: &'a Provider,
        gate: &'a str,
    ) -> Result<Admission<'a>, Refusal> {
        self.deps
            .protection
            .guard(&self.deps.metrics, &provider.id, gate)
            .pass(self.now())
            .await
    }

    /// [`LoginService::admit`] for the login flows.
    async fn admit_login<'a>(
        &'a self,
        provider: &'a Provider,
    ) -> Result<Admission<'a>, LoginError> {
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
    /// it). Anyone can open the page with a made-up token and each writes
    /// an entry to the durable store, so it counts like a login attempt of
    /// the client's address: a flood from one client is refused (429)
    /// before it writes. Without the store the page still works: the login
    /// completes the token later if the store is back by then.
    pub async fn register_fetch_token(
        &self,
        token: &FetchToken,
        client: Option<IpAddr>,
    ) -> Result<(), LoginError> {
        self.count_attempt(client)
            .map_err(|retry_after| LoginError::TooMany { retry_after })?;
        if let Err(e) = self.fetch_store.register(token, self.now()).await {
            self.deps.outage.failed("registering a fetch token", &e);
        }
        Ok(())
    }

    /// A token request under the provider's admission, which it settles.
    async fn token_request(
        &self,
        admission: Admission<'_>,
        provider: &Provider,
        url: &Url,
        form: &[FormField],
    ) -> Result<TokenGrant, LoginError> {
        let result = self
            .deps
            .client
            .post_form(url, form, None)
            .await
            .map_err(UpstreamError::from)
            .and_then(|raw| classify(&raw, self.now()));
        admission.settle(&result, self.now()).await;
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
            .map_err(|e| LoginError::Seal(Cause::new(e)))
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
}
