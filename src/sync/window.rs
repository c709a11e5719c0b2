//! Fixed-window counters keyed by login or client address, on the
//! broker's clock so tests can move time. The counters are held for a
//! capped number of keys: a flood of distinct AuthIDs or addresses cannot
//! grow them without bound, and its one-off keys are the first to go (a
//! full shard drops ended windows, then the keys seen least often, so a
//! busy login keeps its count). Sharded to keep lock hold times short; a
//! key is hashed once, for its shard and its slot (every cache hit counts
//! here).

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;

use hashbrown::HashTable;

/// Shards of a large limiter: enough that two cores seldom want one lock.
const SHARDS: usize = 16;
/// A shard holds at least this many keys (a small limiter has fewer
/// shards), so one full shard does not evict while others are empty.
const MIN_PER_SHARD: usize = 256;

/// One shard: each key with its window.
type Shard<K> = HashTable<(K, Window)>;

pub struct WindowLimiter<K> {
    limit: u32,
    window_secs: i64,
    hasher: RandomState,
    shards: Box<[Mutex<Shard<K>>]>,
    per_shard: usize,
}

#[derive(Clone, Copy)]
struct Window {
    start: i64,
    count: u32,
}

impl<K: Hash + Eq + Clone> WindowLimiter<K> {
    /// At most `limit` hits per key in each window of `window_secs`,
    /// tracking at most about `capacity` keys.
    pub fn new(limit: u32, window_secs: i64, capacity: u64) -> Self {
        let capacity = (capacity as usize).max(1);
        let shards = (capacity / MIN_PER_SHARD).clamp(1, SHARDS);
        Self {
            limit: limit.max(1),
            window_secs: window_secs.max(1),
            hasher: RandomState::new(),
            shards: (0..shards).map(|_| Mutex::new(HashTable::new())).collect(),
            per_shard: capacity.div_ceil(shards),
        }
    }

    /// The key's hash and its shard (from bits the slot does not use).
    fn shard(&self, key: &K) -> (u64, &Mutex<Shard<K>>) {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash >> 48) as usize % self.shards.len()];
        (hash, shard)
    }

    /// Counts a hit. `Err(seconds)` when the key is over its limit: the
    /// time until its window ends.
    pub fn hit(&self, key: &K, now: i64) -> Result<(), u64> {
        let (hash, shard) = self.shard(key);
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let rehash = |(k, _): &(K, Window)| self.hasher.hash_one(k);
        if shard.len() >= self.per_shard && shard.find(hash, |(k, _)| k == key).is_none() {
            self.make_room(&mut shard, now);
        }
        let (_, w) = shard
            .entry(hash, |(k, _)| k == key, rehash)
            .or_insert_with(|| {
                let fresh = Window {
                    start: now,
                    count: 0,
                };
                (key.clone(), fresh)
            })
            .into_mut();
        if now - w.start >= self.window_secs {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        if w.count >= self.limit {
            return Err((w.start + self.window_secs - now).max(1) as u64);
        }
        w.count += 1;
        Ok(())
    }

    /// A full shard drops ended windows; if that is not enough, the eighth
    /// of its keys seen least often in their window.
    fn make_room(&self, shard: &mut Shard<K>, now: i64) {
        let window = self.window_secs;
        shard.retain(|(_, w)| now - w.start < window);
        let keep = self.per_shard - (self.per_shard / 8).max(1);
        let drop_n = shard.len().saturating_sub(keep);
        if drop_n == 0 {
            return;
        }
        let mut counts: Vec<u32> = shard.iter().map(|(_, w)| w.count).collect();
        let (_, cutoff, _) = counts.select_nth_unstable(drop_n - 1);
        let cutoff = *cutoff;
        let mut dropped = 0;
        shard.retain(|(_, w)| {
            let evict = dropped < drop_n && w.count <= cutoff;
            dropped += usize::from(evict);
            !evict
        });
    }

    /// Gives back one hit counted in the key's current window (counted
    /// before work whose outcome decides whether it should count).
    pub fn refund(&self, key: &K, now: i64) {
        let (hash, shard) = self.shard(key);
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, w)) = shard.find_mut(hash, |(k, _)| k == key) {
            if now - w.start < self.window_secs {
                w.count = w.count.saturating_sub(1);
            }
        }
    }

    /// Like [`hit`](Self::hit) but without counting.
    pub fn check(&self, key: &K, now: i64) -> Result<(), u64> {
        let (hash, shard) = self.shard(key);
        let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        match shard.find(hash, |(k, _)| k == key) {
            Some((_, w)) if now - w.start < self.window_secs && w.count >= self.limit => {
                Err((w.start + self.window_secs - now).max(1) as u64)
            }
            _ => Ok(()),
        }
    }

    /// Keys tracked (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_resets_after_the_window() {
        let l = WindowLimiter::new(3, 60, 100);
        for _ in 0..3 {
            assert!(l.hit(&"a", 100).is_ok());
        }
        assert_eq!(l.hit(&"a", 110), Err(50));
        assert_eq!(l.check(&"a", 110), Err(50));
        assert!(l.hit(&"b", 110).is_ok(), "other keys unaffected");
        assert!(l.hit(&"a", 160).is_ok(), "new window");
        assert!(l.check(&"c", 0).is_ok());
    }

    #[test]
    fn a_refund_gives_back_one_hit_of_the_running_window() {
        let l = WindowLimiter::new(2, 60, 100);
        assert!(l.hit(&"a", 100).is_ok());
        assert!(l.hit(&"a", 100).is_ok());
        l.refund(&"a", 100);
        assert!(l.hit(&"a", 100).is_ok(), "the refunded hit is free again");
        assert!(l.hit(&"a", 100).is_err());
        l.refund(&"b", 100);
        assert!(
            l.check(&"b", 100).is_ok(),
            "refunding an unknown key adds nothing"
        );
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_capacity() {
        let l = WindowLimiter::new(20, 3600, 1000);
        for i in 0..50_000u32 {
            let _ = l.hit(&i, 100);
        }
        let held = l.len();
        assert!(held <= 1000, "{held} counters held");
        assert!(held > 0);
    }

    #[test]
    fn a_busy_key_keeps_its_count_through_a_flood() {
        let l = WindowLimiter::new(20, 3600, 1000);
        for _ in 0..20 {
            assert!(l.hit(&u32::MAX, 100).is_ok());
        }
        for i in 0..50_000u32 {
            let _ = l.hit(&i, 100);
            if i % 1000 == 0 {
                // The busy login keeps asking during the flood.
                let _ = l.check(&u32::MAX, 100);
            }
        }
        assert!(
            l.hit(&u32::MAX, 100).is_err(),
            "the flood did not reset the busy login's window"
        );
    }

    #[test]
    fn ended_windows_make_room_before_running_ones() {
        let l = WindowLimiter::new(1, 60, 10);
        assert!(l.hit(&u32::MAX, 0).is_ok());
        for i in 0..10u32 {
            assert!(l.hit(&i, 100).is_ok());
        }
        for i in 0..10u32 {
            assert!(l.check(&i, 100).is_err(), "{i} still counted");
        }
    }
}
