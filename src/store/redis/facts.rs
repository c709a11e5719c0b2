//! What the Redis store learns from `INFO` (managed services often refuse
//! `CONFIG GET`): the eviction policy, which must be `noeviction` since the
//! store holds the only copy of some live credentials, and how many
//! replicas the master has, which sets how many must acknowledge a
//! rotation (`STORE_REPLICA_ACKS`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::Value;

use crate::config::ReplicaAcks;
use crate::metrics::StoreRedisMetrics;
use crate::store::Space;

/// The one eviction policy that never drops an entry.
pub const NO_EVICTION: &str = "noeviction";

/// How often `INFO` is read again (at most), from the health check.
pub(super) const READ_INTERVAL: Duration = Duration::from_secs(5);

/// What `INFO` said last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `maxmemory_policy`; on a cluster, the first node's that is not
    /// `noeviction`, if any.
    pub eviction_policy: Option<String>,
    /// `connected_slaves` of the master (on a cluster, the fewest of any
    /// master).
    pub replicas: Option<u32>,
}

impl Facts {
    /// Reads the answers of `INFO replication` and `INFO memory`: text,
    /// or (from a cluster) a map or array of texts, one per node.
    pub fn from_values(values: &[Value]) -> Self {
        let mut texts = Vec::new();
        for value in values {
            collect_texts(value, &mut texts);
        }
        let mut facts = Self::default();
        for text in &texts {
            for line in text.lines() {
                let Some((name, value)) = line.trim().split_once(':') else {
                    continue;
                };
                match name {
                    "maxmemory_policy" => {
                        let worse = facts
                            .eviction_policy
                            .as_deref()
                            .is_none_or(|p| p == NO_EVICTION);
                        if worse {
                            facts.eviction_policy = Some(value.to_string());
                        }
                    }
                    "connected_slaves" => {
                        if let Ok(n) = value.parse::<u32>() {
                            facts.replicas = Some(facts.replicas.map_or(n, |m| m.min(n)));
                        }
                    }
                    _ => {}
                }
            }
        }
        facts
    }

    /// The policy may drop entries (anything but `noeviction`).
    pub fn evicting(&self) -> bool {
        self.eviction_policy
            .as_deref()
            .is_some_and(|p| p != NO_EVICTION)
    }
}

fn collect_texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => out.push(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => {
            items.iter().for_each(|v| collect_texts(v, out));
        }
        Value::Map(pairs) => pairs.iter().for_each(|(_, v)| collect_texts(v, out)),
        _ => {}
    }
}

/// The spaces whose writes wait for replicas: the newest refresh token of
/// a rotating login and a migrated grant, the only copies of live
/// credentials. Their callers keep the value and serve it when the wait
/// falls short, so a failed wait never costs a client its answer.
pub fn durable(space: Space) -> bool {
    matches!(space, Space::Rotation | Space::Legacy)
}

/// The last facts, when they were read, and what was reported of them.
pub(super) struct FactsWatch {
    facts: ArcSwap<Facts>,
    read_at: Mutex<Option<Instant>>,
    reported_policy: Mutex<Option<String>>,
    acks: ReplicaAcks,
    metrics: Option<StoreRedisMetrics>,
}

impl FactsWatch {
    pub(super) fn new(acks: ReplicaAcks, metrics: Option<StoreRedisMetrics>) -> Self {
        Self {
            facts: ArcSwap::from_pointee(Facts::default()),
            read_at: Mutex::new(None),
            reported_policy: Mutex::new(None),
            acks,
            metrics,
        }
    }

    pub(super) fn current(&self) -> Facts {
        Facts::clone(&self.facts.load())
    }

    /// Whether `INFO` is due again; marks it read when it is.
    pub(super) fn due(&self) -> bool {
        let mut at = self.read_at.lock().unwrap_or_else(|e| e.into_inner());
        let due = at.is_none_or(|t| t.elapsed() >= READ_INTERVAL);
        if due {
            *at = Some(Instant::now());
        }
        due
    }

