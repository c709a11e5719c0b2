//! What every store operation means, checked on every backend: the same
//! cases run against memory, the embedded store, a real Redis, a Redis
//! found through a sentinel and a three-master Redis Cluster (each case
//! on a fresh store), including expiry and the atomic operations under
//! many concurrent callers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use oauth_broker::store::{EmbeddedStore, MemoryStore, RedisStore, Space, Store, Versioned};
use secrecy::SecretString;

use oauth_broker::config::{StoreDefault, parse_store};

use super::{HOUR, key};
use crate::support::redis::RedisServer;
use crate::support::redis_ha::{Cluster, SentinelSet};

/// A store and what must live as long as it.
pub struct Backend {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _redis: Option<RedisServer>,
    _ha: Option<Box<dyn std::any::Any + Send>>,
}

impl Backend {
    fn memory() -> Self {
        Self {
            store: Arc::new(MemoryStore::default()),
            _dir: None,
            _redis: None,
            _ha: None,
        }
    }

    fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("data")).unwrap();
        Self {
            store: Arc::new(store),
            _dir: Some(dir),
            _redis: None,
            _ha: None,
        }
    }

    fn redis() -> Self {
        let redis = RedisServer::start();
        let url = SecretString::from(redis.url());
        let store = RedisStore::new(&url, "conformance:", Duration::from_secs(2)).unwrap();
        Self {
            store: Arc::new(store),
            _dir: None,
            _redis: Some(redis),
            _ha: None,
        }
    }

    /// A master found through one sentinel.
    fn sentinel() -> Self {
        let set = SentinelSet::start(false, 1);
        Self::ha(&set.url(), Box::new(set))
    }

    /// A cluster of three masters, reached through one seed.
    fn cluster() -> Self {
        let cluster = Cluster::start(3);
        Self::ha(&cluster.url(), Box::new(cluster))
    }

    fn ha(url: &str, deployment: Box<dyn std::any::Any + Send>) -> Self {
        let settings = parse_store(
            Some(url),
            StoreDefault::Embedded,
            std::path::Path::new("."),
            "conformance:",
            500,
        )
        .expect("a valid STORE");
        let store = RedisStore::open(&settings, None).unwrap();
        Self {
            store: Arc::new(store),
            _dir: None,
            _redis: None,
            _ha: Some(deployment),
        }
    }
}

fn versioned(generation: u64, value: &[u8]) -> Versioned {
    Versioned {
        generation,
        value: value.to_vec(),
    }
}

/// Waits out a short TTL.
async fn past(ttl: Duration) {
    tokio::time::sleep(ttl * 3).await;
}

const SHORT: Duration = Duration::from_millis(60);
const CONCURRENT: usize = 50;

async fn put_get_and_delete(s: Arc<dyn Store>) {
    let k = key(Space::Token, 1);
    assert_eq!(s.get(&k).await, Ok(None));
    s.put(&k, b"first".to_vec(), HOUR).await.unwrap();
    assert_eq!(s.get(&k).await, Ok(Some(b"first".to_vec())));
    s.put(&k, b"second".to_vec(), HOUR).await.unwrap();
    assert_eq!(
        s.get(&k).await,
        Ok(Some(b"second".to_vec())),
        "put replaces"
    );
    s.delete(&k).await.unwrap();
    assert_eq!(s.get(&k).await, Ok(None));
    s.delete(&k).await.unwrap();
}

async fn spaces_keep_equal_ids_apart(s: Arc<dyn Store>) {
    for (n, space) in Space::ALL.iter().enumerate() {
        s.put(&key(*space, 7), vec![n as u8], HOUR).await.unwrap();
    }
    for (n, space) in Space::ALL.iter().enumerate() {
        assert_eq!(s.get(&key(*space, 7)).await, Ok(Some(vec![n as u8])));
    }
}

