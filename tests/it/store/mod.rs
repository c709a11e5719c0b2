//! The store backends against real storage: one conformance suite run
//! against memory, an embedded store in a temporary directory and a real
//! Redis, then what only one backend has (reopening, a second process and
//! `kill -9` for the embedded store; passwords, key prefixes, outages and
//! reconnection for Redis).

mod capacity;
mod cluster;
mod conformance;
mod embedded;
mod eviction;
mod ha_shared;
mod redis;
mod sentinel;

use std::sync::Arc;
use std::time::Duration;

use oauth_broker::config::{StoreBackend, StoreSettings};
use oauth_broker::store::{Space, StoreKey};
use secrecy::SecretString;

pub const HOUR: Duration = Duration::from_secs(3600);

/// A key whose id is `n` spread over 32 bytes, unique per (space, n).
pub fn key(space: Space, n: u32) -> StoreKey {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[31] = 0x5a;
    StoreKey::new(space, id)
}

pub fn redis_settings(url: &str, prefix: &str) -> StoreSettings {
    StoreSettings {
        backend: StoreBackend::Redis {
            url: SecretString::from(url.to_string()),
            shown: "redis (test)".into(),
        },
        prefix: prefix.into(),
        timeout: Duration::from_millis(250),
        ..StoreSettings::memory()
    }
}

pub fn metrics() -> Arc<oauth_broker::metrics::Metrics> {
    Arc::new(oauth_broker::metrics::Metrics::new())
}
