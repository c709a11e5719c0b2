//! Prometheus metrics. Labels carry only provider ids, key ids, routes,
//! statuses and outcome names: never a token, an AuthID or an address.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub provider: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    pub provider: String,
    /// `current` or `previous`.
    pub client: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub kid: String,
    /// `primary` (seals new AuthIDs), `secondary` (loaded, opens only) or
    /// `retired` (held or used before, no longer loaded: retired or removed).
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOpLabels {
    pub op: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOpLabel {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabels {
    pub kind: String,
}

type HistogramFamily = Family<ProviderLabels, Histogram, fn() -> Histogram>;

// --- The Redis store's replication and memory (Sentinel, Cluster, WAIT).

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreSpaceLabels {
    pub space: String,
}

/// What the Redis store reports of its replicas and eviction policy.
#[derive(Clone, Default)]
pub struct StoreRedisMetrics {
    /// Durable writes the replicas did not acknowledge within the bound.
    pub unacknowledged_writes: Family<StoreSpaceLabels, Counter>,
    /// 1 when Redis's eviction policy may drop entries.
    pub evicting: Gauge,
    /// Replicas the master reports connected.
    pub replicas: Gauge,
    /// Moves to another master named by the sentinels.
    pub master_changes: Counter,
}

impl StoreRedisMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "store_unacknowledged_writes",
            "Rotations and migrated grants written to Redis that STORE_REPLICA_ACKS replicas did not acknowledge within STORE_TIMEOUT_MS (the client was served; the instance keeps the rotation), by space",
            metrics.unacknowledged_writes.clone(),
        );
        registry.register(
            "store_evicting",
            "1 when the store's Redis has a maxmemory-policy other than noeviction, so it may drop rotation records and revocation marks",
            metrics.evicting.clone(),
        );
        registry.register(
            "store_replicas",
            "Replicas the store's Redis master reports connected (the fewest of any master on a cluster)",
            metrics.replicas.clone(),
        );
        registry.register(
            "store_master_changes",
            "Moves to another Redis master named by the sentinels",
            metrics.master_changes.clone(),
        );
        metrics
    }

    pub fn unacknowledged(&self, space: &str) {
        self.unacknowledged_writes
            .get_or_create(&StoreSpaceLabels {
                space: space.to_string(),
            })
            .inc();
    }
}
// --- end of the Redis store's metrics.

/// Counter handles of a two-label family, kept by label value, so counting
/// a series seen before is two hash lookups under a read lock and allocates
/// nothing (the cache-hit path of `/refresh` counts twice per request).
/// Label values are bounded (provider ids, routes, statuses, outcomes).
pub struct Counters<L, K> {
    family: Family<L, Counter>,
    handles: RwLock<HashMap<String, HashMap<K, Counter>>>,
    labels: fn(&str, &K) -> L,
}

impl<L, K> Counters<L, K>
where
    L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    K: Hash + Eq,
{
    fn new(labels: fn(&str, &K) -> L) -> Self {
        Self {
            family: Family::default(),
            handles: RwLock::new(HashMap::new()),
            labels,
        }
    }

    pub fn inc<Q>(&self, first: &str, second: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let handles = self.handles.read().unwrap_or_else(|e| e.into_inner());
        if let Some(counter) = handles.get(first).and_then(|m| m.get(second)) {
            counter.inc();
            return;
        }
        drop(handles);
        self.handle(first, second).inc();
    }

    /// The series' counter itself (a shared atomic), for a caller that
    /// keeps it and counts without any lookup.
    pub fn handle<Q>(&self, first: &str, second: &Q) -> Counter
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let handles = self.handles.read().unwrap_or_else(|e| e.into_inner());
        if let Some(counter) = handles.get(first).and_then(|m| m.get(second)) {
            return counter.clone();
        }
        drop(handles);
        let second = second.to_owned();
        let counter = self
            .family
            .get_or_create(&(self.labels)(first, &second))
            .clone();
        self.handles
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(first.to_string())
            .or_default()
            .insert(second, counter.clone());
        counter
    }
}