async fn values_are_kept_byte_for_byte(s: Arc<dyn Store>) {
    let all_bytes: Vec<u8> = (0..=255).collect();
    // Values that look like the backends' own tags must not confuse them.
    let tricky = [
        Vec::new(),
        all_bytes,
        b"v\0\0\0\0\0\0\0\x09rest".to_vec(),
        b"p".to_vec(),
        vec![0xab; 64 * 1024],
    ];
    for (n, value) in tricky.iter().enumerate() {
        let k = key(Space::Fetch, n as u32);
        s.put(&k, value.clone(), HOUR).await.unwrap();
        assert_eq!(s.get(&k).await, Ok(Some(value.clone())));
        let v = key(Space::Rotation, n as u32);
        s.put_versioned(&v, versioned(9, value), HOUR)
            .await
            .unwrap();
        assert_eq!(s.get_versioned(&v).await, Ok(Some(versioned(9, value))));
        assert!(s.delete_if(&k, value).await.unwrap());
    }
}

async fn put_new_sets_only_what_is_absent(s: Arc<dyn Store>) {
    let k = key(Space::Lock, 1);
    assert_eq!(s.put_new(&k, b"mine".to_vec(), HOUR).await, Ok(true));
    assert_eq!(s.put_new(&k, b"yours".to_vec(), HOUR).await, Ok(false));
    assert_eq!(s.get(&k).await, Ok(Some(b"mine".to_vec())), "unchanged");
    s.delete(&k).await.unwrap();
    assert_eq!(s.put_new(&k, b"yours".to_vec(), HOUR).await, Ok(true));
}

async fn take_returns_the_value_once(s: Arc<dyn Store>) {
    let k = key(Space::Fetch, 1);
    assert_eq!(s.take(&k).await, Ok(None));
    s.put(&k, b"result".to_vec(), HOUR).await.unwrap();
    assert_eq!(s.take(&k).await, Ok(Some(b"result".to_vec())));
    assert_eq!(s.take(&k).await, Ok(None));
    assert_eq!(s.get(&k).await, Ok(None));
}

async fn delete_if_removes_only_the_expected_value(s: Arc<dyn Store>) {
    let k = key(Space::Lock, 2);
    assert_eq!(s.delete_if(&k, b"token").await, Ok(false), "absent");
    s.put_new(&k, b"token-a".to_vec(), HOUR).await.unwrap();
    assert_eq!(s.delete_if(&k, b"token-b").await, Ok(false));
    assert_eq!(
        s.delete_if(&k, b"token-").await,
        Ok(false),
        "no prefix match"
    );
    assert_eq!(s.get(&k).await, Ok(Some(b"token-a".to_vec())));
    assert_eq!(s.delete_if(&k, b"token-a").await, Ok(true));
    assert_eq!(s.get(&k).await, Ok(None));
}

async fn versioned_writes_only_move_forward(s: Arc<dyn Store>) {
    let k = key(Space::Rotation, 1);
    assert_eq!(s.get_versioned(&k).await, Ok(None));
    assert_eq!(
        s.put_versioned(&k, versioned(2, b"two"), HOUR).await,
        Ok(true)
    );
    assert_eq!(
        s.put_versioned(&k, versioned(2, b"again"), HOUR).await,
        Ok(false),
        "the same generation loses"
    );
    assert_eq!(
        s.put_versioned(&k, versioned(1, b"one"), HOUR).await,
        Ok(false)
    );
    assert_eq!(s.get_versioned(&k).await, Ok(Some(versioned(2, b"two"))));
    assert_eq!(
        s.put_versioned(&k, versioned(3, b"three"), HOUR).await,
        Ok(true)
    );
    assert_eq!(s.get_versioned(&k).await, Ok(Some(versioned(3, b"three"))));
    assert_eq!(
        s.get(&k).await,
        Ok(Some(b"three".to_vec())),
        "get sees the value"
    );
    // Generations compare as numbers, not as their first bytes.
    assert_eq!(
        s.put_versioned(&k, versioned(256, b"big"), HOUR).await,
        Ok(true)
    );
    assert_eq!(
        s.put_versioned(&k, versioned(255, b"less"), HOUR).await,
        Ok(false)
    );
    assert_eq!(
        s.put_versioned(&k, versioned(u64::MAX, b"max"), HOUR).await,
        Ok(true)
    );

    // A plain entry counts as generation 0 and has no versioned value.
    let plain = key(Space::Rotation, 2);
    s.put(&plain, b"plain".to_vec(), HOUR).await.unwrap();
    assert_eq!(s.get_versioned(&plain).await, Ok(None));
    assert_eq!(
        s.put_versioned(&plain, versioned(0, b"zero"), HOUR).await,
        Ok(false)
    );
    assert_eq!(
        s.put_versioned(&plain, versioned(1, b"one"), HOUR).await,
        Ok(true)
    );
    assert_eq!(
        s.get_versioned(&plain).await,
        Ok(Some(versioned(1, b"one")))
    );
}

