//! Opening an AuthID (v3 or legacy) and resolving its provider.

use std::sync::Arc;

use serde_json::Value;

use super::RefreshError;
use super::cache::{CacheKey, TokenCache};
use crate::authid::{self, AuthIdText, Claims, KeyringHandle};
use crate::metrics::Metrics;
use crate::provider::protect::gate_name;
use crate::provider::{Catalogue, Provider};
use crate::secret::Sensitive;

/// The claim that says which recorded rotation an AuthID's refresh token
/// came from. An AuthID without it holds the token of the login itself
/// (generation 0). It lets the broker tell an AuthID newer than the store
/// (a rotation the store missed) from an older one.
pub const GENERATION_CLAIM: &str = "rgen";

/// An opened AuthID, resolved to its provider.
pub struct Login {
    pub provider: Arc<Provider>,
    pub claims: Claims,
    /// The cache, single-flight and limit key of this login.
    pub(super) key: CacheKey,
    /// The client should get a re-sealed AuthID (legacy form, old key).
    pub(super) reseal: bool,
    /// A legacy `v2:` AuthID: anyone can make one up, so its failures
    /// count against the client's address and, until the provider has
    /// accepted the login once, its calls draw on a small budget.
    pub(super) legacy: bool,
    /// The protection gate of the registration the login uses.
    pub(super) gate: String,
}

impl Login {
    /// The rotation generation of the refresh token in this AuthID.
    pub fn generation(&self) -> u64 {
        generation_of(&self.claims)
    }
}

pub fn generation_of(claims: &Claims) -> u64 {
    claims
        .extra
        .get(GENERATION_CLAIM)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

pub fn set_generation(claims: &mut Claims, generation: u64) {
    claims
        .extra
        .insert(GENERATION_CLAIM.into(), Value::from(generation));
}

pub(super) fn open(
    keyring: &KeyringHandle,
    catalogue: &Catalogue,
    metrics: &Metrics,
    now: i64,
    text: &str,
) -> Result<Login, RefreshError> {
    let (claims, reseal, legacy) = match authid::parse(text)? {
        AuthIdText::V3(jwe) => {
            let opened = keyring.open(jwe)?;
            (opened.claims, !opened.by_primary, false)
        }
        AuthIdText::Legacy(legacy) => {
            let claims =
                Claims::from_legacy(legacy.service, Sensitive::new(legacy.refresh_token), now);
            (claims, true, true)
        }
        // Resolved by the migration path before an AuthID is opened.
        AuthIdText::AppEngine(_) => {
            return Err(RefreshError::Migration(
                crate::migrate::LegacyError::NotConfigured.into(),
            ));
        }
    };
    let provider = catalogue
        .get(&claims.svc)
        .cloned()
        .ok_or_else(|| RefreshError::UnknownProvider(claims.svc.clone()))?;
    if provider.access_token_only {
        return Err(RefreshError::AccessTokenOnly(provider.name.clone()));
    }
    let Some(registration) = provider.registration(claims.client_id()) else {
        return Err(RefreshError::UnknownClient(provider.name.clone()));
    };
    metrics.authid_opened(&provider.id, registration.kind());
    let gate = gate_name(&provider, &registration);
    let key = TokenCache::login_key(&provider.id, &claims.jti, &claims.login_secret());
    Ok(Login {
        provider,
        claims,
        key,
        reseal,
        legacy,
        gate,
    })
}
