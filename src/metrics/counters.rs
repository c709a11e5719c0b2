//! Counter handles kept by label value, so the cache-hit path counts
//! without allocating, and the label and histogram constructors the
//! families are made with.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use super::labels::{ClientLabels, OutcomeLabels, RouteLabels};

/// Counter handles of a two-label family, kept by label value, so counting
/// a series seen before is two hash lookups under a read lock and allocates
/// nothing (the cache-hit path of `/refresh` counts twice per request).
/// Label values are bounded (provider ids, routes, statuses, outcomes).
pub struct Counters<L, K> {
    pub(super) family: Family<L, Counter>,
    handles: RwLock<HashMap<String, HashMap<K, Counter>>>,
    labels: fn(&str, &K) -> L,
}

impl<L, K> Counters<L, K>
where
    L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    K: Hash + Eq,
{
    pub(super) fn new(labels: fn(&str, &K) -> L) -> Self {
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
pub(super) fn outcome_labels(provider: &str, outcome: &String) -> OutcomeLabels {
    OutcomeLabels {
        provider: provider.to_string(),
        outcome: outcome.clone(),
    }
}

// The signature is `fn(&str, &K)` with K = String, as `Counters` stores it.
#[allow(clippy::ptr_arg)]
pub(super) fn client_labels(provider: &str, client: &String) -> ClientLabels {
    ClientLabels {
        provider: provider.to_string(),
        client: client.clone(),
    }
}

pub(super) fn route_labels(route: &str, status: &u16) -> RouteLabels {
    RouteLabels {
        route: route.to_string(),
        status: *status,
    }
}

pub(super) fn latency_histogram() -> Histogram {
    // 5 ms to ~20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

pub(super) fn store_histogram() -> Histogram {
    // 100 µs (an embedded read, a Redis round trip on one host) to 1 s
    // (four times the default STORE_TIMEOUT_MS).
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
}
