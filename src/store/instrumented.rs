//! The store as the broker uses it: any backend, with every call bounded
//! by `STORE_TIMEOUT_MS`, counted and timed in the metrics, and its health
//! (reachable or not, and the last kind of failure) kept for `/ready`.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;

use super::{Store, StoreError, StoreKey, StoreResult, Versioned};
use crate::metrics::{Metrics, StoreErrorLabels, StoreOpLabel, StoreOpLabels};

/// The store's state for `/ready` and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreState {
    /// `memory`, `embedded` or `redis`.
    pub kind: &'static str,
    /// The last operation or health check got an answer.
    pub up: bool,
    /// The kind of the last failure (`timeout`, `unavailable`, `failed`),
    /// if any operation has failed since start.
    pub last_error_kind: Option<&'static str>,
}

/// A cloneable view of the store's health, for whoever reports it.
#[derive(Clone)]
pub struct StoreHealth(Arc<HealthInner>);

struct HealthInner {
    kind: &'static str,
    up: AtomicBool,
    /// 0 = none, else 1 + index in `ERROR_KINDS`.
    last_error: AtomicU8,
    gauge: Gauge,
}

const ERROR_KINDS: [&str; 3] = ["timeout", "unavailable", "failed"];

fn error_index(e: &StoreError) -> usize {
    match e {
        StoreError::Timeout => 0,
        StoreError::Unavailable(_) => 1,
        StoreError::Failed(_) => 2,
    }
}

impl StoreHealth {
    pub fn state(&self) -> StoreState {
        let last = self.0.last_error.load(Ordering::Relaxed);
        StoreState {
            kind: self.0.kind,
            up: self.0.up.load(Ordering::Relaxed),
            last_error_kind: ERROR_KINDS.get(usize::from(last).wrapping_sub(1)).copied(),
        }
    }

    fn answered(&self) {
        if !self.0.up.swap(true, Ordering::Relaxed) {
            self.0.gauge.set(1);
            tracing::info!(store = self.0.kind, "the store answers");
        }
    }

    fn failed(&self, e: &StoreError) {
        let index = error_index(e);
        self.0
            .last_error
            .store(u8::try_from(index + 1).unwrap_or(0), Ordering::Relaxed);
        // A `failed` answer (a corrupt entry, a script error) is still an
        // answer: the store is reachable.
        if matches!(e, StoreError::Failed(_)) {
            self.answered();
        } else if self.0.up.swap(false, Ordering::Relaxed) {
            self.0.gauge.set(0);
            tracing::warn!(store = self.0.kind, error = %e, "the store does not answer");
        }
    }
}

/// The metric handles of one operation, made once so that a call only
/// touches counters (no label lookup, no allocation).
struct OpMetrics {
    ok: Counter,
    error: Counter,
    duration: Histogram,
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Put,
    PutNew,
    Take,
    Delete,
    DeleteIf,
    GetVersioned,
    PutVersioned,
    Ping,
}

const OPS: [(Op, &str); 9] = [
    (Op::Get, "get"),
    (Op::Put, "put"),
    (Op::PutNew, "put_new"),
    (Op::Take, "take"),
    (Op::Delete, "delete"),
    (Op::DeleteIf, "delete_if"),
    (Op::GetVersioned, "get_versioned"),
    (Op::PutVersioned, "put_versioned"),
    (Op::Ping, "ping"),
];

pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    timeout: Duration,
    health: StoreHealth,
    ops: Vec<OpMetrics>,
    errors: Vec<Counter>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn Store>, timeout: Duration, metrics: &Metrics) -> Self {
        let ops = OPS
            .iter()
            .map(|(_, name)| {
                let counter = |outcome: &str| {
                    metrics
                        .store_operations
                        .get_or_create(&StoreOpLabels {
                            op: (*name).to_string(),
                            outcome: outcome.to_string(),
                        })
                        .clone()
                };
                OpMetrics {
                    ok: counter("ok"),
                    error: counter("error"),
                    duration: metrics
                        .store_duration
                        .get_or_create(&StoreOpLabel {
                            op: (*name).to_string(),
                        })
                        .clone(),
                }
            })
            .collect();
        let errors = ERROR_KINDS
            .iter()
            .map(|kind| {
                metrics
                    .store_errors
                    .get_or_create(&StoreErrorLabels {
                        kind: (*kind).to_string(),
                    })
                    .clone()
            })
            .collect();
        metrics.store_up.set(0);
        let health = StoreHealth(Arc::new(HealthInner {
            kind: inner.kind(),
            up: AtomicBool::new(false),
            last_error: AtomicU8::new(0),
            gauge: metrics.store_up.clone(),
        }));
        Self {
            inner,
            timeout,
            health,
            ops,
            errors,
        }
    }

    /// A handle on the store's health that outlives borrows of the store.
    pub fn health(&self) -> StoreHealth {
        self.health.clone()
    }

    pub fn state(&self) -> StoreState {
        self.health.state()
    }

    /// The bound of one operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Pings the store every `interval` while it exists, so its health is
    /// known (and a lost connection re-made) even when nothing else asks.
    pub fn spawn_health_check(self: &Arc<Self>, interval: Duration) {
        let store: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(store) = store.upgrade() else {
                    return;
                };
                let _ = store.ping().await;
            }
        });
    }

    async fn call<T>(&self, op: Op, future: BoxFuture<'_, StoreResult<T>>) -> StoreResult<T> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, future)
            .await
            .unwrap_or(Err(StoreError::Timeout));
        let metrics = &self.ops[op as usize];
        metrics.duration.observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => {
                metrics.ok.inc();
                self.health.answered();
            }
            Err(e) => {
                metrics.error.inc();
                self.errors[error_index(e)].inc();
                self.health.failed(e);
            }
        }
        result
    }
}