async fn expired_entries_are_absent_to_every_operation(s: Arc<dyn Store>) {
    let (a, b, c, d, e, f) = (
        key(Space::Token, 1),
        key(Space::Lock, 1),
        key(Space::Rotation, 1),
        key(Space::Fetch, 1),
        key(Space::Lock, 2),
        key(Space::Backoff, 1),
    );
    s.put(&a, b"a".to_vec(), SHORT).await.unwrap();
    assert!(s.put_new(&b, b"b".to_vec(), SHORT).await.unwrap());
    assert!(
        s.put_versioned(&c, versioned(5, b"c"), SHORT)
            .await
            .unwrap()
    );
    s.put(&d, b"d".to_vec(), SHORT).await.unwrap();
    s.put(&e, b"e".to_vec(), SHORT).await.unwrap();
    // A zero TTL is kept for a millisecond, not forever.
    s.put(&f, b"f".to_vec(), Duration::ZERO).await.unwrap();
    s.put(&key(Space::Token, 99), b"stays".to_vec(), HOUR)
        .await
        .unwrap();
    past(SHORT).await;

    assert_eq!(s.get(&a).await, Ok(None));
    assert_eq!(s.get(&f).await, Ok(None));
    assert_eq!(s.get_versioned(&c).await, Ok(None));
    assert_eq!(s.take(&d).await, Ok(None));
    assert_eq!(s.delete_if(&e, b"e").await, Ok(false));
    assert_eq!(
        s.put_new(&b, b"again".to_vec(), HOUR).await,
        Ok(true),
        "an expired lock can be taken"
    );
    assert_eq!(
        s.put_versioned(&c, versioned(1, b"fresh"), HOUR).await,
        Ok(true),
        "an expired generation does not hold a new write back"
    );
    assert_eq!(
        s.get(&key(Space::Token, 99)).await,
        Ok(Some(b"stays".to_vec()))
    );
}

async fn a_ttl_is_reset_by_each_write(s: Arc<dyn Store>) {
    let k = key(Space::Token, 3);
    s.put(&k, b"short".to_vec(), SHORT).await.unwrap();
    s.put(&k, b"long".to_vec(), HOUR).await.unwrap();
    past(SHORT).await;
    assert_eq!(s.get(&k).await, Ok(Some(b"long".to_vec())));
}

