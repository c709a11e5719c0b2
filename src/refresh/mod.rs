//! Refreshing: AuthID in, access token out.
//!
//! A cache hit costs a hash and two map lookups. A miss opens the AuthID,
//! applies the per-login limits, and joins or starts the one upstream call
//! for that login. The call resolves the login's newest refresh token from
//! the rotation store, passes the provider's protection (backoff, quota,
//! bulkhead), and stores what the provider rotated before anyone is
//! answered.

pub mod cache;
pub mod limits;
pub mod rotation;
pub mod singleflight;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::authid::{self, AuthIdError, AuthIdText, Claims, KeyringHandle};
use crate::clock::SharedClock;
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::provider::{
    Catalogue, Protection, ProtectionSettings, Provider, Refusal, Rotation, TokenClient,
    TransportError, UpstreamError, classify,
};
use crate::secret::Sensitive;
use cache::{CacheKey, CachedToken, TokenCache};
use limits::WindowLimiter;
use rotation::{LoginVault, RotationStore};
use singleflight::SingleFlight;

/// Used when a provider does not say how long its access token lives.
const DEFAULT_EXPIRES_IN: u64 = 3600;
/// After a single-use refresh whose answer was lost, the login rests this
/// long before the same token is tried again.
pub const INTERRUPTED_COOLDOWN_SECS: i64 = 30;

/// What `/refresh` answers on success: the cached answer itself (shared,
/// not copied) and the seconds it has left.
#[derive(Debug, Clone)]
pub struct RefreshAnswer {
    token: Arc<CachedToken>,
    /// Whole seconds left.
    pub expires: u64,
}

impl RefreshAnswer {
    pub fn access_token(&self) -> &Sensitive {
        &self.token.access_token
    }

    /// The provider id.
    pub fn service(&self) -> &str {
        &self.token.service
    }

    /// Present when the client should switch to a new AuthID.
    pub fn new_authid(&self) -> Option<&str> {
        self.token.new_authid.as_deref()
    }
}

/// Why a refresh failed; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    AuthId(#[from] AuthIdError),
    #[error("This AuthID is for the provider {0}, which this server does not offer")]
    UnknownProvider(String),
    #[error("AuthIDs for {0} are access tokens; use them directly, they need no refresh")]
    AccessTokenOnly(String),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The broker holds back: provider backoff, quota or bulkhead.
    #[error("{}", refusal_text(*.0))]
    Refused(Refusal),
    /// The last single-use refresh of this login was cut off; it rests.
    #[error("The last refresh of this login was interrupted; try again shortly")]
    Interrupted { retry_after: u64 },
    /// This login (or this client) asks too often.
    #[error("{what}; try again later")]
    TooMany {
        what: &'static str,
        retry_after: u64,
    },
    #[error("The refreshed AuthID could not be sealed")]
    Seal,
    #[error("The refresh failed unexpectedly")]
    Internal,
}

fn refusal_text(r: Refusal) -> &'static str {
    match r {
        Refusal::Blocked(_) => "The provider asked this server to slow down; try again later",
        Refusal::Quota(_) => {
            "This server's request budget for the provider is spent; try again later"
        }
        Refusal::Busy(_) => "Too many requests to the provider are in progress; try again shortly",
    }
}

impl RefreshError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::AuthId(_) => "bad_authid",
            Self::UnknownProvider(_) | Self::AccessTokenOnly(_) => "bad_provider",
            Self::Upstream(e) => e.label(),
            Self::Refused(_) | Self::Interrupted { .. } => "throttled",
            Self::TooMany { .. } => "limited",
            Self::Seal | Self::Internal => "error",
        }
    }
}

type FlightResult = Result<Arc<CachedToken>, RefreshError>;

/// Everything the refresher needs from the rest of the application.
pub struct RefreshDeps {
    pub keyring: Arc<KeyringHandle>,
    pub catalogue: Arc<Catalogue>,
    pub client: Arc<dyn TokenClient>,
    pub store: Arc<dyn RotationStore>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// `PUBLIC_URL/logged-in`, sent where providers require it.
    pub redirect_uri: String,
    pub cache_capacity: u64,
    pub limits: Limits,
    /// The upstream timeout; also the longest wait for a provider slot.
    pub upstream_timeout: std::time::Duration,
}