impl Store for InstrumentedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(self.call(Op::Get, self.inner.get(key)))
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.call(Op::Put, self.inner.put(key, value, ttl)))
    }

    fn put_new<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(self.call(Op::PutNew, self.inner.put_new(key, value, ttl)))
    }

    fn take<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(self.call(Op::Take, self.inner.take(key)))
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.call(Op::Delete, self.inner.delete(key)))
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(self.call(Op::DeleteIf, self.inner.delete_if(key, expected)))
    }

    fn get_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        Box::pin(self.call(Op::GetVersioned, self.inner.get_versioned(key)))
    }

    fn put_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Versioned,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(self.call(Op::PutVersioned, self.inner.put_versioned(key, value, ttl)))
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(self.call(Op::Ping, self.inner.ping()))
    }

    fn details(&self) -> Option<serde_json::Value> {
        self.inner.details()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Space};

    /// A backend that never answers.
    struct Silent;

    impl Store for Silent {
        fn kind(&self) -> &'static str {
            "silent"
        }
        fn get<'a>(&'a self, _: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
            Box::pin(std::future::pending())
        }
        fn put<'a>(
            &'a self,
            _: &'a StoreKey,
            _: Vec<u8>,
            _: Duration,
        ) -> BoxFuture<'a, StoreResult<()>> {
            Box::pin(std::future::pending())
        }
        fn put_new<'a>(
            &'a self,
            _: &'a StoreKey,
            _: Vec<u8>,
            _: Duration,
        ) -> BoxFuture<'a, StoreResult<bool>> {
            Box::pin(std::future::pending())
        }
        fn take<'a>(&'a self, _: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
            Box::pin(std::future::pending())
        }
        fn delete<'a>(&'a self, _: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>> {
            Box::pin(std::future::pending())
        }
        fn delete_if<'a>(
            &'a self,
            _: &'a StoreKey,
            _: &'a [u8],
        ) -> BoxFuture<'a, StoreResult<bool>> {
            Box::pin(std::future::pending())
        }
        fn get_versioned<'a>(
            &'a self,
            _: &'a StoreKey,
        ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
            Box::pin(std::future::pending())
        }
        fn put_versioned<'a>(
            &'a self,
            _: &'a StoreKey,
            _: Versioned,
            _: Duration,
        ) -> BoxFuture<'a, StoreResult<bool>> {
            Box::pin(std::future::pending())
        }
        fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
            Box::pin(std::future::pending())
        }
    }

    const KEY: StoreKey = StoreKey::new(Space::Token, [3; 32]);

    #[tokio::test]
    async fn a_silent_store_times_out_and_is_down() {
        let metrics = Metrics::new();
        let store = InstrumentedStore::new(Arc::new(Silent), Duration::from_millis(20), &metrics);
        assert_eq!(store.get(&KEY).await, Err(StoreError::Timeout));
        assert_eq!(
            store.state(),
            StoreState {
                kind: "silent",
                up: false,
                last_error_kind: Some("timeout")
            }
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"oauth_broker_store_operations_total{op="get",outcome="error"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"oauth_broker_store_errors_total{kind="timeout"} 1"#));
        assert!(text.contains("oauth_broker_store_up 0"));
    }

    #[tokio::test]
    async fn answers_are_counted_timed_and_mark_the_store_up() {
        let metrics = Metrics::new();
        let store = InstrumentedStore::new(
            Arc::new(MemoryStore::default()),
            Duration::from_millis(250),
            &metrics,
        );
        assert!(!store.state().up, "unknown until the first answer");
        store
            .put(&KEY, b"v".to_vec(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(store.get(&KEY).await, Ok(Some(b"v".to_vec())));
        assert_eq!(
            store.state(),
            StoreState {
                kind: "memory",
                up: true,
                last_error_kind: None
            }
        );
        let text = metrics.render();
        assert!(
            text.contains(r#"oauth_broker_store_operations_total{op="get",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"oauth_broker_store_duration_seconds_count{op="put"} 1"#));
        assert!(
            text.contains(r#"oauth_broker_store_duration_seconds_bucket{le="0.0001",op="get"}"#)
                || text.contains(
                    r#"oauth_broker_store_duration_seconds_bucket{op="get",le="0.0001"}"#
                )
        );
        assert!(text.contains("oauth_broker_store_up 1"));
        assert!(
            serde_json::to_string(&store.state())
                .unwrap()
                .contains(r#""kind":"memory""#)
        );
    }
}
