//! Single-flight: concurrent requests for the same key share one execution.
//! The work runs in its own task, so it completes (and its result is
//! stored) even when every caller has gone away: an answer from a provider
//! that rotates tokens is never thrown away half-way.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

type Flight<V> = Shared<BoxFuture<'static, V>>;

pub struct SingleFlight<K, V: Clone> {
    inflight: Arc<Mutex<HashMap<K, Flight<V>>>>,
}

impl<K, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            inflight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins the flight for `key`, or starts one with `work`. `on_panic`
    /// is the answer if the work panics.
    pub async fn run<F>(&self, key: K, work: impl FnOnce() -> F, on_panic: V) -> V
    where
        F: Future<Output = V> + Send + 'static,
    {
        let flight = {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&key) {
                Some(flight) => flight.clone(),
                None => {
                    let work = work();
                    let inflight = Arc::clone(&self.inflight);
                    let task_key = key.clone();
                    let handle = tokio::spawn(async move {
                        let value = work.await;
                        // Remove before waiters see the value: a caller
                        // arriving later starts fresh (and finds the cache).
                        inflight
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&task_key);
                        value
                    });
                    let inflight = Arc::clone(&self.inflight);
                    let cleanup_key = key.clone();
                    let flight = async move {
                        match handle.await {
                            Ok(value) => value,
                            Err(_) => {
                                inflight
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .remove(&cleanup_key);
                                on_panic
                            }
                        }
                    }
                    .boxed()
                    .shared();
                    map.insert(key, flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// Flights under way (for metrics and tests).
    pub fn in_flight(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_execution() {
        let sf: Arc<SingleFlight<u32, u32>> = Arc::new(SingleFlight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let sf = Arc::clone(&sf);
            let runs = Arc::clone(&runs);
            let mut gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                sf.run(
                    1,
                    move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        7
                    },
                    0,
                )
                .await
            }));
        }
        while sf.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        release.send(true).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(sf.in_flight(), 0);
    }

    #[tokio::test]
    async fn work_finishes_when_the_caller_goes_away() {
        let sf: Arc<SingleFlight<u32, u32>> = Arc::new(SingleFlight::default());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (release, mut gate) = tokio::sync::watch::channel(false);
        let caller = {
            let sf = Arc::clone(&sf);
            tokio::spawn(async move {
                sf.run(
                    1,
                    move || async move {
                        let _ = gate.wait_for(|open| *open).await;
                        let _ = done_tx.send(());
                        1
                    },
                    0,
                )
                .await
            })
        };
        while sf.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        caller.abort();
        release.send(true).unwrap();
        done_rx.await.expect("the work ran to completion");
    }

    #[tokio::test]
    async fn a_panic_gives_the_fallback() {
        let sf: SingleFlight<u32, u32> = SingleFlight::default();
        let v = sf.run(1, || async { panic!("boom") }, 99).await;
        assert_eq!(v, 99);
        assert_eq!(sf.in_flight(), 0);
    }
}
