//! One holder per key at a time, in this process: an async mutex for each
//! key that someone holds or waits for, dropped from the map when the last
//! of them is gone (so the map holds only keys in use, however many keys
//! pass through it).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

type Held<K> = Arc<Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>>;

pub struct KeyedLock<K> {
    held: Held<K>,
}

impl<K> Default for KeyedLock<K> {
    fn default() -> Self {
        Self {
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// The key's turn; the next waiter gets it when this is dropped.
pub struct KeyedGuard<K: Eq + Hash> {
    guard: Option<OwnedMutexGuard<()>>,
    _interest: Interest<K>,
}

/// A holder's or waiter's claim on the key's entry. Dropped (also when a
/// wait is cancelled), it removes the entry if no one else has one.
struct Interest<K: Eq + Hash> {
    held: Held<K>,
    key: K,
    mutex: Arc<tokio::sync::Mutex<()>>,
}

impl<K: Eq + Hash + Clone> KeyedLock<K> {
    /// Waits for the key's turn (callers bound the wait with a timeout;
    /// a cancelled wait leaves nothing behind).
    pub async fn lock(&self, key: K) -> KeyedGuard<K> {
        let mutex = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(held.entry(key.clone()).or_default())
        };
        let interest = Interest {
            held: Arc::clone(&self.held),
            key,
            mutex,
        };
        let guard = Arc::clone(&interest.mutex).lock_owned().await;
        KeyedGuard {
            guard: Some(guard),
            _interest: interest,
        }
    }

    /// Keys held or waited for (for tests).
    pub fn in_use(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl<K: Eq + Hash> Drop for KeyedGuard<K> {
    fn drop(&mut self) {
        // Released before the interest is: the entry is removed only when
        // no one holds the mutex.
        self.guard.take();
    }
}

impl<K: Eq + Hash> Drop for Interest<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and this one: no other holder or waiter
        // (they take theirs under this map lock).
        if Arc::strong_count(&self.mutex) == 2 {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_key_has_one_holder_and_the_next_waiter_gets_it_on_release() {
        let locks = KeyedLock::<u32>::default();
        let first = locks.lock(1).await;
        // Another key is not held up.
        drop(locks.lock(2).await);
        let waiting = tokio::time::timeout(Duration::from_millis(20), locks.lock(1)).await;
        assert!(waiting.is_err(), "the key is held");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let next = async {
            let guard = locks.lock(1).await;
            let _ = tx.send(());
            guard
        };
        let release = async {
            tokio::task::yield_now().await;
            drop(first);
            rx.await.unwrap();
        };
        let (guard, ()) = tokio::join!(next, release);
        assert_eq!(locks.in_use(), 1);
        drop(guard);
        assert_eq!(locks.in_use(), 0, "nothing is kept for keys no one uses");
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_nothing_behind() {
        let locks = KeyedLock::<u32>::default();
        let held = locks.lock(7).await;
        for _ in 0..3 {
            let _ = tokio::time::timeout(Duration::from_millis(1), locks.lock(7)).await;
        }
        assert_eq!(locks.in_use(), 1);
        drop(held);
        assert_eq!(locks.in_use(), 0);
        drop(locks.lock(7).await);
        assert_eq!(locks.in_use(), 0);
    }
}