async fn one_writer_wins_each_generation(s: Arc<dyn Store>) {
    let k = key(Space::Rotation, 10);
    // All writers offer the same generation at once: exactly one wins.
    for generation in 1..=3u64 {
        let writers: Vec<_> = (0..CONCURRENT)
            .map(|w| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let value = format!("{generation}-{w}").into_bytes();
                    s.put_versioned(&k, versioned(generation, &value), HOUR)
                        .await
                        .map(|won| won.then_some(value))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for w in writers {
            if let Some(value) = w.await.unwrap().unwrap() {
                winners.push(value);
            }
        }
        assert_eq!(winners.len(), 1, "generation {generation}: {winners:?}");
        assert_eq!(
            s.get_versioned(&k).await,
            Ok(Some(versioned(generation, &winners[0])))
        );
    }

    // Writers that each read and offer the next generation, many times:
    // no generation is won twice, and the last one won is what is stored.
    let k = key(Space::Rotation, 11);
    let writers: Vec<_> = (0..CONCURRENT)
        .map(|w| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let mut won = Vec::new();
                for _ in 0..4 {
                    let held = s.get_versioned(&k).await.unwrap();
                    let next = held.map_or(1, |v| v.generation + 1);
                    let value = format!("{next}-{w}").into_bytes();
                    if s.put_versioned(&k, versioned(next, &value), HOUR)
                        .await
                        .unwrap()
                    {
                        won.push((next, value));
                    }
                }
                won
            })
        })
        .collect();
    let mut wins = Vec::new();
    for w in writers {
        wins.extend(w.await.unwrap());
    }
    let generations: HashSet<u64> = wins.iter().map(|(g, _)| *g).collect();
    assert_eq!(generations.len(), wins.len(), "a generation won twice");
    let last = wins.iter().max_by_key(|(g, _)| *g).unwrap();
    assert_eq!(
        s.get_versioned(&k).await,
        Ok(Some(versioned(last.0, &last.1)))
    );
}

async fn one_caller_sets_an_absent_key(s: Arc<dyn Store>) {
    let k = key(Space::Lock, 20);
    let callers: Vec<_> = (0..CONCURRENT)
        .map(|c| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let value = format!("holder-{c}").into_bytes();
                s.put_new(&k, value.clone(), HOUR)
                    .await
                    .map(|won| won.then_some(value))
            })
        })
        .collect();
    let mut winners = Vec::new();
    for c in callers {
        if let Some(value) = c.await.unwrap().unwrap() {
            winners.push(value);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(s.get(&k).await, Ok(Some(winners[0].clone())));
}

async fn one_caller_takes_the_value(s: Arc<dyn Store>) {
    let k = key(Space::Fetch, 30);
    s.put(&k, b"the grant".to_vec(), HOUR).await.unwrap();
    let callers: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.take(&k).await })
        })
        .collect();
    let mut got = Vec::new();
    for c in callers {
        if let Some(value) = c.await.unwrap().unwrap() {
            got.push(value);
        }
    }
    assert_eq!(got, [b"the grant".to_vec()]);
}

async fn one_caller_releases_a_lock(s: Arc<dyn Store>) {
    let k = key(Space::Lock, 40);
    s.put_new(&k, b"holder".to_vec(), HOUR).await.unwrap();
    let callers: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.delete_if(&k, b"holder").await })
        })
        .collect();
    let mut released = 0;
    for c in callers {
        released += usize::from(c.await.unwrap().unwrap());
    }
    assert_eq!(released, 1);
}

async fn ping_answers(s: Arc<dyn Store>) {
    assert_eq!(s.ping().await, Ok(()));
}

/// One test per case and backend, so a failure names both.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::Backend::memory();
                    super::$case(backend.store.clone()).await;
                }
            )*
        }
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::Backend::embedded();
                    super::$case(backend.store.clone()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::Backend::redis();
                    super::$case(backend.store.clone()).await;
                }
            )*
        }
        mod sentinel {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::Backend::sentinel();
                    super::$case(backend.store.clone()).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::Backend::cluster();
                    super::$case(backend.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    put_get_and_delete,
    spaces_keep_equal_ids_apart,
    values_are_kept_byte_for_byte,
    put_new_sets_only_what_is_absent,
    take_returns_the_value_once,
    delete_if_removes_only_the_expected_value,
    versioned_writes_only_move_forward,
    expired_entries_are_absent_to_every_operation,
    a_ttl_is_reset_by_each_write,
    one_writer_wins_each_generation,
    one_caller_sets_an_absent_key,
    one_caller_takes_the_value,
    one_caller_releases_a_lock,
    ping_answers,
);
