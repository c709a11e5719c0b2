//! The application core shared by every request: settings, keys, the
//! provider catalogue, the store, the provider protection, the refresher
//! and the login flows, behind the few methods handlers call. Free of HTTP
//! types and of the `http` module; web-only state lives in `http`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;

use crate::authid::keysource::KeySource;
use crate::authid::{Keyring, KeyringHandle};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::demo::DemoProvider;
use crate::login::{FetchState, FetchToken, LoginDeps, LoginService};
use crate::metrics::Metrics;
use crate::migrate::{
    APP_ENGINE_TIMEOUT, AppEngineService, HttpAppEngineService, MigrateDeps, Migrator,
};
use crate::outage::StoreOutage;
use crate::provider::{Catalogue, Protection, ProtectionSettings, TokenClient};
use crate::refresh::{RefreshDeps, RefreshError, Refresher};
use crate::store::{Store, StoreError};

/// Everything an [`App`] is built from.
pub struct AppParts {
    pub settings: Settings,
    pub keyring: Keyring,
    /// Where keys are reloaded from; `None` for an ephemeral keyring.
    pub key_source: Option<KeySource>,
    pub catalogue: Catalogue,
    pub client: Arc<dyn TokenClient>,
    pub clock: SharedClock,
    /// The state instances share (SPEC 8): the store `serve` opened
    /// (`MemoryStore` for tests and the demo).
    pub store: Arc<dyn Store>,
    /// The metrics everything counts into (the store opened by `serve`
    /// already counts into them).
    pub metrics: Arc<Metrics>,
    /// The built-in demo provider (`oauth-broker demo` only).
    pub demo: Option<Arc<DemoProvider>>,
}

pub struct App {
    settings: Settings,
    keyring: Arc<KeyringHandle>,
    key_source: Option<KeySource>,
    refresher: Refresher,
    /// Several apps on one store behave as one broker.
    store: Arc<dyn Store>,
    /// Notes store failures for every part; logs them once per interval.
    outage: Arc<StoreOutage>,
    /// Backoff, quota and bulkhead per provider registration, used by
    /// refreshes and code exchanges alike.
    protection: Arc<Protection>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    demo: Option<Arc<DemoProvider>>,
    /// Login flows, fetch rendezvous and revocation.
    login: LoginService,
    /// `refreshes{provider,outcome="cache_hit"}` of in-process hits.
    hits: HitCounters,
}

pub type SharedApp = Arc<App>;

/// What `/ready` shows of the store.
pub struct StoreStatus {
    pub kind: &'static str,
    pub up: bool,
    pub details: Option<serde_json::Value>,
}

/// The counters of in-process cache hits, one per provider of the
/// catalogue, found on first use (a series appears in `/metrics` only once
/// counted) and then counted on their atomics directly: a hit looks up no
/// label.
struct HitCounters(Box<[(String, OnceLock<Counter>)]>);

impl HitCounters {
    fn new(catalogue: &Catalogue) -> Self {
        Self(
            catalogue
                .providers()
                .iter()
                .map(|p| (p.id.clone(), OnceLock::new()))
                .collect(),
        )
    }

    fn count(&self, metrics: &Metrics, provider: &str) {
        match self.0.iter().find(|(id, _)| id == provider) {
            Some((id, counter)) => {
                counter
                    .get_or_init(|| metrics.refreshes.handle(id, "cache_hit"))
                    .inc();
            }
            // A provider outside the catalogue (the demo's): found by label.
            None => metrics.refresh(provider, "cache_hit"),
        }
    }
}

