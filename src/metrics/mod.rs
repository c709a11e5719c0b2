//! Prometheus metrics. Labels carry only provider ids, key ids, routes,
//! statuses and outcome names: never a token, an AuthID or an address.
//! The label sets are in `labels`, the allocation-free counter handles in
//! `counters`; every series is registered here, in the order `/metrics`
//! shows them.

mod counters;
mod labels;
mod store_redis;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use counters::Counters;
use counters::{client_labels, latency_histogram, outcome_labels, route_labels, store_histogram};
pub use labels::{
    ClientLabels, KeyLabels, KidLabels, OutcomeLabels, ProviderLabels, ResultLabels, RouteLabels,
    StoreErrorLabels, StoreOpLabel, StoreOpLabels,
};
pub use store_redis::{StoreRedisMetrics, StoreSpaceLabels};

type HistogramFamily = Family<ProviderLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Mutex<Registry>,
    pub http_requests: Counters<RouteLabels, u16>,
    pub refreshes: Counters<OutcomeLabels, String>,
    pub upstream_latency: HistogramFamily,
    pub throttled: Counters<OutcomeLabels, String>,
    pub rotations: Family<ProviderLabels, Counter>,
    pub logins_started: Family<ProviderLabels, Counter>,
    pub logins_finished: Counters<OutcomeLabels, String>,
    pub authids_opened: Family<KeyLabels, Gauge>,
    /// The `state` each key was last shown with, so a key that changes
    /// state keeps a single series.
    key_states: Mutex<HashMap<String, &'static str>>,
    pub authids_first_opened: Family<KidLabels, Gauge>,
    pub authids_carried_over: Family<KidLabels, Gauge>,
    pub authids_retired_refused: Family<KidLabels, Gauge>,
    pub ready: Gauge,
    pub authids_by_client: Counters<ClientLabels, String>,
    pub legacy_exports: Family<ResultLabels, Counter>,
    pub legacy_imports: Family<ResultLabels, Counter>,
    pub active_backoffs: Gauge,
    pub cached_tokens: Gauge,
    pub untrusted_forwarded: Counter,
    pub open_connections: Gauge,
    pub store_operations: Family<StoreOpLabels, Counter>,
    pub store_errors: Family<StoreErrorLabels, Counter>,
    pub store_duration: Family<StoreOpLabel, Histogram, fn() -> Histogram>,
    pub store_up: Gauge,
    pub store_lock_waits: Family<ProviderLabels, Counter>,
    pub rotations_unrecorded: Family<ProviderLabels, Counter>,
    pub store_redis: StoreRedisMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self {
            registry: Mutex::new(Registry::with_prefix("oauth_broker")),
            http_requests: Counters::new(route_labels),
            refreshes: Counters::new(outcome_labels),
            upstream_latency: Family::new_with_constructor(latency_histogram),
            throttled: Counters::new(outcome_labels),
            rotations: Family::default(),
            logins_started: Family::default(),
            logins_finished: Counters::new(outcome_labels),
            authids_opened: Family::default(),
            key_states: Mutex::new(HashMap::new()),
            authids_first_opened: Family::default(),
            authids_carried_over: Family::default(),
            authids_retired_refused: Family::default(),
            ready: Gauge::default(),
            authids_by_client: Counters::new(client_labels),
            legacy_exports: Family::default(),
            legacy_imports: Family::default(),
            active_backoffs: Gauge::default(),
            cached_tokens: Gauge::default(),
            untrusted_forwarded: Counter::default(),
            open_connections: Gauge::default(),
            store_operations: Family::default(),
            store_errors: Family::default(),
            store_duration: Family::new_with_constructor(store_histogram),
            store_up: Gauge::default(),
            store_lock_waits: Family::default(),
            rotations_unrecorded: Family::default(),
            store_redis: StoreRedisMetrics::default(),
        };
        // Clones share their series: registering them registers the fields.
        {
            let mut registry = metrics.registry.lock().unwrap_or_else(|e| e.into_inner());
            metrics.register_traffic(&mut registry);
            metrics.register_authids(&mut registry);
            metrics.register_state(&mut registry);
            metrics.store_redis.register(&mut registry);
        }
        metrics
    }

    /// Requests, provider calls and logins.
    fn register_traffic(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            self.http_requests.family.clone(),
        );
        registry.register(
            "refreshes",
            "Refresh requests by provider and outcome (cache_hit, shared, refreshed, rotated, reauthorize, throttled, limited, store_unavailable, error, timeout, misconfigured, bad_authid)",
            self.refreshes.family.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time for a provider's token endpoint to answer",
            self.upstream_latency.clone(),
        );
        registry.register(
            "throttled",
            "Calls not made or refused for throttling, by provider and source (provider, backoff, quota, busy)",
            self.throttled.family.clone(),
        );
        registry.register(
            "rotations",
            "Refresh tokens rotated by the provider",
            self.rotations.clone(),
        );
        registry.register(
            "logins_started",
            "Logins started",
            self.logins_started.clone(),
        );
        registry.register(
            "logins_finished",
            "Logins finished, by result",
            self.logins_finished.family.clone(),
        );
    }

    /// AuthIDs opened, readiness and the old App Engine service.
    fn register_authids(&self, registry: &mut Registry) {
        registry.register(
            "authids_opened",
            "AuthIDs opened per key since start, with the key's state (primary, secondary, retired); a secondary key that stays flat for long is safe to retire",
            self.authids_opened.clone(),
        );
        registry.register(
            "authids_first_opened",
            "AuthIDs of a non-primary key opened since start while not yet carried over, per key; once flat for your users' longest backup interval, the key can be retired",
            self.authids_first_opened.clone(),
        );
        registry.register(
            "authids_carried_over",
            "AuthIDs of a retired or deleted key served from their carry-over since start, per key",
            self.authids_carried_over.clone(),
        );
        registry.register(
            "authids_retired_refused",
            "AuthIDs of a retired key refused since start, per key: never carried over, or the key was retired as compromised",
            self.authids_retired_refused.clone(),
        );
        registry.register(
            "ready",
            "1 when the instance is ready (as GET /ready answers), else 0",
            self.ready.clone(),
        );
        registry.register(
            "authids_opened_by_client",
            "AuthIDs opened per provider and client (current, previous: an earlier registration in previousClients); a previous client that stays flat for long can be removed",
            self.authids_by_client.family.clone(),
        );
        registry.register(
            "legacy_exports",
            "AuthIDs of the old App Engine service looked up there, by outcome (migrated, refetched, unknown, api_key, unavailable, bad_answer, not_configured); flat at zero means the old service is no longer needed",
            self.legacy_exports.clone(),
        );
        registry.register(
            "legacy_imports",
            "Rotated tokens of migrated logins pushed back to the old service, by outcome (imported, unknown, api_key, unavailable, bad_answer)",
            self.legacy_imports.clone(),
        );
    }

    /// The instance's state and the store.
    fn register_state(&self, registry: &mut Registry) {
        registry.register(
            "active_backoffs",
            "Providers blocked by backoff now",
            self.active_backoffs.clone(),
        );
        registry.register(
            "cached_tokens",
            "AuthID texts with a cached access token (AuthIDs of one login share a token, so this can exceed the tokens held)",
            self.cached_tokens.clone(),
        );
        registry.register(
            "untrusted_forwarded",
            "Requests whose X-Forwarded-For was ignored because the peer is not in TRUSTED_PROXIES",
            self.untrusted_forwarded.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now (at most MAX_CONNECTIONS)",
            self.open_connections.clone(),
        );
        registry.register(
            "store_operations",
            "Store operations by operation and outcome (ok, error)",
            self.store_operations.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store operations by kind (timeout, unavailable, failed)",
            self.store_errors.clone(),
        );
        registry.register(
            "store_duration_seconds",
            "Time a store operation took, timeouts included",
            self.store_duration.clone(),
        );
        registry.register(
            "store_up",
            "1 when the store's last operation or health check got an answer, 0 when it timed out or could not reach the store",
            self.store_up.clone(),
        );
        registry.register(
            "store_lock_waits",
            "Refreshes that found a login's lock held by another instance and waited for its answer",
            self.store_lock_waits.clone(),
        );
        registry.register(
            "rotations_unrecorded",
            "Rotated refresh tokens the store did not take (the client got them in v2_authid)",
            self.rotations_unrecorded.clone(),
        );
    }

    pub fn refresh(&self, provider: &str, outcome: &str) {
        self.refreshes.inc(provider, outcome);
    }

    pub fn throttle(&self, provider: &str, source: &str) {
        self.throttled.inc(provider, source);
    }

    pub fn authid_opened(&self, provider: &str, client: &str) {
        self.authids_by_client.inc(provider, client);
    }

    pub fn app_engine_export(&self, outcome: &str) {
        self.legacy_exports
            .get_or_create(&ResultLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn app_engine_import(&self, outcome: &str) {
        self.legacy_imports
            .get_or_create(&ResultLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn provider(provider: &str) -> ProviderLabels {
        ProviderLabels {
            provider: provider.to_string(),
        }
    }

    /// Sets `authids_opened` for every key this instance knows: the keys
    /// loaded now and those it held or opened with before (`retired`).
    pub fn record_keys(&self, primary: &str, loaded: &[&str], opened: &BTreeMap<String, u64>) {
        let mut states = self.key_states.lock().unwrap_or_else(|e| e.into_inner());
        for kid in loaded {
            states.entry((*kid).to_string()).or_insert("secondary");
        }
        for kid in opened.keys() {
            states.entry(kid.clone()).or_insert("secondary");
        }
        for (kid, shown) in states.iter_mut() {
            let state = if kid == primary {
                "primary"
            } else if loaded.contains(&kid.as_str()) {
                "secondary"
            } else {
                "retired"
            };
            if *shown != state {
                self.authids_opened.remove(&KeyLabels {
                    kid: kid.clone(),
                    state: shown,
                });
                *shown = state;
            }
            let count = opened.get(kid).copied().unwrap_or(0);
            self.authids_opened
                .get_or_create(&KeyLabels {
                    kid: kid.clone(),
                    state,
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Sets the carry-over series of one key: first openings, AuthIDs
    /// served from carry-overs, AuthIDs of the retired key refused.
    pub fn record_key_lifecycle(&self, kid: &str, first: u64, carried: u64, refused: u64) {
        let labels = KidLabels {
            kid: kid.to_string(),
        };
        for (family, value) in [
            (&self.authids_first_opened, first),
            (&self.authids_carried_over, carried),
            (&self.authids_retired_refused, refused),
        ] {
            family
                .get_or_create(&labels)
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
