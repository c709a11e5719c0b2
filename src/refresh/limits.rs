//! Fixed-window counters keyed by login or client address, on the
//! broker's clock so tests can move time. The counters live in a
//! size-capped cache: a flood of distinct AuthIDs or addresses cannot grow
//! them without bound, and its one-off keys are the first to go (the cache
//! keeps keys by how often they are seen, so a busy login keeps its count).

use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;

pub struct WindowLimiter<K> {
    limit: u32,
    window_secs: i64,
    windows: Cache<K, Arc<Mutex<Window>>>,
}

#[derive(Clone, Copy)]
struct Window {
    start: i64,
    count: u32,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> WindowLimiter<K> {
    /// At most `limit` hits per key in each window of `window_secs`,
    /// tracking at most `capacity` keys. A key's counter also leaves the
    /// cache once its window has passed unused.
    pub fn new(limit: u32, window_secs: i64, capacity: u64) -> Self {
        let window_secs = window_secs.max(1);
        Self {
            limit: limit.max(1),
            window_secs,
            windows: Cache::builder()
                .max_capacity(capacity.max(1))
                .time_to_idle(Duration::from_secs(window_secs as u64))
                .build(),
        }
    }

    /// Counts a hit. `Err(seconds)` when the key is over its limit: the
    /// time until its window ends.
    pub fn hit(&self, key: &K, now: i64) -> Result<(), u64> {
        let window = self.windows.get_with_by_ref(key, || {
            Arc::new(Mutex::new(Window {
                start: now,
                count: 0,
            }))
        });
        let mut w = window.lock().unwrap_or_else(|e| e.into_inner());
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
        let Some(window) = self.windows.get(key) else {
            return Ok(());
        };
        let w = window.lock().unwrap_or_else(|e| e.into_inner());
        if now - w.start < self.window_secs && w.count >= self.limit {
            Err((w.start + self.window_secs - now).max(1) as u64)
        } else {
            Ok(())
        }
    }

    /// Keys tracked (for tests and metrics), after pending evictions.
    pub fn len(&self) -> usize {
        self.windows.run_pending_tasks();
        self.windows.entry_count() as usize
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
}