/// The old App Engine service's worker API, when `LEGACY_SERVICE_URL` is
/// set. Its calls are bounded by the upstream timeout too: a migration
/// still has to refresh at the provider within the client's patience.
fn app_engine_service(settings: &Settings) -> Option<Arc<dyn AppEngineService>> {
    let legacy = settings.app_engine_service.as_ref()?;
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
    pub fn new(parts: AppParts) -> Self {
        let AppParts {
            settings,
            keyring,
            key_source,
            catalogue,
            client,
            clock,
            store,
            metrics,
            demo,
        } = parts;
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
            service: app_engine_service(&settings),
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
            catalogue: Arc::clone(&catalogue),
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
        Self {
            hits: HitCounters::new(&catalogue),
            settings,
            keyring,
            key_source,
            refresher,
            store,
            outage,
            protection,
            metrics,
            clock,
            demo,
            login,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn catalogue(&self) -> &Catalogue {
        self.refresher.catalogue()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Clock seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn keyring(&self) -> &KeyringHandle {
        &self.keyring
    }

    /// Where keys are reloaded from; `None` for an ephemeral keyring.
    pub fn key_source(&self) -> Option<&KeySource> {
        self.key_source.as_ref()
    }

    /// The built-in demo provider (`oauth-broker demo` only).
    pub fn demo(&self) -> Option<&Arc<DemoProvider>> {
        self.demo.as_ref()
    }

    /// Login flows and revocation.
    pub fn login(&self) -> &LoginService {
        &self.login
    }

    /// The refresher, for inspection (tests open AuthIDs with it).
    pub fn refresher(&self) -> &Refresher {
        &self.refresher
    }

    /// Backoff, quota and bulkhead per provider registration, for
    /// inspection.
    pub fn protection(&self) -> &Protection {
        &self.protection
    }

    /// The `/refresh` answer for an AuthID (trimmed): the JSON body the
    /// cache prepared. An in-process hit is answered by [`hit`](Self::hit)
    /// as on the fast path; anything else by the refresher. `client` is the
    /// caller's address, for limiting AuthIDs that fail to open.
    pub async fn refresh(
        &self,
        authid: &str,
        client: Option<IpAddr>,
    ) -> Result<Bytes, RefreshError> {
        if let Some(body) = self.hit(authid.as_bytes()) {
            return Ok(body);
        }
        let answer = self.refresher.refresh(authid, client).await?;
        Ok(answer.json_body())
    }

    /// The in-process cache hit for an AuthID as sent (trimmed bytes, not
    /// checked to be text: bytes that are no AuthID match no cached one):
    /// its JSON body, counted as a `cache_hit`. `None` when the refresher
    /// has to decide (a miss, a login over its limit, a revocation to look
    /// for). Allocates nothing but the body and waits for nothing.
    pub fn hit(&self, authid: &[u8]) -> Option<Bytes> {
        self.refresher.hit_in_process(authid, |hit, expires| {
            self.hits.count(&self.metrics, hit.provider());
            hit.json_body(expires)
        })
    }

    /// `/fetch`: the state of a fetch token, marked fetched when it held an
    /// AuthID. A store failure is noted as an outage.
    pub async fn fetch(&self, token: &FetchToken) -> Result<Option<FetchState>, StoreError> {
        let result = self.login.fetch_store().fetch(token, self.now()).await;
        self.noting_outage(result)
    }

    /// `/token-state`: the state of a fetch token, unchanged.
    pub async fn fetch_state(&self, token: &FetchToken) -> Result<Option<FetchState>, StoreError> {
        let result = self.login.fetch_store().state(token, self.now()).await;
        self.noting_outage(result)
    }

    fn noting_outage<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &result {
            self.outage.failed("reading a fetch token", e);
        }
        result
    }

    /// The store's kind, whether it answers a ping within `timeout`, and
    /// what it reports of itself (a Redis's replicas and eviction policy).
    pub async fn store_status(&self, timeout: Duration) -> StoreStatus {
        let up = matches!(
            tokio::time::timeout(timeout, self.store.ping()).await,
            Ok(Ok(()))
        );
        StoreStatus {
            kind: self.store.kind(),
            up,
            details: self.store.details(),
        }
    }

    /// Metrics as text, gauges brought up to date first; `ready` is the
    /// readiness verdict to show.
    pub fn render_metrics(&self, ready: bool) -> String {
        self.refresher.update_gauges();
        self.metrics.ready.set(i64::from(ready));
        let keyring = self.keyring.current();
        let loaded: Vec<&str> = keyring.keys().iter().map(|k| k.kid()).collect();
        self.metrics.record_keys(
            keyring.primary().kid(),
            &loaded,
            &self.keyring.stats().snapshot(),
        );
        for (kid, counts) in self.keyring.stats().all() {
            self.metrics.record_key_lifecycle(
                &kid,
                counts.first_opened,
                counts.carried_over,
                counts.refused,
            );
        }
        self.metrics.render()
    }

    /// Reloads keys from their source. A failed reload keeps the current
    /// keyring and returns why. When a key disappears, or one is newly
    /// marked compromised, cached AuthID texts are dropped so AuthIDs of a
    /// retired key are opened again (from their carry-over, or refused) at
    /// once.
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
        let current = self.keyring.current();
        let before = kids(&current);
        let after = kids(&keyring);
        // A key newly marked compromised: cached answers of its AuthIDs
        // (carried over) are dropped now, so they get the 401 at once.
        let compromised = !keyring.compromised().is_subset(current.compromised());
        let primary = keyring.primary().kid().to_string();
        self.keyring.replace(keyring);
        if !before.is_subset(&after) || compromised {
            self.refresher.forget_cached_texts();
        }
        tracing::info!(primary = %primary, keys = after.len(), "keys loaded");
    }
}
