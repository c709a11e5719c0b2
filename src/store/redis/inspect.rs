//! `check-config`'s look at a configured Redis: it connects once (bounded)
//! and says the eviction policy and the replicas `INFO` reports, with a
//! warning when the policy can drop entries.

use std::time::Duration;

use super::{NO_EVICTION, RedisStore};
use crate::config::{StoreBackend, StoreSettings};
use crate::store::Store;

/// Longest `check-config` waits for the store.
const PATIENCE: Duration = Duration::from_secs(3);

/// A line about the store's Redis, or `None` for the other backends.
/// Must not be called inside a Tokio runtime.
pub fn check_line(settings: &StoreSettings) -> Option<String> {
    if !matches!(
        settings.backend,
        StoreBackend::Redis { .. } | StoreBackend::RedisHa(_)
    ) {
        return None;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    Some(runtime.block_on(async {
        let store = match RedisStore::open(settings, None) {
            Ok(store) => store,
            Err(e) => return format!("store: {e}"),
        };
        match tokio::time::timeout(PATIENCE, store.ping()).await {
            Ok(Ok(())) => describe(&store),
            Ok(Err(e)) => format!(
                "store: not reachable now ({e}); serve starts anyway and checks the eviction policy when it connects"
            ),
            Err(_) => format!(
                "store: no answer within {} seconds; serve starts anyway and checks the eviction policy when it connects",
                PATIENCE.as_secs()
            ),
        }
    }))
}

fn describe(store: &RedisStore) -> String {
    let facts = store.facts();
    let replicas = facts
        .replicas
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    match facts.eviction_policy.as_deref() {
        Some(NO_EVICTION) => {
            format!("store eviction policy: noeviction; replicas: {replicas}")
        }
        Some(policy) => format!(
            "warning: the store's Redis may evict entries (maxmemory-policy {policy}): rotation records, migrated grants and revocation marks can be lost for good; set maxmemory-policy noeviction (replicas: {replicas})"
        ),
        None => format!(
            "warning: the store's Redis did not report its eviction policy (INFO memory); make sure maxmemory-policy is noeviction (replicas: {replicas})"
        ),
    }
}
