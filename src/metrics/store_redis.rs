//! What the Redis store reports of its replicas and eviction policy
//! (Sentinel, Cluster, `WAIT`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
    pub(super) fn register(&self, registry: &mut Registry) {
        let metrics = self;
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
    }

    pub fn unacknowledged(&self, space: &str) {
        self.unacknowledged_writes
            .get_or_create(&StoreSpaceLabels {
                space: space.to_string(),
            })
            .inc();
    }
}
