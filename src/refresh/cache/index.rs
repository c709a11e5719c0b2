//! One index of the cache: a sharded hash map that sweeps out expired
//! entries and, when full, evicts those closest to expiry.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};

use super::token::CachedToken;
use super::{MIN_PER_SHARD, SHARDS, SWEEP_EVERY_SECS};

/// Hashes a text key for its map: the key already is a keyed hash, so its
/// low bits are uniform and unpredictable; hashing it again would only cost.
#[derive(Clone, Copy, Default)]
pub(super) struct KeyBits;

pub(super) struct KeyBitsHasher(u64);

impl BuildHasher for KeyBits {
    type Hasher = KeyBitsHasher;
    fn build_hasher(&self) -> KeyBitsHasher {
        KeyBitsHasher(0)
    }
}

impl Hasher for KeyBitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u128` keys; kept correct for any other use.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type Map<K, S> = HashMap<K, Arc<CachedToken>, S>;

/// One index: shards of a hash map, each sweeping itself.
pub(super) struct Index<K, S> {
    shards: Box<[RwLock<Shard<K, S>>]>,
    hasher: S,
    per_shard: usize,
    /// Evicting an entry retires it (the login index: its entry is the
    /// login's current one).
    evict_retires: bool,
}

struct Shard<K, S> {
    map: Map<K, S>,
    next_sweep: i64,
}

impl<K: Hash + Eq + Copy, S: BuildHasher + Clone> Index<K, S> {
    pub(super) fn new(capacity: u64, hasher: S, evict_retires: bool) -> Self {
        let capacity = (capacity as usize).max(1);
        let shards = (capacity / MIN_PER_SHARD).clamp(1, SHARDS);
        let per_shard = capacity.div_ceil(shards);
        Self {
            shards: (0..shards)
                .map(|_| {
                    RwLock::new(Shard {
                        map: HashMap::with_hasher(hasher.clone()),
                        next_sweep: 0,
                    })
                })
                .collect(),
            hasher,
            per_shard,
            evict_retires,
        }
    }

    fn shard(&self, key: &K) -> &RwLock<Shard<K, S>> {
        // Bits the map does not use for the slot (its low bits) or the tag
        // (the top seven), so a shard's keys still spread over its table.
        &self.shards[(self.hasher.hash_one(key) >> 48) as usize % self.shards.len()]
    }

    pub(super) fn get<R>(&self, key: &K, f: impl FnOnce(&Arc<CachedToken>) -> R) -> Option<R> {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        shard.map.get(key).map(f)
    }

    /// Inserts; returns the entry it replaced.
    pub(super) fn insert(
        &self,
        key: K,
        token: Arc<CachedToken>,
        now: i64,
    ) -> Option<Arc<CachedToken>> {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        let replaced = shard.map.insert(key, token);
        if now >= shard.next_sweep || shard.map.len() > self.per_shard {
            shard.next_sweep = now + SWEEP_EVERY_SECS;
            shard.map.retain(|_, t| t.live_at(now));
            if shard.map.len() > self.per_shard {
                let keep = self.per_shard - self.per_shard / 8;
                evict_soonest(&mut shard.map, keep, self.evict_retires);
            }
        }
        replaced
    }

    pub(super) fn remove(&self, key: &K) -> Option<Arc<CachedToken>> {
        let mut shard = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        shard.map.remove(key)
    }

    pub(super) fn clear(&self) {
        for shard in &self.shards {
            shard.write().unwrap_or_else(|e| e.into_inner()).map.clear();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }
}

/// Shrinks a full shard to `keep` entries, dropping those that expire
/// first (an eighth at once, so a full cache sweeps rarely). Logins
/// evicted are retired: the texts pointing at one miss and open again.
fn evict_soonest<K: Hash + Eq + Copy, S: BuildHasher>(
    map: &mut Map<K, S>,
    keep: usize,
    retire: bool,
) {
    let mut expiries: Vec<i64> = map.values().map(|t| t.expires_at).collect();
    let drop_n = expiries.len().saturating_sub(keep);
    if drop_n == 0 {
        return;
    }
    let (_, cutoff, _) = expiries.select_nth_unstable(drop_n - 1);
    let cutoff = *cutoff;
    let mut dropped = 0;
    map.retain(|_, t| {
        if dropped < drop_n && t.expires_at <= cutoff {
            dropped += 1;
            if retire {
                t.retire();
            }
            false
        } else {
            true
        }
    });
}
