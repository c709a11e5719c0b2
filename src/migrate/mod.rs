//! Migration from the old App Engine service (SPEC 9): on first sight of
//! a `keyid:password` AuthID, its grant is exported from the old service
//! and kept in the store, so the AuthID keeps working without the old
//! service; after a rotation of a migrated login the newest token is
//! imported back, so the old service stays current while both run.

mod gate;
pub mod grant;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use crate::authid::GENERATION_CLAIM;
use crate::authid::{AppEngineAuthId, Claims, DerivedLogin};
use crate::metrics::Metrics;
use crate::outage::StoreOutage;
use crate::secret::Sensitive;
use crate::store::{Store, StoreKey};
use crate::sync::SingleFlight;
pub use gate::FORGET_UNKNOWN_AFTER_SECS;
use gate::{ExportGate, Held};
use grant::{GrantVault, MigratedGrant};
use service::log_failure;
pub use service::{
    APP_ENGINE_RETRY_AFTER, APP_ENGINE_TIMEOUT, AppEngineError, AppEngineService, ExportedGrant,
    HttpAppEngineService, ImportedToken,
};

/// How long a migrated grant is kept after it was last written. The old
/// service deleted tokens unused for a year; a grant in use is rewritten
/// at least every [`TOUCH_AFTER_SECS`].
pub const GRANT_TTL: Duration = Duration::from_secs(400 * 24 * 3600);
/// A grant read this long after its last write is written again, so the
/// store keeps it as long as it is used.
const TOUCH_AFTER_SECS: i64 = 7 * 24 * 3600;

/// The claim that marks the AuthIDs of a migrated login, so a rotation
/// seen through any of them is imported back.
pub const MIGRATED_CLAIM: &str = "mig";
const MIGRATED_FROM: &str = "appengine";

/// Why an old AuthID could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    AppEngine(#[from] AppEngineError),
    /// The store did not answer; nothing is known about the login.
    #[error("the store is unavailable")]
    Store,
    /// The old service's login is for a provider this broker does not
    /// offer (the retired Live Connect API, `onedrive`): it can never be
    /// refreshed here, so the user needs a new AuthID.
    #[error("this AuthID's login is for a service this server does not offer")]
    Unsupported,
    /// The broker-wide budget of exports is spent for now, or as many are
    /// in progress as allowed: retry after this many seconds.
    #[error("too many AuthIDs of the old service are being moved over; try again later")]
    Busy(u64),
}

impl MigrationError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::AppEngine(AppEngineError::Unknown | AppEngineError::NotConfigured)
            | Self::Unsupported => "bad_authid",
            Self::AppEngine(AppEngineError::Unavailable) | Self::Store => "unavailable",
            Self::AppEngine(AppEngineError::ApiKey | AppEngineError::BadAnswer(_)) => {
                "legacy_error"
            }
            Self::Busy(_) => "throttled",
        }
    }

    /// The AuthID cannot be used here at all (as opposed to: not now).
    pub fn is_unopenable(&self) -> bool {
        matches!(
            self,
            Self::AppEngine(AppEngineError::Unknown | AppEngineError::NotConfigured)
        )
    }
}

/// Everything the migrator needs.
pub struct MigrateDeps {
    /// The old service's worker API; `None` when not configured.
    pub service: Option<Arc<dyn AppEngineService>>,
    pub store: Arc<dyn Store>,
    pub outage: Arc<StoreOutage>,
    pub metrics: Arc<Metrics>,
    /// Exports per minute, broker-wide (`LEGACY_EXPORTS_PER_MINUTE`).
    pub exports_per_minute: u32,
    /// Exports in progress at once (`LEGACY_EXPORT_CONCURRENCY`).
    pub export_concurrency: usize,
}

/// A grant found for an old AuthID, and whether it was exported now.
type Found = Result<(MigratedGrant, bool), MigrationError>;

struct Inner {
    deps: MigrateDeps,
    /// One lookup (and export) per login at a time, however many requests
    /// arrive.
    flights: SingleFlight<StoreKey, Found>,
    /// Every export passes it: failures remembered, rate and cap.
    gate: ExportGate,
}

/// Resolves old AuthIDs and pushes rotations back.
#[derive(Clone)]
pub struct Migrator {
    inner: Arc<Inner>,
}

/// An old AuthID resolved to its login.
#[derive(Debug)]
pub struct MigratedLogin {
    /// Claims as a `v3:` AuthID of the login carries them: the derived
    /// login id and secret, the marker claim, the grant's refresh token.
    pub claims: Claims,
    /// True when the grant was exported by this request.
    pub exported: bool,
}

/// A rotation of a migrated login, to be recorded and imported.
pub struct Rotated<'a> {
    /// The login's claims with the new refresh token.
    pub claims: &'a Claims,
    /// The rotation's generation in the store.
    pub generation: u64,
    pub access_token: &'a Sensitive,
    pub expires_in: u64,
    pub now: i64,
}

/// True when the claims are those of a migrated login.
pub fn is_migrated(claims: &Claims) -> bool {
    claims.extra.get(MIGRATED_CLAIM).and_then(|v| v.as_str()) == Some(MIGRATED_FROM)
}

