//! The store backends, each figure beside a baseline measured in the same
//! run (`scripts/bench-store.sh` runs this with a Redis and tabulates it):
//!
//! - embedded: a rotation write (`put_versioned`, flushed to disk) one at a
//!   time, p50 and p99, against a bare 100-byte write + `fdatasync` of a
//!   file in the same directory; the same write with 16 writers at once
//!   (group commit); a read;
//! - embedded: opening a store of 100,000 entries, after a clean close and
//!   after a crash (the process aborted mid-run), against opening an empty
//!   store;
//! - Redis (when `BENCH_REDIS_URL` is set): `get` through the store (bare
//!   and through the instrumented wrapper the broker uses), p50 and p99, for
//!   the script to set against `redis-benchmark -t get` on the same Redis.
//!
//! A custom harness rather than criterion: the figures wanted are
//! percentiles of single operations and one-off open times.
//!
//! Prints one `result <name> <value> <unit>` line per figure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oauth_broker::metrics::Metrics;
use oauth_broker::store::{
    EmbeddedStore, InstrumentedStore, RedisStore, Space, Store, StoreKey, Versioned,
};
use secrecy::SecretString;

const HOUR: Duration = Duration::from_secs(3600);
/// About the size of an encrypted refresh-token record.
const VALUE_LEN: usize = 256;
const FILL: u32 = 100_000;
/// Set in the child process that fills a store and dies without closing it.
const CRASH_CHILD: &str = "BENCH_STORE_CRASH_DIR";

fn key(space: Space, n: u32) -> StoreKey {
    // Spread like HMACs: consecutive n land far apart in key order.
    let mut id = [0u8; 32];
    let mixed = n.wrapping_mul(0x9e37_79b9).rotate_left(13) ^ n;
    id[..4].copy_from_slice(&mixed.to_be_bytes());
    id[4..8].copy_from_slice(&n.to_be_bytes());
    StoreKey::new(space, id)
}

fn value(n: u32) -> Vec<u8> {
    let mut v = vec![0x5a; VALUE_LEN];
    v[..4].copy_from_slice(&n.to_be_bytes());
    v
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("result {name}_p50 {:.1} us", us(percentile(samples, 0.5)));
    println!("result {name}_p99 {:.1} us", us(percentile(samples, 0.99)));
}