struct Inner {
    deps: RefreshDeps,
    cache: TokenCache,
    flights: SingleFlight<CacheKey, FlightResult>,
    protection: Protection,
    login_requests: WindowLimiter<CacheKey>,
    login_refreshes: WindowLimiter<CacheKey>,
    bad_authids: WindowLimiter<IpAddr>,
    /// Single-use logins whose last refresh answer was lost, and when.
    interrupted: moka::sync::Cache<CacheKey, i64>,
}

#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

/// An opened AuthID, resolved to its provider.
pub struct Login {
    pub provider: Arc<Provider>,
    pub claims: Claims,
    /// The cache, single-flight and limit key of this login.
    key: CacheKey,
    /// The client should get a re-sealed AuthID (legacy form, old key).
    reseal: bool,
}

impl Refresher {
    pub fn new(deps: RefreshDeps) -> Self {
        let cache = TokenCache::new(deps.cache_capacity);
        let protection = Protection::new(
            &deps.catalogue,
            ProtectionSettings {
                max_backoff: deps.limits.backoff_max,
                concurrency: deps.limits.upstream_concurrency,
                queue_wait: deps.upstream_timeout,
            },
        );
        let limits = &deps.limits;
        let inner = Inner {
            cache,
            flights: SingleFlight::default(),
            protection,
            // Counters are kept for as many logins as the token cache holds.
            login_requests: WindowLimiter::new(
                limits.login_requests_per_hour,
                3600,
                deps.cache_capacity,
            ),
            login_refreshes: WindowLimiter::new(
                limits.login_refreshes_per_hour,
                3600,
                deps.cache_capacity,
            ),
            bad_authids: WindowLimiter::new(limits.bad_authids_per_minute, 60, deps.cache_capacity),
            interrupted: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(3600))
                .build(),
            deps,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn cache(&self) -> &TokenCache {
        &self.inner.cache
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.deps.catalogue
    }

    pub fn protection(&self) -> &Protection {
        &self.inner.protection
    }

    pub fn store(&self) -> &dyn RotationStore {
        self.inner.deps.store.as_ref()
    }

    /// Returns a valid access token for the AuthID. `client` is the
    /// caller's address, for limiting AuthIDs that fail to open.
    pub async fn refresh(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<RefreshAnswer, RefreshError> {
        let result = self.refresh_inner(text.trim(), client).await;
        let metrics = &self.inner.deps.metrics;
        match &result {
            Ok((answer, outcome)) => metrics.refresh(answer.service(), outcome),
            Err((provider, e)) => metrics.refresh(provider, e.label()),
        }
        result.map(|(answer, _)| answer).map_err(|(_, e)| e)
    }

    async fn refresh_inner(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<(RefreshAnswer, &'static str), (String, RefreshError)> {
        let inner = &self.inner;
        let now = inner.deps.clock.now();
        let text_key = TokenCache::text_key(text);
        // A hit needs the login's entry too: forgetting a login (revocation)
        // removes that one entry and so every AuthID text of the login.
        if let Some(hit) = inner
            .cache
            .by_text(&text_key, now)
            .filter(|hit| inner.cache.by_login(&hit.login_key, now).is_some())
        {
            inner
                .login_requests
                .hit(&hit.login_key, now)
                .map_err(|s| (hit.service.clone(), too_many_requests(s)))?;
            return Ok((answer(hit, now), "cache_hit"));
        }
        if let Some(ip) = client {
            inner.bad_authids.check(&ip, now).map_err(|s| {
                (
                    "-".to_string(),
                    RefreshError::TooMany {
                        what: "Too many invalid AuthIDs from this address",
                        retry_after: s,
                    },
                )
            })?;
        }
        let login = match self.open(text) {
            Ok(login) => login,
            Err(e) => {
                if let (Some(ip), RefreshError::AuthId(_)) = (client, &e) {
                    let _ = inner.bad_authids.hit(&ip, now);
                }
                return Err(("-".to_string(), e));
            }
        };
        let provider_id = login.provider.id.clone();
        let fail = |e| (provider_id.clone(), e);
        inner
            .login_requests
            .hit(&login.key, now)
            .map_err(|s| fail(too_many_requests(s)))?;
        if let Some(hit) = inner.cache.by_login(&login.key, now) {
            inner.cache.insert_text(text_key, Arc::clone(&hit));
            return Ok((answer(hit, now), "cache_hit"));
        }
        if let Some(left) = inner.protection.blocked(&provider_id, now) {
            inner.deps.metrics.throttle(&provider_id, "backoff");
            return Err(fail(RefreshError::Refused(Refusal::Blocked(left))));
        }
        let key = login.key;
        let task_inner = Arc::clone(inner);
        let token = inner
            .flights
            .run(
                key,
                move || upstream(task_inner, login),
                Err(RefreshError::Internal),
            )
            .await
            .map_err(fail)?;
        inner.cache.insert_text(text_key, Arc::clone(&token));
        let outcome = if token.rotated {
            "rotated"
        } else {
            "refreshed"
        };
        Ok((answer(token, inner.deps.clock.now()), outcome))
    }

    /// Drops everything held for a login (after revocation).
    pub fn forget(&self, text: &str, login: &Login) {
        self.inner
            .cache
            .forget(&TokenCache::text_key(text.trim()), &login.key);
        self.inner
            .deps
            .store
            .remove(LoginVault::for_claims(&login.claims).key());
    }

    /// Opens an AuthID and resolves its provider, without refreshing.
    pub fn open(&self, text: &str) -> Result<Login, RefreshError> {
        let text = text.trim();
        let deps = &self.inner.deps;
        let (claims, reseal) = match authid::parse(text)? {
            AuthIdText::V3(jwe) => {
                let opened = deps.keyring.open(jwe)?;
                (opened.claims, !opened.by_primary)
            }
            AuthIdText::Legacy(legacy) => {
                let claims = Claims::from_legacy(
                    legacy.service,
                    Sensitive::new(legacy.refresh_token),
                    deps.clock.now(),
                );
                (claims, true)
            }
        };
        let provider = deps
            .catalogue
            .get(&claims.svc)
            .cloned()
            .ok_or_else(|| RefreshError::UnknownProvider(claims.svc.clone()))?;
        if provider.access_token_only {
            return Err(RefreshError::AccessTokenOnly(provider.name.clone()));
        }
        let key = TokenCache::login_key(&provider.id, &claims.jti, &claims.login_secret());
        Ok(Login {
            provider,
            claims,
            key,
            reseal,
        })
    }

    /// Refreshes gauges before metrics are rendered.
    pub fn update_gauges(&self) {
        let inner = &self.inner;
        let m = &inner.deps.metrics;
        m.active_backoffs
            .set(inner.protection.active_backoffs(inner.deps.clock.now()) as i64);
        m.rotation_store_entries
            .set(inner.deps.store.entry_count() as i64);
        m.cached_tokens.set(inner.cache.len() as i64);
    }
}

fn too_many_requests(retry_after: u64) -> RefreshError {
    RefreshError::TooMany {
        what: "This AuthID is used too often",
        retry_after,
    }
}

fn answer(token: Arc<CachedToken>, now: i64) -> RefreshAnswer {
    RefreshAnswer {
        expires: (token.expires_at - now).max(0) as u64,
        token,
    }
}

/// The one upstream refresh of a login. Runs in its own task, so its
/// result is stored even if every caller has gone.
async fn upstream(inner: Arc<Inner>, login: Login) -> FlightResult {
    let deps = &inner.deps;
    let provider = Arc::clone(&login.provider);
    let now = deps.clock.now();
    // Another flight may have finished between the caller's cache check
    // and this one starting.
    if let Some(hit) = inner.cache.by_login(&login.key, now) {
        return Ok(hit);
    }
    let single_use = provider.rotation == Rotation::SingleUse;
    if single_use {
        if let Some(at) = inner.interrupted.get(&login.key) {
            let left = at + INTERRUPTED_COOLDOWN_SECS - now;
            if left > 0 {
                return Err(RefreshError::Interrupted {
                    retry_after: left as u64,
                });
            }
        }
    }
    inner
        .login_refreshes
        .hit(&login.key, now)
        .map_err(|s| RefreshError::TooMany {
            what: "This login was refreshed too often at the provider",
            retry_after: s,
        })?;

    // The newest refresh token of the login, which may be newer than the
    // one in the AuthID presented.
    let vault =
        (provider.rotation != Rotation::None).then(|| LoginVault::for_claims(&login.claims));
    let stored = vault
        .as_ref()
        .and_then(|v| deps.store.get(v.key()).map(|s| (v, s)))
        .and_then(|(v, s)| v.open(&s).map(|rt| (s.generation, rt)));
    let (generation, current_rt) = match stored {
        Some((generation, rt)) => (generation, rt),
        None => (0, login.claims.rt.clone()),
    };
    let stale_authid = current_rt != login.claims.rt;

    let _permit = inner
        .protection
        .admit(&provider.id, now)
        .await
        .map_err(|refusal| {
            deps.metrics.throttle(&provider.id, refusal.label());
            RefreshError::Refused(refusal)
        })?;
    let form = provider.refresh_form(&current_rt, &deps.redirect_uri);
    let fingerprint = login.claims.login_fingerprint();
    let started = Instant::now();
    let sent = deps
        .client
        .post_form(&provider.token_url, &form, None)
        .await;
    deps.metrics
        .upstream_latency
        .get_or_create(&Metrics::provider(&provider.id))
        .observe(started.elapsed().as_secs_f64());
    let now = deps.clock.now();
    if single_use {
        match &sent {
            // Sent but no answer: the provider may have spent the token.
            Err(TransportError::Timeout | TransportError::Broken) => {
                inner.interrupted.insert(login.key, now);
            }
            _ => inner.interrupted.invalidate(&login.key),
        }
    }
    let grant = match sent
        .map_err(UpstreamError::from)
        .and_then(|raw| classify(&raw, now))
    {
        Ok(grant) => grant,
        Err(e) => {
            if let UpstreamError::Throttled { retry_after } = &e {
                let blocked = inner.protection.throttled(&provider.id, *retry_after, now);
                deps.metrics.throttle(&provider.id, "provider");
                tracing::warn!(provider = %provider.id, seconds = blocked, "provider throttled; calls held back");
                log_upstream_error(&provider, &fingerprint, &e);
                return Err(RefreshError::Upstream(UpstreamError::Throttled {
                    retry_after: Some(std::time::Duration::from_secs(blocked)),
                }));
            }
            log_upstream_error(&provider, &fingerprint, &e);
            return Err(e.into());
        }
    };
    inner.protection.succeeded(&provider.id);

    let rotated = grant.refresh_token.filter(|rt| rt != &current_rt);
    let mut claims = login.claims.clone();
    claims.pin_login_secret();
    if let Some(rt) = &rotated {
        claims.rt = rt.clone();
        if let Some(vault) = &vault {
            let stored = vault.seal(generation + 1, rt);
            deps.store
                .put(*vault.key(), stored, provider.refresh_token_lifetime);
        }
        deps.metrics
            .rotations
            .get_or_create(&Metrics::provider(&provider.id))
            .inc();
    } else if stale_authid {
        claims.rt = current_rt.clone();
    }
    let new_authid = if rotated.is_some() || stale_authid || login.reseal {
        claims.iat = now;
        let sealed = deps.keyring.seal(&claims).map_err(|_| RefreshError::Seal)?;
        Some(Arc::<str>::from(sealed))
    } else {
        None
    };
    let token = Arc::new(CachedToken {
        access_token: grant.access_token,
        expires_at: now + grant.expires_in.unwrap_or(DEFAULT_EXPIRES_IN) as i64,
        service: provider.id.clone(),
        new_authid: new_authid.clone(),
        login_key: login.key,
        rotated: rotated.is_some(),
    });
    inner.cache.insert_login(login.key, Arc::clone(&token));
    if let Some(text) = &new_authid {
        // The new AuthID hits the cache straight away.
        inner
            .cache
            .insert_text(TokenCache::text_key(text), Arc::clone(&token));
    }
    tracing::debug!(
        provider = %provider.id,
        login = %fingerprint,
        rotated = rotated.is_some(),
        "refreshed at the provider"
    );
    Ok(token)
}

fn log_upstream_error(provider: &Provider, fingerprint: &str, e: &UpstreamError) {
    match e {
        UpstreamError::Misconfigured { .. } => tracing::error!(
            provider = %provider.id,
            login = %fingerprint,
            error = %e,
            "the provider rejected this broker's registration: check clientId, clientSecret and scope"
        ),
        _ => tracing::warn!(
            provider = %provider.id,
            login = %fingerprint,
            error = %e,
            "refresh failed at the provider"
        ),
    }
}

#[cfg(test)]
mod tests;