// The signature is `fn(&str, &K)` with K = String, as `Counters` stores it.
#[allow(clippy::ptr_arg)]
fn outcome_labels(provider: &str, outcome: &String) -> OutcomeLabels {
    OutcomeLabels {
        provider: provider.to_string(),
        outcome: outcome.clone(),
    }
}

// The signature is `fn(&str, &K)` with K = String, as `Counters` stores it.
#[allow(clippy::ptr_arg)]
fn client_labels(provider: &str, client: &String) -> ClientLabels {
    ClientLabels {
        provider: provider.to_string(),
        client: client.clone(),
    }
}

fn route_labels(route: &str, status: &u16) -> RouteLabels {
    RouteLabels {
        route: route.to_string(),
        status: *status,
    }
}

fn latency_histogram() -> Histogram {
    // 5 ms to ~20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

fn store_histogram() -> Histogram {
    // 100 µs (an embedded read, a Redis round trip on one host) to 1 s
    // (four times the default STORE_TIMEOUT_MS).
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
}

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
        let mut registry = Registry::with_prefix("oauth_broker");
        let http_requests = Counters::new(route_labels);
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.family.clone(),
        );
        let refreshes = Counters::new(outcome_labels);
        registry.register(
            "refreshes",
            "Refresh requests by provider and outcome (cache_hit, shared, refreshed, rotated, reauthorize, throttled, limited, store_unavailable, error, timeout, misconfigured, bad_authid)",
            refreshes.family.clone(),
        );
        let upstream_latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_duration_seconds",
            "Time for a provider's token endpoint to answer",
            upstream_latency.clone(),
        );
        let throttled = Counters::new(outcome_labels);
        registry.register(
            "throttled",
            "Calls not made or refused for throttling, by provider and source (provider, backoff, quota, busy)",
            throttled.family.clone(),
        );
        let rotations = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "rotations",
            "Refresh tokens rotated by the provider",
            rotations.clone(),
        );
        let logins_started = Family::<ProviderLabels, Counter>::default();
        registry.register("logins_started", "Logins started", logins_started.clone());
        let logins_finished = Counters::new(outcome_labels);
        registry.register(
            "logins_finished",
            "Logins finished, by result",
            logins_finished.family.clone(),
        );
        let authids_opened = Family::<KeyLabels, Gauge>::default();
        registry.register(
            "authids_opened",
            "AuthIDs opened per key since start, with the key's state (primary, secondary, retired); a secondary key that stays flat for long is safe to retire",
            authids_opened.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when the instance is ready (as GET /ready answers), else 0",
            ready.clone(),
        );
        let authids_by_client = Counters::new(client_labels);
        registry.register(
            "authids_opened_by_client",
            "AuthIDs opened per provider and client (current, previous: an earlier registration in previousClients); a previous client that stays flat for long can be removed",
            authids_by_client.family.clone(),
        );
        let legacy_exports = Family::<ResultLabels, Counter>::default();
        registry.register(
            "legacy_exports",
            "AuthIDs of the old App Engine service looked up there, by outcome (migrated, refetched, unknown, api_key, unavailable, bad_answer, not_configured); flat at zero means the old service is no longer needed",
            legacy_exports.clone(),
        );
        let legacy_imports = Family::<ResultLabels, Counter>::default();
        registry.register(
            "legacy_imports",
            "Rotated tokens of migrated logins pushed back to the old service, by outcome (imported, unknown, api_key, unavailable, bad_answer)",
            legacy_imports.clone(),
        );
        let active_backoffs = Gauge::default();
        registry.register(
            "active_backoffs",
            "Providers blocked by backoff now",
            active_backoffs.clone(),
        );
        let cached_tokens = Gauge::default();
        registry.register(
            "cached_tokens",
            "AuthID texts with a cached access token (AuthIDs of one login share a token, so this can exceed the tokens held)",
            cached_tokens.clone(),
        );
        let untrusted_forwarded = Counter::default();
        registry.register(
            "untrusted_forwarded",
            "Requests whose X-Forwarded-For was ignored because the peer is not in TRUSTED_PROXIES",
            untrusted_forwarded.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now (at most MAX_CONNECTIONS)",
            open_connections.clone(),
        );
        let store_operations = Family::<StoreOpLabels, Counter>::default();
        registry.register(
            "store_operations",
            "Store operations by operation and outcome (ok, error)",
            store_operations.clone(),
        );
        let store_errors = Family::<StoreErrorLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Failed store operations by kind (timeout, unavailable, failed)",
            store_errors.clone(),
        );
        let store_duration: Family<StoreOpLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(store_histogram);
        registry.register(
            "store_duration_seconds",
            "Time a store operation took, timeouts included",
            store_duration.clone(),
        );
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "1 when the store's last operation or health check got an answer, 0 when it timed out or could not reach the store",
            store_up.clone(),
        );
        let store_lock_waits = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "store_lock_waits",
            "Refreshes that found a login's lock held by another instance and waited for its answer",
            store_lock_waits.clone(),
        );
        let rotations_unrecorded = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "rotations_unrecorded",
            "Rotated refresh tokens the store did not take (the client got them in v2_authid)",
            rotations_unrecorded.clone(),
        );
        let store_redis = StoreRedisMetrics::register(&mut registry);
        Self {
            registry: Mutex::new(registry),
            http_requests,
            refreshes,
            upstream_latency,
            throttled,
            rotations,
            logins_started,
            logins_finished,
            authids_opened,
            key_states: Mutex::new(HashMap::new()),
            ready,
            authids_by_client,
            legacy_exports,
            legacy_imports,
            active_backoffs,
            cached_tokens,
            untrusted_forwarded,
            open_connections,
            store_operations,
            store_errors,
            store_duration,
            store_up,
            store_lock_waits,
            rotations_unrecorded,
            store_redis,
        }
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

    pub fn legacy_export(&self, outcome: &str) {
        self.legacy_exports
            .get_or_create(&ResultLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn legacy_import(&self, outcome: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key_lines(metrics: &Metrics) -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("oauth_broker_authids_opened{"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_key_has_one_series_under_its_current_state() {
        let metrics = Metrics::new();
        let opened = BTreeMap::from([("old".to_string(), 7)]);
        metrics.record_keys("old", &["old"], &opened);
        assert_eq!(
            key_lines(&metrics),
            [r#"oauth_broker_authids_opened{kid="old",state="primary"} 7"#]
        );

        // Rotation: a new primary; the old key opens on as secondary.
        metrics.record_keys("new", &["old", "new"], &opened);
        let mut lines = key_lines(&metrics);
        lines.sort();
        assert_eq!(
            lines,
            [
                r#"oauth_broker_authids_opened{kid="new",state="primary"} 0"#,
                r#"oauth_broker_authids_opened{kid="old",state="secondary"} 7"#,
            ]
        );

        // Retired (or removed from the key directory): still shown, as such.
        metrics.record_keys("new", &["new"], &opened);
        let mut lines = key_lines(&metrics);
        lines.sort();
        assert_eq!(
            lines,
            [
                r#"oauth_broker_authids_opened{kid="new",state="primary"} 0"#,
                r#"oauth_broker_authids_opened{kid="old",state="retired"} 7"#,
            ]
        );
    }

    #[test]
    fn ready_is_a_gauge_named_for_alerts() {
        let metrics = Metrics::new();
        metrics.ready.set(1);
        assert!(
            metrics
                .render()
                .lines()
                .any(|l| l == "oauth_broker_ready 1")
        );
    }
}
