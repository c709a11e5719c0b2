//! Fixed-window counters keyed by login or client address, on the
//! broker's clock so tests can move time. Sharded to keep lock hold times
//! short under load.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;

const SHARDS: usize = 16;
/// A shard drops ended windows when it grows past this many entries.
const SWEEP_AT: usize = 4096;

pub struct WindowLimiter<K> {
    limit: u32,
    window_secs: i64,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<K, Window>>>,
}

#[derive(Clone, Copy)]
struct Window {
    start: i64,
    count: u32,
}

impl<K: Hash + Eq + Clone> WindowLimiter<K> {
    /// At most `limit` hits per key in each window of `window_secs`.
    pub fn new(limit: u32, window_secs: i64) -> Self {
        Self {
            limit: limit.max(1),
            window_secs: window_secs.max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, Window>> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        &self.shards[i]
    }

    /// Counts a hit. `Err(seconds)` when the key is over its limit: the
    /// time until its window ends.
    pub fn hit(&self, key: &K, now: i64) -> Result<(), u64> {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= SWEEP_AT {
            let window = self.window_secs;
            shard.retain(|_, w| now - w.start < window);
        }
        let w = shard.entry(key.clone()).or_insert(Window {
            start: now,
            count: 0,
        });
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

    /// Like [`hit`](Self::hit) but without counting.
    pub fn check(&self, key: &K, now: i64) -> Result<(), u64> {
        let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        match shard.get(key) {
            Some(w) if now - w.start < self.window_secs && w.count >= self.limit => {
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
        let l = WindowLimiter::new(3, 60);
        for _ in 0..3 {
            assert!(l.hit(&"a", 100).is_ok());
        }
        assert_eq!(l.hit(&"a", 110), Err(50));
        assert_eq!(l.check(&"a", 110), Err(50));
        assert!(l.hit(&"b", 110).is_ok(), "other keys unaffected");
        assert!(l.hit(&"a", 160).is_ok(), "new window");
        assert!(l.check(&"c", 0).is_ok());
    }
}