impl Migrator {
    pub fn new(deps: MigrateDeps) -> Self {
        Self {
            inner: Arc::new(Inner {
                gate: ExportGate::new(deps.exports_per_minute, deps.export_concurrency),
                deps,
                flights: SingleFlight::default(),
            }),
        }
    }

    pub fn configured(&self) -> bool {
        self.inner.deps.service.is_some()
    }

    /// The login behind an old AuthID: from the store, or, on first sight,
    /// exported from the old service and stored.
    pub async fn resolve(
        &self,
        old: &AppEngineAuthId<'_>,
        now: i64,
    ) -> Result<MigratedLogin, MigrationError> {
        let login = old.login();
        let vault = GrantVault::new(&login.id, &login.secret);
        let key = *vault.key();
        let inner = Arc::clone(&self.inner);
        let authid = Sensitive::new(old.expose());
        let key_fingerprint = old.key_fingerprint();
        let (grant, exported) = self
            .inner
            .flights
            .run(
                key,
                move || async move { lookup(&inner, &vault, &authid, &key_fingerprint, now).await },
                Err(MigrationError::AppEngine(AppEngineError::Unavailable)),
            )
            .await?;
        Ok(MigratedLogin {
            claims: claims_of(&login, &grant, now),
            exported,
        })
    }

    /// After the provider rotated the refresh token of a migrated login:
    /// the grant takes the newest token, and the old service gets it
    /// through `/import`. Runs in its own task; a failure is logged and
    /// counted, never passed to the user. Returns the task (`None` for a
    /// login that was not migrated).
    pub fn rotated(&self, rotation: Rotated<'_>) -> Option<tokio::task::JoinHandle<()>> {
        if !is_migrated(rotation.claims) {
            return None;
        }
        let inner = Arc::clone(&self.inner);
        let claims = rotation.claims;
        let vault = GrantVault::new(&claims.jti, &claims.login_secret());
        let login = claims.login_fingerprint();
        let token = ImportedToken {
            refresh_token: claims.rt.clone(),
            access_token: rotation.access_token.clone(),
            expires_in: rotation.expires_in,
            token_type: "Bearer",
        };
        let (generation, now) = (rotation.generation, rotation.now);
        Some(tokio::spawn(async move {
            let Some(authid) =
                record_rotation(&inner, &vault, &token.refresh_token, generation, now).await
            else {
                return;
            };
            let Some(service) = &inner.deps.service else {
                return;
            };
            let outcome = match service.import(authid.expose(), &token).await {
                Ok(()) => "imported",
                Err(e) => {
                    log_failure("import", &login, e);
                    e.label()
                }
            };
            inner.deps.metrics.app_engine_import(outcome);
        }))
    }

    /// The refresh token the old service holds now for a migrated login,
    /// when it is not `ours`: the old service refreshed the login itself
    /// meanwhile (it still serves part of the traffic), so its token is
    /// the newest and ours is spent. Counted as `refetched`; the same
    /// token as ours as `checked`. `None` also without an old service, a
    /// grant, or a usable answer.
    pub async fn refetch(&self, claims: &Claims, ours: &Sensitive) -> Option<Sensitive> {
        let deps = &self.inner.deps;
        let service = deps.service.as_ref()?;
        let vault = GrantVault::new(&claims.jti, &claims.login_secret());
        let stored = deps.store.get_versioned(vault.key()).await.ok().flatten()?;
        let grant = vault.open(&stored)?;
        let login = claims.login_fingerprint();
        match service.export(grant.authid.expose()).await {
            Ok(exported) if exported.service == claims.provider => {
                if &exported.refresh_token == ours {
                    deps.metrics.app_engine_export("checked");
                    None
                } else {
                    deps.metrics.app_engine_export("refetched");
                    Some(exported.refresh_token)
                }
            }
            Ok(_) => {
                deps.metrics.app_engine_export("bad_answer");
                None
            }
            Err(e) => {
                deps.metrics.app_engine_export(e.label());
                log_failure("export", &login, e);
                None
            }
        }
    }

    /// Drops the migrated grant of a login (after revocation), so its old
    /// AuthID stops working here too.
    pub async fn forget(&self, claims: &Claims) {
        if !is_migrated(claims) {
            return;
        }
        let vault = GrantVault::new(&claims.jti, &claims.login_secret());
        if let Err(e) = self.inner.deps.store.delete(vault.key()).await {
            self.inner
                .deps
                .outage
                .failed("forgetting a migrated grant", &e);
        }
    }
}

/// The claims of a migrated login, as every AuthID sealed for it carries
/// them.
fn claims_of(login: &DerivedLogin, grant: &MigratedGrant, now: i64) -> Claims {
    let mut claims = login.claims(&grant.svc, grant.rt.clone(), now);
    claims.extra.insert(
        MIGRATED_CLAIM.into(),
        serde_json::Value::String(MIGRATED_FROM.into()),
    );
    if grant.generation > 0 {
        claims.extra.insert(
            GENERATION_CLAIM.into(),
            serde_json::Value::from(grant.generation),
        );
    }
    claims
}

