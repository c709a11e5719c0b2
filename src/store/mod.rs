//! The store (SPEC 8): the state several instances share and that outlives
//! a restart — the newest refresh token of rotating logins, the access
//! token each login was last given, provider backoff windows, per-login
//! refresh locks, the `/fetch` rendezvous, used login states and revoked
//! logins.
//!
//! The store is a small key-value interface with the few atomic operations
//! the broker needs; every backend (memory, embedded, Redis) offers the
//! same ones with the same meaning. It never sees a secret: callers make
//! keys with an HMAC under a secret the store does not hold, and encrypt
//! values under keys derived from secrets inside the user's AuthID (or the
//! client's fetch token). The store's TTL only collects garbage; callers
//! that need an exact deadline keep it inside the value and check it
//! against the application clock.

pub mod embedded;
pub mod instrumented;
pub mod memory;
mod record;
pub mod redis;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::{StoreBackend, StoreSettings};
use crate::metrics::Metrics;

pub use embedded::EmbeddedStore;
pub use instrumented::{InstrumentedStore, StoreHealth, StoreState};
pub use memory::MemoryStore;
pub use redis::RedisStore;

/// How often the store is pinged when nothing else uses it.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Opens the configured store, wrapped so that every call is bounded and
/// measured, and starts its health check. A Redis that is down does not
/// stop the start (the store connects when it can); an embedded store
/// whose `DATA_DIR` another process holds does. The embedded store stays
/// locked until the returned store (and every clone of it) is dropped.
pub async fn open(
    settings: &StoreSettings,
    metrics: Arc<Metrics>,
) -> Result<Arc<InstrumentedStore>, String> {
    let inner: Arc<dyn Store> = match &settings.backend {
        StoreBackend::Memory => Arc::new(MemoryStore::default()),
        StoreBackend::Embedded { dir } => {
            let dir = dir.clone();
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir))
                .await
                .map_err(|e| format!("opening the store stopped: {e}"))??;
            Arc::new(store)
        }
        StoreBackend::Redis { .. } | StoreBackend::RedisHa(_) => Arc::new(RedisStore::open(
            settings,
            Some(metrics.store_redis.clone()),
        )?),
    };
    let store = Arc::new(InstrumentedStore::new(inner, settings.timeout, &metrics));
    match store.ping().await {
        Ok(()) => tracing::info!(store = %settings.describe(), "store ready"),
        Err(e) => tracing::warn!(
            store = %settings.describe(),
            error = %e,
            "the store does not answer yet; serving on and retrying in the background"
        ),
    }
    store.spawn_health_check(HEALTH_INTERVAL);
    Ok(store)
}

/// What an entry is for. Part of every key, so the kinds of state never
/// collide and an operator can count them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// Newest refresh token of a rotating login (versioned).
    Rotation,
    /// The access token a login was last given.
    Token,
    /// A per-login refresh lock across instances.
    Lock,
    /// A provider registration's `Retry-After` window.
    Backoff,
    /// A `/fetch` rendezvous.
    Fetch,
    /// A login state already used by a callback.
    UsedState,
    /// A grant migrated from the old App Engine service.
    Legacy,
    /// A single-use login whose last refresh answer was lost: it rests.
    Interrupted,
    /// A revoked login: every AuthID of it is refused.
    Revoked,
    /// A legacy `v2:` login the provider has accepted: its refreshes no
    /// longer draw on the small budget of legacy AuthIDs never seen.
    Known,
    /// The login of an AuthID sealed with a key that is no longer primary,
    /// so the AuthID keeps working after the key is retired.
    CarryOver,
}

impl Space {
    pub const ALL: [Space; 11] = [
        Space::Rotation,
        Space::Token,
        Space::Lock,
        Space::Backoff,
        Space::Fetch,
        Space::UsedState,
        Space::Legacy,
        Space::Interrupted,
        Space::Revoked,
        Space::Known,
        Space::CarryOver,
    ];

    /// The name used in key names and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rotation => "rotation",
            Self::Token => "token",
            Self::Lock => "lock",
            Self::Backoff => "backoff",
            Self::Fetch => "fetch",
            Self::UsedState => "state",
            Self::Legacy => "legacy",
            Self::Interrupted => "interrupted",
            Self::Revoked => "revoked",
            Self::Known => "known",
            Self::CarryOver => "carryover",
        }
    }
}

