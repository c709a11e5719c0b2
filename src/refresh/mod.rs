//! Refreshing: AuthID in, access token out. A cache hit costs a hash and a
//! map lookup; a miss opens the AuthID, joins or starts the one upstream
//! call for that login, and caches the answer.

pub mod cache;
pub mod singleflight;

use std::sync::Arc;

use crate::authid::{self, AuthIdError, AuthIdText, Claims, KeyringHandle};
use crate::clock::SharedClock;
use crate::provider::{Catalogue, Provider, TokenClient, UpstreamError, classify};
use crate::secret::Sensitive;
use cache::{CacheKey, CachedToken, TokenCache};
use singleflight::SingleFlight;

/// Used when a provider does not say how long its access token lives.
const DEFAULT_EXPIRES_IN: u64 = 3600;

/// What `/refresh` answers on success.
#[derive(Debug, Clone)]
pub struct RefreshAnswer {
    pub access_token: Sensitive,
    /// Whole seconds left.
    pub expires: u64,
    /// The provider id.
    pub service: String,
    /// Present when the client should switch to a new AuthID.
    pub new_authid: Option<Arc<str>>,
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
    #[error("The refreshed AuthID could not be sealed")]
    Seal,
    #[error("The refresh failed unexpectedly")]
    Internal,
}

impl RefreshError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::AuthId(_) => "bad_authid",
            Self::UnknownProvider(_) | Self::AccessTokenOnly(_) => "bad_provider",
            Self::Upstream(e) => e.label(),
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
    pub clock: SharedClock,
    /// `PUBLIC_URL/logged-in`, sent where providers require it.
    pub redirect_uri: String,
    pub cache_capacity: u64,
}

struct Inner {
    deps: RefreshDeps,
    cache: TokenCache,
    flights: SingleFlight<CacheKey, FlightResult>,
}

#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

/// An opened AuthID, resolved to its provider.
pub struct Login {
    pub provider: Arc<Provider>,
    pub claims: Claims,
    /// The cache and single-flight key of this login.
    key: CacheKey,
    /// The client should get a re-sealed AuthID (legacy form, old key).
    reseal: bool,
}

impl Refresher {
    pub fn new(deps: RefreshDeps) -> Self {
        let cache = TokenCache::new(deps.cache_capacity);
        Self {
            inner: Arc::new(Inner {
                deps,
                cache,
                flights: SingleFlight::default(),
            }),
        }
    }

    pub fn cache(&self) -> &TokenCache {
        &self.inner.cache
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.deps.catalogue
    }

    /// Returns a valid access token for the AuthID.
    pub async fn refresh(&self, text: &str) -> Result<RefreshAnswer, RefreshError> {
        let inner = &self.inner;
        let text = text.trim();
        let now = inner.deps.clock.now();
        let text_key = TokenCache::text_key(text);
        if let Some(hit) = inner.cache.by_text(&text_key, now) {
            return Ok(answer(&hit, now));
        }
        let login = self.open(text)?;
        let token = match inner.cache.by_login(&login.key, now) {
            Some(hit) => hit,
            None => {
                let key = login.key;
                let task_inner = Arc::clone(inner);
                inner
                    .flights
                    .run(
                        key,
                        move || upstream(task_inner, login),
                        Err(RefreshError::Internal),
                    )
                    .await?
            }
        };
        inner.cache.insert_text(text_key, Arc::clone(&token));
        Ok(answer(&token, inner.deps.clock.now()))
    }

    /// Drops everything cached for a login (after revocation).
    pub fn forget(&self, text: &str, login: &Login) {
        self.inner
            .cache
            .forget(&TokenCache::text_key(text.trim()), &login.key);
    }

    /// Opens an AuthID and resolves its provider, without refreshing.
    pub fn open(&self, text: &str) -> Result<Login, RefreshError> {
        let text = text.trim();
        let deps = &self.inner.deps;
        let (claims, reseal, key_id) = match authid::parse(text)? {
            AuthIdText::V3(jwe) => {
                let opened = deps.keyring.open(jwe)?;
                let key_id = opened.claims.jti.clone();
                (opened.claims, !opened.by_primary, key_id)
            }
            AuthIdText::Legacy(legacy) => {
                let claims = Claims::new(
                    legacy.service,
                    Sensitive::new(legacy.refresh_token),
                    deps.clock.now(),
                );
                // Legacy AuthIDs have no login id: key on the token alone.
                (claims, true, "v2".to_string())
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
        let key = TokenCache::login_key(&provider.id, &key_id, &claims.rt);
        Ok(Login {
            provider,
            claims,
            key,
            reseal,
        })
    }
}

fn answer(token: &CachedToken, now: i64) -> RefreshAnswer {
    RefreshAnswer {
        access_token: token.access_token.clone(),
        expires: (token.expires_at - now).max(0) as u64,
        service: token.service.clone(),
        new_authid: token.new_authid.clone(),
    }
}

/// The one upstream refresh of a login. Runs in its own task.
async fn upstream(inner: Arc<Inner>, login: Login) -> FlightResult {
    let deps = &inner.deps;
    // Another flight may have finished between the caller's cache check
    // and this one starting.
    if let Some(hit) = inner.cache.by_login(&login.key, deps.clock.now()) {
        return Ok(hit);
    }
    let provider = &login.provider;
    let form = provider.refresh_form(&login.claims.rt, &deps.redirect_uri);
    let fingerprint = login.claims.login_fingerprint();
    let result = deps
        .client
        .post_form(&provider.token_url, &form, None)
        .await
        .map_err(UpstreamError::from)
        .and_then(|raw| classify(&raw, deps.clock.now()));
    let grant = match result {
        Ok(grant) => grant,
        Err(e) => {
            log_upstream_error(provider, &fingerprint, &e);
            return Err(e.into());
        }
    };
    let now = deps.clock.now();
    let rotated = grant.refresh_token.filter(|rt| rt != &login.claims.rt);
    let new_authid = if rotated.is_some() || login.reseal {
        let mut claims = login.claims.clone();
        if let Some(rt) = &rotated {
            claims.rt = rt.clone();
        }
        claims.iat = now;
        let sealed = deps.keyring.seal(&claims).map_err(|_| RefreshError::Seal)?;
        Some((Arc::<str>::from(sealed), claims))
    } else {
        None
    };
    let token = Arc::new(CachedToken {
        access_token: grant.access_token,
        expires_at: now + grant.expires_in.unwrap_or(DEFAULT_EXPIRES_IN) as i64,
        service: provider.id.clone(),
        new_authid: new_authid.as_ref().map(|(text, _)| Arc::clone(text)),
    });
    inner.cache.insert_login(login.key, Arc::clone(&token));
    if let Some((text, claims)) = &new_authid {
        // The new AuthID hits the cache straight away, by text and by login.
        inner
            .cache
            .insert_text(TokenCache::text_key(text), Arc::clone(&token));
        inner.cache.insert_login(
            TokenCache::login_key(&provider.id, &claims.jti, &claims.rt),
            Arc::clone(&token),
        );
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