fn result(name: &str, value: f64, unit: &str) {
    println!("result {name} {value:.1} {unit}");
}

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-store");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `count` entries with `writers` concurrent writers.
async fn fill(store: &Arc<EmbeddedStore>, count: u32, writers: u32) {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let mut n = w;
                while n < count {
                    let v = Versioned {
                        generation: 1,
                        value: value(n),
                    };
                    store
                        .put_versioned(&key(Space::Rotation, n), v, HOUR)
                        .await
                        .unwrap();
                    n += writers;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// The floor of a durable write: 100 bytes written and `fdatasync`ed.
fn bare_fsync(dir: &Path, rounds: usize) -> Vec<Duration> {
    let mut file = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    (0..rounds)
        .map(|i| {
            let started = Instant::now();
            file.write_all(&[i as u8; 100]).unwrap();
            file.sync_data().unwrap();
            started.elapsed()
        })
        .collect()
}

async fn embedded_writes(dir: &Path) {
    let store = Arc::new(EmbeddedStore::open(&dir.join("writes")).unwrap());
    fill(&store, 10_000, 64).await;
    let rounds = 2_000;
    let mut one_at_a_time: Vec<Duration> = Vec::with_capacity(rounds);
    for i in 0..rounds as u32 {
        let n = i % 10_000;
        let v = Versioned {
            generation: u64::from(i) + 2,
            value: value(n),
        };
        let started = Instant::now();
        store
            .put_versioned(&key(Space::Rotation, n), v, HOUR)
            .await
            .unwrap();
        one_at_a_time.push(started.elapsed());
    }
    report("embedded_put_versioned", &mut one_at_a_time);
    report("bare_fsync", &mut bare_fsync(dir, rounds));

    // 16 writers at once: each waits for the commit that carries its write.
    let writers = 16u32;
    let per_writer = 250u32;
    let started_all = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_writer as usize);
                for i in 0..per_writer {
                    let n = (w * per_writer + i) % 10_000;
                    let v = Versioned {
                        generation: 1_000_000 + u64::from(i),
                        value: value(n),
                    };
                    let started = Instant::now();
                    store
                        .put_versioned(&key(Space::Rotation, n), v, HOUR)
                        .await
                        .unwrap();
                    samples.push(started.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut concurrent = Vec::new();
    for t in tasks {
        concurrent.extend(t.await.unwrap());
    }
    let elapsed = started_all.elapsed();
    report("embedded_put_versioned_16_writers", &mut concurrent);
    result(
        "embedded_put_versioned_16_writers_rate",
        f64::from(writers * per_writer) / elapsed.as_secs_f64(),
        "writes/s",
    );

    let mut reads = Vec::with_capacity(rounds);
    for i in 0..rounds as u32 {
        let k = key(Space::Rotation, (i * 7) % 10_000);
        let started = Instant::now();
        store.get_versioned(&k).await.unwrap().unwrap();
        reads.push(started.elapsed());
    }
    report("embedded_get_versioned", &mut reads);
}

/// Median time to open `path` (the store is closed after each open).
fn open_time(dir: &Path, runs: usize) -> Duration {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let store = EmbeddedStore::open(dir).unwrap();
            let took = started.elapsed();
            drop(store);
            took
        })
        .collect();
    samples.sort_unstable();
    percentile(&samples, 0.5)
}

async fn embedded_open(dir: &Path) {
    let empty = dir.join("empty");
    drop(EmbeddedStore::open(&empty).unwrap());
    let full = dir.join("full");
    {
        let store = Arc::new(EmbeddedStore::open(&full).unwrap());
        fill(&store, FILL, 64).await;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    result("embedded_open_empty", ms(open_time(&empty, 9)), "ms");
    result("embedded_open_100k", ms(open_time(&full, 9)), "ms");
    let size = std::fs::metadata(full.join("store.redb")).unwrap().len();
    result("embedded_file_100k", size as f64 / 1e6, "MB");

    // A crash: a child process opens the full store, writes, and aborts
    // without closing it. The next open recovers.
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CRASH_CHILD, &full)
        .status()
        .unwrap();
    assert!(!status.success(), "the child was to abort");
    let started = Instant::now();
    let store = EmbeddedStore::open(&full).unwrap();
    result(
        "embedded_open_100k_after_crash",
        ms(started.elapsed()),
        "ms",
    );
    drop(store);
}

fn crash_child(dir: &str) -> ! {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = EmbeddedStore::open(Path::new(dir)).unwrap();
        for n in 0..100 {
            let v = Versioned {
                generation: 2,
                value: value(n),
            };
            store
                .put_versioned(&key(Space::Rotation, n), v, HOUR)
                .await
                .unwrap();
        }
        // No destructor runs: the file is left as a crash leaves it.
        std::process::abort()
    })
}

async fn redis_get(url: &str) {
    let rounds = 20_000;
    let url = SecretString::from(url.to_string());
    let bare: Arc<dyn Store> =
        Arc::new(RedisStore::new(&url, "bench:", Duration::from_secs(1)).unwrap());
    let metrics = Metrics::new();
    let wrapped: Arc<dyn Store> = Arc::new(InstrumentedStore::new(
        Arc::clone(&bare),
        Duration::from_millis(250),
        &metrics,
    ));
    let k = key(Space::Token, 1);
    bare.put(&k, value(1), HOUR).await.unwrap();
    for (name, store) in [("redis_get", bare), ("redis_get_instrumented", wrapped)] {
        for _ in 0..2_000 {
            store.get(&k).await.unwrap();
        }
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            store.get(&k).await.unwrap().unwrap();
            samples.push(started.elapsed());
        }
        report(name, &mut samples);
    }
}

fn main() {
    if let Ok(dir) = std::env::var(CRASH_CHILD) {
        crash_child(&dir);
    }
    // `cargo bench` passes `--bench`; a filter argument picks parts.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |part: &str| filter.is_empty() || filter.iter().any(|f| part.contains(f.as_str()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = scratch();
        if wanted("embedded_writes") {
            embedded_writes(&dir).await;
        }
        if wanted("embedded_open") {
            embedded_open(&dir).await;
        }
        if wanted("redis_get") {
            match std::env::var("BENCH_REDIS_URL") {
                Ok(url) => redis_get(&url).await,
                Err(_) => eprintln!("BENCH_REDIS_URL not set: Redis part skipped"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
