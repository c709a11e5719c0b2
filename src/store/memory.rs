//! The in-memory store (`STORE=memory`): one process's memory, lost on
//! exit. For tests and the demo; several in-process apps sharing one
//! `MemoryStore` behave like instances sharing a Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use moka::Expiry;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;

use super::{Store, StoreKey, StoreResult, Versioned};

/// Most entries held; past this the least used are dropped first.
pub const DEFAULT_CAPACITY: u64 = 1_000_000;

struct Entry {
    value: Vec<u8>,
    /// Set for versioned entries.
    generation: Option<u64>,
    ttl: Duration,
}

struct EntryTtl;

impl Expiry<StoreKey, Arc<Entry>> for EntryTtl {
    fn expire_after_create(
        &self,
        _: &StoreKey,
        value: &Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &StoreKey,
        value: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct MemoryStore {
    entries: Cache<StoreKey, Arc<Entry>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl MemoryStore {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .expire_after(EntryTtl)
                .build(),
        }
    }

    /// Entries held (expired ones may still count until collected).
    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    fn entry(value: Vec<u8>, generation: Option<u64>, ttl: Duration) -> Arc<Entry> {
        Arc::new(Entry {
            value,
            generation,
            ttl: ttl.max(Duration::from_millis(1)),
        })
    }
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move { Ok(self.entries.get(key).map(|e| e.value.clone())) })
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.entries.insert(*key, Self::entry(value, None, ttl));
            Ok(())
        })
    }

    fn put_new<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let result = self.entries.entry(*key).and_compute_with(|existing| {
                if existing.is_some() {
                    Op::Nop
                } else {
                    Op::Put(Self::entry(value, None, ttl))
                }
            });
            Ok(matches!(result, CompResult::Inserted(_)))
        })
    }

    fn take<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            let result = self.entries.entry(*key).and_compute_with(|existing| {
                if existing.is_some() {
                    Op::Remove
                } else {
                    Op::Nop
                }
            });
            Ok(match result {
                CompResult::Removed(e) => Some(e.into_value().value.clone()),
                _ => None,
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.entries.invalidate(key);
            Ok(())
        })
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let result = self
                .entries
                .entry(*key)
                .and_compute_with(|existing| match existing {
                    Some(e) if e.value().value == expected => Op::Remove,
                    _ => Op::Nop,
                });
            Ok(matches!(result, CompResult::Removed(_)))
        })
    }

    fn get_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        Box::pin(async move {
            Ok(self.entries.get(key).and_then(|e| {
                e.generation.map(|generation| Versioned {
                    generation,
                    value: e.value.clone(),
                })
            }))
        })
    }

    fn put_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Versioned,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let result = self
                .entries
                .entry(*key)
                .and_compute_with(|existing| match existing {
                    Some(e) if e.value().generation.unwrap_or(0) >= value.generation => Op::Nop,
                    _ => Op::Put(Self::entry(value.value, Some(value.generation), ttl)),
                });
            Ok(matches!(
                result,
                CompResult::Inserted(_) | CompResult::ReplacedWith(_)
            ))
        })
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Space;

    fn key(n: u8) -> StoreKey {
        StoreKey::new(Space::Token, [n; 32])
    }

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn put_get_take_delete() {
        let s = MemoryStore::default();
        assert_eq!(s.get(&key(1)).await, Ok(None));
        s.put(&key(1), b"a".to_vec(), TTL).await.unwrap();
        assert_eq!(s.get(&key(1)).await, Ok(Some(b"a".to_vec())));
        assert_eq!(s.take(&key(1)).await, Ok(Some(b"a".to_vec())));
        assert_eq!(s.take(&key(1)).await, Ok(None));
        s.put(&key(2), b"b".to_vec(), TTL).await.unwrap();
        s.delete(&key(2)).await.unwrap();
        assert_eq!(s.get(&key(2)).await, Ok(None));
    }

    #[tokio::test]
    async fn put_new_and_delete_if_make_a_lock() {
        let s = MemoryStore::default();
        assert_eq!(s.put_new(&key(1), b"me".to_vec(), TTL).await, Ok(true));
        assert_eq!(s.put_new(&key(1), b"you".to_vec(), TTL).await, Ok(false));
        assert_eq!(s.delete_if(&key(1), b"you").await, Ok(false));
        assert_eq!(s.delete_if(&key(1), b"me").await, Ok(true));
        assert_eq!(s.put_new(&key(1), b"you".to_vec(), TTL).await, Ok(true));
    }

    #[tokio::test]
    async fn versioned_writes_only_move_forward() {
        let s = MemoryStore::default();
        let v = |g: u64| Versioned {
            generation: g,
            value: vec![g as u8],
        };
        assert_eq!(s.put_versioned(&key(1), v(2), TTL).await, Ok(true));
        assert_eq!(s.put_versioned(&key(1), v(2), TTL).await, Ok(false));
        assert_eq!(s.put_versioned(&key(1), v(1), TTL).await, Ok(false));
        assert_eq!(s.put_versioned(&key(1), v(3), TTL).await, Ok(true));
        assert_eq!(s.get_versioned(&key(1)).await, Ok(Some(v(3))));
    }

    #[tokio::test]
    async fn entries_expire() {
        let s = MemoryStore::default();
        s.put(&key(1), b"a".to_vec(), Duration::from_millis(20))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(s.get(&key(1)).await, Ok(None));
        assert_eq!(
            s.put_new(&key(1), b"b".to_vec(), TTL).await,
            Ok(true),
            "an expired lock can be taken again"
        );
    }
}
