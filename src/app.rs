//! The application core shared by every request: settings, keys, the
//! provider catalogue, the store, the provider protection, the refresher
//! and the login flows. Free of HTTP types; handlers call into it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use crate::authid::keysource::KeySource;
use crate::authid::{Keyring, KeyringHandle};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::demo::DemoProvider;
use crate::http::Templates;
use crate::login::{LoginDeps, LoginService};
use crate::metrics::Metrics;
use crate::migrate::{
    APP_ENGINE_TIMEOUT, AppEngineService, HttpAppEngineService, MigrateDeps, Migrator,
};
use crate::outage::StoreOutage;
use crate::provider::{Catalogue, Protection, ProtectionSettings, TokenClient};
use crate::refresh::{RefreshDeps, Refresher};
use crate::store::Store;

pub struct App {
    pub settings: Settings,
    pub keyring: Arc<KeyringHandle>,
    /// Where keys are reloaded from; `None` for an ephemeral keyring.
    pub key_source: Option<KeySource>,
    pub refresher: Refresher,
    /// The state instances share (SPEC 8); several apps on one store
    /// behave as one broker.
    pub store: Arc<dyn Store>,
    /// Notes store failures for every part; logs them once per interval.
    pub outage: Arc<StoreOutage>,
    /// Backoff, quota and bulkhead per provider registration, used by
    /// refreshes and code exchanges alike.
    pub protection: Arc<Protection>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// The built-in demo provider (`oauth-broker demo` only).
    pub demo: Option<Arc<DemoProvider>>,
    /// Login flows, fetch rendezvous and revocation.
    pub login: LoginService,
    /// The page templates, rendered by the HTTP edge.
    pub templates: Templates,
    /// When (clock seconds) the last warning about `X-Forwarded-For` from
    /// an untrusted peer was logged; 0 before the first.
    pub untrusted_forwarded_warned: AtomicI64,
}

pub type SharedApp = Arc<App>;

/// The old App Engine service's worker API, when `LEGACY_SERVICE_URL` is
/// set. Its calls are bounded by the upstream timeout too: a migration
/// still has to refresh at the provider within the client's patience.
fn legacy_service(settings: &Settings) -> Option<Arc<dyn AppEngineService>> {
    let legacy = settings.legacy_service.as_ref()?;
    let timeout = APP_ENGINE_TIMEOUT.min(settings.upstream_timeout);
    match HttpAppEngineService::with_timeout(legacy, timeout) {
        Ok(service) => Some(Arc::new(service)),
        Err(e) => {
            tracing::error!(error = %e, "the client for LEGACY_SERVICE_URL cannot be built; old AuthIDs are not migrated");
            None
        }
    }
}

impl App {
    /// `store` is the store `serve` opened (`MemoryStore` for tests and the
    /// demo).
    pub fn new(
        settings: Settings,
        keyring: Keyring,
        key_source: Option<KeySource>,
        catalogue: Catalogue,
        client: Arc<dyn TokenClient>,
        clock: SharedClock,
        store: Arc<dyn Store>,
    ) -> Self {
        Self::with_metrics(
            settings,
            keyring,
            key_source,
            catalogue,
            client,
            clock,
            store,
            Arc::new(Metrics::new()),
        )
    }

    /// As [`App::new`], counting into `metrics` (which the store opened by
    /// `serve` already counts into).
    #[allow(clippy::too_many_arguments)]
    pub fn with_metrics(
        settings: Settings,
        keyring: Keyring,
        key_source: Option<KeySource>,
        catalogue: Catalogue,
        client: Arc<dyn TokenClient>,
        clock: SharedClock,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let keyring = Arc::new(KeyringHandle::new(keyring));
        let catalogue = Arc::new(catalogue);
        let outage = Arc::new(StoreOutage::new());
        let protection = Arc::new(Protection::new(
            &catalogue,
            ProtectionSettings {
                max_backoff: settings.limits.backoff_max,
                concurrency: settings.limits.upstream_concurrency,
                queue_wait: settings.upstream_timeout,
            },
            Arc::clone(&store),
            Arc::clone(&outage),
        ));
        let migrator = Migrator::new(MigrateDeps {
            service: legacy_service(&settings),
            store: Arc::clone(&store),
            outage: Arc::clone(&outage),
            metrics: Arc::clone(&metrics),
        });
        let refresher = Refresher::new(RefreshDeps {
            keyring: Arc::clone(&keyring),
            catalogue: Arc::clone(&catalogue),
            client: Arc::clone(&client),
            store: Arc::clone(&store),
            outage: Arc::clone(&outage),
            protection: Arc::clone(&protection),
            metrics: Arc::clone(&metrics),
            clock: Arc::clone(&clock),
            redirect_uri: settings.redirect_uri(),
            cache_capacity: settings.cache_capacity,
            limits: settings.limits.clone(),
            upstream_timeout: settings.upstream_timeout,
            migrator,
        });
        let login = LoginService::new(LoginDeps {
            keyring: Arc::clone(&keyring),
            catalogue,
            client,
            clock: Arc::clone(&clock),
            refresher: refresher.clone(),
            protection: Arc::clone(&protection),
            metrics: Arc::clone(&metrics),
            attempts_per_minute: settings.limits.login_attempts_per_minute,
            address_capacity: settings.cache_capacity,
            store: Arc::clone(&store),
            outage: Arc::clone(&outage),
            redirect_uri: settings.redirect_uri(),
        });
        let templates = Templates::new(settings.templates_dir.as_deref());
        Self {
            settings,
            keyring,
            key_source,
            refresher,
            store,
            outage,
            protection,
            metrics,
            clock,
            demo: None,
            login,
            templates,
            untrusted_forwarded_warned: AtomicI64::new(0),
        }
    }

    pub fn catalogue(&self) -> &Catalogue {
        self.refresher.catalogue()
    }

    /// Reloads keys from their source. A failed reload keeps the current
    /// keyring and returns why. When a key disappears, cached answers are
    /// dropped so AuthIDs of a retired key stop working at once.
    pub fn reload_keys(&self) -> Result<(), Vec<String>> {
        let Some(source) = &self.key_source else {
            return Ok(());
        };
        let keyring = source.load()?;
        self.install_keyring(keyring);
        Ok(())
    }

    pub fn install_keyring(&self, keyring: Keyring) {
        let kids = |k: &Keyring| -> BTreeSet<String> {
            k.keys().iter().map(|k| k.kid().to_string()).collect()
        };
        let before = kids(&self.keyring.current());
        let after = kids(&keyring);
        let primary = keyring.primary().kid().to_string();
        self.keyring.replace(keyring);
        if !before.is_subset(&after) {
            self.refresher.forget_cached_texts();
        }
        tracing::info!(primary = %primary, keys = after.len(), "keys loaded");
    }
}