/// An entry's key: a space and a 32-byte id (an HMAC or hash made by the
/// caller, never a secret itself), and optionally the group of entries it
/// belongs to (one login's), which a Redis Cluster keeps in one slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKey {
    pub space: Space,
    pub id: [u8; 32],
    /// Made by the caller from the same secret as the id, so it is a
    /// function of the login the id belongs to.
    pub group: Option<[u8; 8]>,
}

impl StoreKey {
    pub const fn new(space: Space, id: [u8; 32]) -> Self {
        Self {
            space,
            id,
            group: None,
        }
    }

    /// The key as one of `group`'s entries.
    #[must_use]
    pub const fn in_group(mut self, group: [u8; 8]) -> Self {
        self.group = Some(group);
        self
    }

    /// `space:hex(id)`, the key's name in backends that name keys.
    pub fn name(&self) -> String {
        format!("{}:{}", self.space.name(), hex::encode(self.id))
    }
}

impl fmt::Debug for StoreKey {
    // The id is an HMAC, safe to show, but a prefix is enough to tell keys
    // apart in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StoreKey({}:{})",
            self.space.name(),
            hex::encode(&self.id[..4])
        )
    }
}

/// A value with a generation: a versioned write replaces it only with a
/// higher generation, so two instances can never both win one rotation.
#[derive(Clone, PartialEq, Eq)]
pub struct Versioned {
    pub generation: u64,
    pub value: Vec<u8>,
}

impl fmt::Debug for Versioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Versioned")
            .field("generation", &self.generation)
            .field("value", &format_args!("[{} bytes]", self.value.len()))
            .finish()
    }
}

/// Why a store operation failed. Texts name no key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer within the bound of one operation.
    #[error("the store did not answer in time")]
    Timeout,
    /// The store cannot be reached (connection refused, closed, no auth).
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store answered, but not as expected (a corrupt entry, a script
    /// error).
    #[error("the store failed: {0}")]
    Failed(String),
}

impl StoreError {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Failed(_) => "failed",
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The store interface. Every operation is atomic on its one key. A `ttl`
/// is how long the entry may be kept at most; zero is not allowed (the
/// backends treat it as one millisecond).
pub trait Store: Send + Sync + 'static {
    /// The backend's name: `memory`, `embedded` or `redis`.
    fn kind(&self) -> &'static str;

    /// The value of a live entry.
    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>>;

    /// Sets the value, replacing any.
    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Sets the value only if there is no live entry; returns whether it
    /// did (`SET NX PX`).
    fn put_new<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>>;

    /// Removes the entry and returns its value, in one step: of several
    /// concurrent takes, one gets the value (`GETDEL`).
    fn take<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>>;

    /// Removes the entry.
    fn delete<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>>;

    /// Removes the entry only if its value is `expected`; returns whether
    /// it did (releasing a lock that is still ours).
    fn delete_if<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>>;

    /// The value and generation of a live versioned entry.
    fn get_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>>;

    /// Stores `value` unless a live entry has the same or a higher
    /// generation; returns whether it was stored (compare-and-set).
    fn put_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Versioned,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>>;

    /// Checks that the store answers.
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// What `/ready` shows of the backend beyond its kind (Redis: its
    /// topology, eviction policy and replicas), as of the last check.
    fn details(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A TTL as whole milliseconds, at least one.
pub fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_and_debug_show_no_whole_id() {
        let key = StoreKey::new(Space::Rotation, [0xab; 32]);
        assert_eq!(key.name(), format!("rotation:{}", "ab".repeat(32)));
        let debug = format!("{key:?}");
        assert!(debug.contains("rotation:abababab"));
        assert!(!debug.contains(&"ab".repeat(5)));
    }

    #[test]
    fn space_names_are_distinct() {
        let mut names: Vec<_> = Space::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Space::ALL.len());
    }

    #[test]
    fn versioned_debug_hides_the_value() {
        let v = Versioned {
            generation: 3,
            value: b"secret".to_vec(),
        };
        let debug = format!("{v:?}");
        assert!(debug.contains("generation: 3") && !debug.contains("secret"));
    }
}
