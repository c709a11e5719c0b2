//! Opening an AuthID (v3, `v2:`, or the old App Engine service's,
//! which is migrated) and resolving its provider and registration.

use std::sync::Arc;

use super::RefreshError;
use super::cache::{CacheKey, TokenCache};
use crate::authid::{self, AppEngineAuthId, AuthIdText, Claims, KeyringHandle};
use crate::metrics::Metrics;
use crate::migrate::{AppEngineError, MigrationError, Migrator};
use crate::provider::protect::gate_name;
use crate::provider::{Catalogue, Provider, Rotation};
use crate::secret::Sensitive;

/// An opened AuthID, resolved to its provider.
pub struct OpenedAuthId {
    pub provider: Arc<Provider>,
    pub claims: Claims,
    /// The cache, single-flight and limit key of this login.
    pub(super) key: CacheKey,
    /// The client should get a re-sealed AuthID (`v2:` form, old key).
    pub(super) reseal: bool,
    /// A `v2:` AuthID: anyone can make one up, so its failures count
    /// against the client's address and, until the provider has accepted
    /// the login once, its calls draw on a small budget.
    pub(super) v2: bool,
    /// The protection gate of the registration the login uses.
    pub(super) gate: String,
    /// An old App Engine AuthID whose grant was exported by this request:
    /// its token is the old service's newest.
    pub(super) exported_now: bool,
}

impl OpenedAuthId {
    /// The rotation generation of the refresh token in this AuthID.
    pub fn generation(&self) -> u64 {
        authid::generation_of(&self.claims)
    }

    pub(super) fn rotates(&self) -> bool {
        self.provider.rotation != Rotation::None
    }
}

/// Opens an AuthID. An App Engine AuthID cannot be opened, only
/// migrated: [`open_migrated`] does that.
pub(super) fn open(
    keyring: &KeyringHandle,
    catalogue: &Catalogue,
    metrics: &Metrics,
    now: i64,
    text: &str,
) -> Result<OpenedAuthId, RefreshError> {
    let (claims, reseal, v2) = match authid::parse(text)? {
        AuthIdText::V3(jwe) => {
            let opened = keyring.open(jwe)?;
            (opened.claims, !opened.by_primary, false)
        }
        AuthIdText::V2(v2) => {
            let claims = Claims::from_v2(v2.provider, Sensitive::new(v2.refresh_token), now);
            (claims, true, true)
        }
        AuthIdText::AppEngine(_) => {
            return Err(RefreshError::Migration(
                AppEngineError::NotConfigured.into(),
            ));
        }
    };
    resolve(catalogue, metrics, claims, reseal, v2)
}

/// Resolves an App Engine AuthID through the migrator (the store, or an
/// export from the old service) to its login. The client always gets a
/// sealed `v3:` AuthID of the same login.
pub(super) async fn open_migrated(
    migrator: &Migrator,
    catalogue: &Catalogue,
    metrics: &Metrics,
    now: i64,
    old: &AppEngineAuthId<'_>,
) -> Result<OpenedAuthId, RefreshError> {
    let migrated = migrator.resolve(old, now).await.map_err(|e| match e {
        MigrationError::Store => RefreshError::StoreUnavailable,
        e => RefreshError::Migration(e),
    })?;
    let mut claims = migrated.claims;
    // The grant belongs to the registration the old service used: the
    // provider's legacy previous client when the registration changed.
    if let Some(previous) = catalogue
        .get(&claims.provider)
        .and_then(|p| p.app_engine_client())
    {
        claims.set_client_id(&previous.client_id);
    }
    // Not a made-up `v2:` AuthID: the grant came from the old service. A
    // provider this broker does not offer (Live Connect, retired) can
    // never serve it: the user needs a new AuthID (401, not 400).
    let mut opened = resolve(catalogue, metrics, claims, true, false).map_err(|e| match e {
        RefreshError::UnknownProvider(_) => RefreshError::Migration(MigrationError::Unsupported),
        e => e,
    })?;
    opened.exported_now = migrated.exported;
    Ok(opened)
}

/// The provider and registration of opened claims. Claims that name no
/// client are labelled with the one that owns unlabelled AuthIDs, so every
/// AuthID sealed from them carries `cid`.
pub(super) fn resolve(
    catalogue: &Catalogue,
    metrics: &Metrics,
    claims: Claims,
    reseal: bool,
    v2: bool,
) -> Result<OpenedAuthId, RefreshError> {
    let provider = catalogue
        .get(&claims.provider)
        .cloned()
        .ok_or_else(|| RefreshError::UnknownProvider(claims.provider.clone()))?;
    if provider.access_token_only {
        return Err(RefreshError::AccessTokenOnly(provider.name.clone()));
    }
    let mut claims = claims;
    let Some(registration) = provider.registration(claims.client_id()) else {
        return Err(RefreshError::UnknownClient(provider.name.clone()));
    };
    if claims.client_id().is_none() {
        claims.set_client_id(registration.client_id);
    }
    metrics.authid_opened(&provider.id, registration.kind());
    let gate = gate_name(&provider, &registration);
    let key = TokenCache::login_key(&provider.id, &claims.jti, &claims.login_secret());
    Ok(OpenedAuthId {
        provider,
        claims,
        key,
        reseal,
        v2,
        gate,
        exported_now: false,
    })
}