    /// Takes new facts: sets the gauges, and warns once per policy that
    /// can drop entries.
    pub(super) fn update(&self, facts: Facts) {
        if let Some(metrics) = &self.metrics {
            metrics.evicting.set(i64::from(facts.evicting()));
            if let Some(n) = facts.replicas {
                metrics.replicas.set(i64::from(n));
            }
        }
        let mut reported = self
            .reported_policy
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if facts.eviction_policy.is_some() && *reported != facts.eviction_policy {
            if facts.evicting() {
                tracing::warn!(
                    policy = facts.eviction_policy.as_deref().unwrap_or_default(),
                    "the store's Redis may evict entries under memory pressure (maxmemory-policy is not noeviction): rotation records, migrated grants and revocation marks can be lost for good; set maxmemory-policy noeviction"
                );
            } else if reported.is_some() {
                tracing::info!("the store's Redis no longer evicts entries (noeviction)");
            }
            reported.clone_from(&facts.eviction_policy);
        }
        self.facts.store(std::sync::Arc::new(facts));
    }

    /// Replicas a write in `space` waits for.
    pub(super) fn acks_for(&self, space: Space) -> u32 {
        if !durable(space) {
            return 0;
        }
        match self.acks {
            ReplicaAcks::Exactly(n) => n,
            ReplicaAcks::Auto => u32::from(self.facts.load().replicas.unwrap_or(0) > 0),
        }
    }

    /// Counts a durable write the replicas did not acknowledge in time.
    pub(super) fn unacknowledged(&self, space: Space) {
        if let Some(metrics) = &self.metrics {
            metrics.unacknowledged(space.name());
        }
    }

    /// Counts a move to another master, from anywhere.
    pub(super) fn master_changes(&self) -> impl Fn() + Send + 'static {
        let counter = self.metrics.as_ref().map(|m| m.master_changes.clone());
        move || {
            if let Some(counter) = &counter {
                counter.inc();
            }
        }
    }

    /// For `/ready`: the facts and the acknowledgements a rotation waits for.
    pub(super) fn details(&self, topology: &str) -> serde_json::Value {
        let facts = self.current();
        serde_json::json!({
            "topology": topology,
            "eviction_policy": facts.eviction_policy,
            "evicting": facts.evicting(),
            "replicas": facts.replicas,
            "replica_acks": self.acks_for(Space::Rotation),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn one_node() {
        let facts = Facts::from_values(&[
            bulk("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"),
            bulk("# Memory\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n"),
        ]);
        assert_eq!(facts.eviction_policy.as_deref(), Some("noeviction"));
        assert_eq!(facts.replicas, Some(2));
        assert!(!facts.evicting());
    }

    #[test]
    fn a_cluster_reports_its_worst_node() {
        let per_node = |policy: &str, replicas: u32| {
            bulk(&format!(
                "connected_slaves:{replicas}\r\nmaxmemory_policy:{policy}\r\n"
            ))
        };
        let facts = Facts::from_values(&[Value::Map(vec![
            (bulk("a:1"), per_node("noeviction", 1)),
            (bulk("b:2"), per_node("allkeys-lru", 0)),
            (bulk("c:3"), per_node("noeviction", 1)),
        ])]);
        assert_eq!(facts.eviction_policy.as_deref(), Some("allkeys-lru"));
        assert_eq!(facts.replicas, Some(0));
        assert!(facts.evicting());
    }

    #[test]
    fn acknowledgements() {
        let auto = FactsWatch::new(ReplicaAcks::Auto, None);
        assert_eq!(auto.acks_for(Space::Rotation), 0, "unknown: no replica");
        auto.update(Facts {
            eviction_policy: Some("noeviction".into()),
            replicas: Some(2),
        });
        assert_eq!(auto.acks_for(Space::Rotation), 1);
        assert_eq!(auto.acks_for(Space::Legacy), 1);
        assert_eq!(
            auto.acks_for(Space::Token),
            0,
            "a cache entry does not wait"
        );
        let two = FactsWatch::new(ReplicaAcks::Exactly(2), None);
        assert_eq!(two.acks_for(Space::Rotation), 2);
        assert_eq!(
            FactsWatch::new(ReplicaAcks::Exactly(0), None).acks_for(Space::Rotation),
            0
        );
    }
}