/// The stored grant, or a fresh export. Returns whether it exported.
async fn lookup(
    inner: &Inner,
    vault: &GrantVault,
    authid: &Sensitive,
    key_fingerprint: &str,
    now: i64,
) -> Found {
    let deps = &inner.deps;
    let store = &deps.store;
    let stored = match store.get_versioned(vault.key()).await {
        Ok(stored) => stored,
        Err(e) => {
            deps.outage.failed("reading a migrated grant", &e);
            // Nothing is known here; the old service, if it is there,
            // still knows the grant. What is exported now is not stored:
            // the refresh goes on only for a provider that does not rotate
            // (a rotating one needs the store for its newest token).
            return match &deps.service {
                Some(service) => export(inner, service.as_ref(), authid, key_fingerprint, now)
                    .await
                    .map(|grant| (grant, true)),
                None => Err(MigrationError::Store),
            };
        }
    };
    let generation = stored.as_ref().map_or(0, |s| s.generation + 1);
    if let Some(stored) = &stored {
        if let Some(mut grant) = vault.open(stored) {
            if now - grant.written_at > TOUCH_AFTER_SECS {
                // Written again so the store keeps a grant in use; losing
                // this write costs nothing but an earlier expiry.
                grant.written_at = now;
                if let Some(record) = vault.seal(generation, &grant) {
                    let _ = store.put_versioned(vault.key(), record, GRANT_TTL).await;
                }
            }
            return Ok((grant, false));
        }
        // An entry this AuthID cannot open was not made from it; keys are
        // HMACs, so this means damage. Exporting again replaces it.
        tracing::warn!(key = %key_fingerprint, "the stored grant of an old AuthID does not open; exporting again");
    }
    let Some(service) = &deps.service else {
        deps.metrics
            .app_engine_export(AppEngineError::NotConfigured.label());
        return Err(AppEngineError::NotConfigured.into());
    };
    let grant = export(inner, service.as_ref(), authid, key_fingerprint, now).await?;
    let Some(record) = vault.seal(generation, &grant) else {
        return Ok((grant, true));
    };
    match store.put_versioned(vault.key(), record, GRANT_TTL).await {
        Ok(true) => Ok((grant, true)),
        // Another instance stored this login first: its entry wins, so all
        // instances go on from one grant.
        Ok(false) => match store.get_versioned(vault.key()).await {
            Ok(Some(theirs)) => Ok((vault.open(&theirs).unwrap_or(grant), true)),
            _ => Ok((grant, true)),
        },
        // Served anyway; the next request exports again.
        Err(e) => {
            deps.outage.failed("storing a migrated grant", &e);
            Ok((grant, true))
        }
    }
}

/// `GET /export`, counted and logged.
async fn export(
    inner: &Inner,
    service: &dyn AppEngineService,
    authid: &Sensitive,
    key_fingerprint: &str,
    now: i64,
) -> Result<MigratedGrant, MigrationError> {
    let metrics = &inner.deps.metrics;
    let _permit = match inner.gate.admit(authid.expose(), now) {
        Ok(permit) => permit,
        Err(Held::Failed(e)) => {
            metrics.app_engine_export("remembered");
            return Err(e.into());
        }
        Err(Held::Busy(retry_after)) => {
            metrics.app_engine_export("busy");
            return Err(MigrationError::Busy(retry_after));
        }
    };
    let exported = match service.export(authid.expose()).await {
        Ok(grant) => grant,
        Err(e) => {
            metrics.app_engine_export(e.label());
            log_failure("export", key_fingerprint, e);
            inner.gate.failed(authid.expose(), e, now);
            return Err(e.into());
        }
    };
    metrics.app_engine_export("migrated");
    tracing::info!(key = %key_fingerprint, provider = %exported.service, "migrated an AuthID of the old service");
    Ok(MigratedGrant {
        svc: exported.service,
        rt: exported.refresh_token,
        generation: 0,
        authid: authid.clone(),
        written_at: now,
    })
}

/// Writes the newest refresh token into the grant; returns the old AuthID
/// for the import, or `None` when there is no grant (never migrated here,
/// or expired) or it already holds a newer rotation.
async fn record_rotation(
    inner: &Inner,
    vault: &GrantVault,
    refresh_token: &Sensitive,
    generation: u64,
    now: i64,
) -> Option<Sensitive> {
    let store = &inner.deps.store;
    let stored = match store.get_versioned(vault.key()).await {
        Ok(stored) => stored?,
        Err(e) => {
            inner
                .deps
                .outage
                .failed("reading a migrated grant after a rotation", &e);
            return None;
        }
    };
    let mut grant = vault.open(&stored)?;
    if grant.generation >= generation {
        return None;
    }
    grant.rt = refresh_token.clone();
    grant.generation = generation;
    grant.written_at = now;
    if let Some(record) = vault.seal(stored.generation + 1, &grant) {
        if let Err(e) = store.put_versioned(vault.key(), record, GRANT_TTL).await {
            inner
                .deps
                .outage
                .failed("recording a rotation in a migrated grant", &e);
        }
    }
    Some(grant.authid)
}

#[cfg(test)]
mod tests;
