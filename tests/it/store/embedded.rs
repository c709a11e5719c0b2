//! The embedded store: what it keeps across a reopen and a `kill -9`, how
//! it refuses a second process on its directory, and how it sweeps
//! expired entries.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oauth_broker::config::{StoreBackend, StoreSettings};
use oauth_broker::store::embedded::EmbeddedOptions;
use oauth_broker::store::{EmbeddedStore, Space, Store, Versioned};

use super::{HOUR, key, metrics};
use crate::support::broker::{CLIENT_ID, CLIENT_SECRET, config_for};
use crate::support::mock_provider::MockProvider;
use crate::support::process::{self, BIN};

/// Set in a child process that plays a broker writing to `DATA_DIR`.
const CHILD_DIR: &str = "STORE_TEST_CHILD_DIR";
/// What the child does: `write` (in a loop, until killed) or `hold`.
const CHILD_ROLE: &str = "STORE_TEST_CHILD_ROLE";

fn versioned(generation: u64, value: &[u8]) -> Versioned {
    Versioned {
        generation,
        value: value.to_vec(),
    }
}

fn refused(result: Result<impl Sized, String>) -> String {
    match result {
        Ok(_) => panic!("a second opener was let in"),
        Err(e) => e,
    }
}

fn assert_names_data_dir_and_redis(message: &str, dir: &Path) {
    assert!(message.contains("DATA_DIR"), "{message}");
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("STORE=redis://"), "{message}");
}

#[tokio::test]
async fn a_reopened_store_keeps_its_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let store = EmbeddedStore::open(&dir).unwrap();
        store
            .put_versioned(&key(Space::Rotation, 1), versioned(4, b"rt-4"), HOUR)
            .await
            .unwrap();
        store
            .put(&key(Space::Fetch, 1), b"grant".to_vec(), HOUR)
            .await
            .unwrap();
        // Not flushed on its own, but kept by a clean close.
        store
            .put(&key(Space::Token, 1), b"access".to_vec(), HOUR)
            .await
            .unwrap();
        store
            .put(
                &key(Space::Token, 2),
                b"gone".to_vec(),
                Duration::from_millis(1),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let store = EmbeddedStore::open(&dir).unwrap();
    assert_eq!(
        store.get_versioned(&key(Space::Rotation, 1)).await,
        Ok(Some(versioned(4, b"rt-4")))
    );
    assert_eq!(
        store.get(&key(Space::Fetch, 1)).await,
        Ok(Some(b"grant".to_vec()))
    );
    assert_eq!(
        store.get(&key(Space::Token, 1)).await,
        Ok(Some(b"access".to_vec()))
    );
    assert_eq!(
        store.get(&key(Space::Token, 2)).await,
        Ok(None),
        "expiry holds across a restart"
    );
    assert_eq!(
        store
            .put_versioned(&key(Space::Rotation, 1), versioned(4, b"stale"), HOUR)
            .await,
        Ok(false),
        "the generation holds across a restart"
    );
}

#[tokio::test]
async fn a_second_opener_of_the_directory_is_refused_until_the_first_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = EmbeddedStore::open(&dir).unwrap();
    assert_names_data_dir_and_redis(&refused(EmbeddedStore::open(&dir)), &dir);

    // The same through the broker's own opening of its configured store.
    let settings = StoreSettings {
        backend: StoreBackend::Embedded { dir: dir.clone() },
        ..StoreSettings::memory()
    };
    let message = refused(oauth_broker::store::open(&settings, metrics()).await);
    assert_names_data_dir_and_redis(&message, &dir);

    drop(first);
    let again = oauth_broker::store::open(&settings, metrics())
        .await
        .unwrap();
    assert_eq!(again.kind(), "embedded");
}

/// Starts this test binary again as a child that runs `child_entry` with
/// `role` on `dir`; its stdout is piped.
fn spawn_child(dir: &Path, role: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "store::embedded::child_entry",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Not a test: the body of the child processes the tests below start
/// (ignored, so a normal run skips it).
#[test]
#[ignore = "run by other tests as a child process"]
fn child_entry() {
    let (Ok(dir), Ok(role)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ROLE)) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(EmbeddedStore::open(Path::new(&dir)).unwrap());
        // The harness printed "test ... " without a line end; end it, so
        // the parent reads whole lines of ours.
        println!();
        println!("opened");
        if role == "hold" {
            // Hold the directory until the parent closes stdin.
            let _ = tokio::task::spawn_blocking(|| {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)
            })
            .await;
            return;
        }
        // Eight writers at once, so commits carry several writes; each
        // write is reported only once the store has acknowledged it.
        let writers: Vec<_> = (0..8u32)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for i in 0..1_000_000u32 {
                        let n = i * 8 + w;
                        let value = format!("rt-{n}").into_bytes();
                        let stored = store
                            .put_versioned(
                                &key(Space::Rotation, n),
                                versioned(u64::from(n) + 1, &value),
                                HOUR,
                            )
                            .await;
                        assert_eq!(stored, Ok(true));
                        // Lost harmlessly in a crash; must not damage the rest.
                        let _ = store
                            .put(&key(Space::Token, n), b"access".to_vec(), HOUR)
                            .await;
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ack {n}");
                        let _ = out.flush();
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() {
    crate::support::logs::install();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut child = spawn_child(&dir, "write");
    let stdout = child.stdout.take().unwrap();
    let acked = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut acked = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Kill in the middle of writing, after a few hundred acknowledgements.
        while acked.len() < 400 && Instant::now() < deadline {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(n) = line.strip_prefix("ack ") {
                        acked.push(n.parse::<u32>().unwrap());
                    }
                }
                _ => break,
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // What the child printed before it died was acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("ack ") {
                acked.push(n.parse::<u32>().unwrap());
            }
        }
        acked
    })
    .await
    .unwrap();
    assert!(acked.len() >= 400, "the child wrote only {}", acked.len());

    let store = EmbeddedStore::open(&dir).unwrap();
    assert!(
        crate::support::logs::captured().contains("not closed cleanly"),
        "the reopen went through crash recovery"
    );
    for n in &acked {
        assert_eq!(
            store.get_versioned(&key(Space::Rotation, *n)).await,
            Ok(Some(versioned(
                u64::from(*n) + 1,
                format!("rt-{n}").as_bytes()
            ))),
            "acknowledged write {n} is lost"
        );
    }
    // The store still works for writes after its recovery.
    assert_eq!(
        store
            .put_versioned(&key(Space::Rotation, 0), versioned(1, b"x"), HOUR)
            .await,
        Ok(false),
        "write 0 (generation 1) was acknowledged before"
    );
    store
        .put(&key(Space::Lock, 1), b"after".to_vec(), HOUR)
        .await
        .unwrap();
}

#[tokio::test]
async fn another_process_on_the_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut child = spawn_child(&dir, "hold");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let opened = tokio::task::spawn_blocking(move || {
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line == "opened")
    })
    .await
    .unwrap();
    assert!(opened, "the child did not open the store");

    assert_names_data_dir_and_redis(&refused(EmbeddedStore::open(&dir)), &dir);

    drop(child.stdin.take());
    child.wait().unwrap();
    EmbeddedStore::open(&dir).expect("free once the other process is gone");
}

#[tokio::test]
async fn a_second_serve_on_one_data_dir_exits_with_the_reason() {
    let mock = MockProvider::start().await;
    mock.set_client(CLIENT_ID, CLIENT_SECRET);
    let tmp = tempfile::tempdir().unwrap();
    crate::support::process::key_dir_with_primary(tmp.path());
    let env = vec![
        ("CONFIGFILE", config_for(&mock, &["googledrive"])),
        (
            "SECRETS",
            format!(r#"{{"TEST_SECRET": "{CLIENT_SECRET}"}}"#),
        ),
        ("SERVICES", "googledrive".to_string()),
    ];
    let _first = process::start(&["serve"], &env, tmp.path());
    assert!(
        tmp.path().join("data").is_dir(),
        "DATA_DIR defaults to ./data"
    );

    let second = tokio::task::spawn_blocking({
        let dir = tmp.path().to_path_buf();
        let env = env.clone();
        move || {
            let mut command = Command::new(BIN);
            command
                .arg("serve")
                .current_dir(dir)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("LISTEN", "127.0.0.1:0")
                .stdin(Stdio::null());
            for (k, v) in env {
                command.env(k, v);
            }
            command.output().unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_names_data_dir_and_redis(&stderr, Path::new("./data"));
}

#[tokio::test]
async fn a_sweep_pass_goes_on_while_it_finds_expired_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        sweep_interval: Duration::from_secs(3600),
        sweep_limit: 4,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open_with(&tmp.path().join("data"), options).unwrap();
    for n in 0..10 {
        store
            .put(
                &key(Space::Token, n),
                b"short".to_vec(),
                Duration::from_millis(20),
            )
            .await
            .unwrap();
    }
    for n in 10..15 {
        store
            .put(&key(Space::Token, n), b"long".to_vec(), HOUR)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        store.entry_count().await,
        Ok(15),
        "expired but not yet swept"
    );

    // Stretches of 4 entries, one after another while they find expired
    // ones: keys are HMACs, so the expired ones are spread over the table,
    // and one pass removes more than one stretch's worth.
    let mut removed = store.sweep().await.unwrap();
    assert!(removed > 4, "one pass removed only {removed}");
    for _ in 0..10 {
        if removed == 10 {
            break;
        }
        removed += store.sweep().await.unwrap();
    }
    assert_eq!(removed, 10);
    assert_eq!(store.entry_count().await, Ok(5));
    for n in 10..15 {
        assert_eq!(
            store.get(&key(Space::Token, n)).await,
            Ok(Some(b"long".to_vec()))
        );
    }
}

#[tokio::test]
async fn the_file_size_is_reported_and_a_mostly_free_file_is_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let gauge =
        prometheus_client::metrics::gauge::Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    let options = EmbeddedOptions {
        sweep_interval: Duration::from_secs(3600),
        compact_above: 64 * 1024,
        file_bytes: gauge.clone(),
        ..EmbeddedOptions::default()
    };
    let dir = tmp.path().join("data");
    let store = EmbeddedStore::open_with(&dir, options).unwrap();
    for n in 0..300u32 {
        store
            .put(
                &key(Space::Fetch, n),
                vec![7u8; 16 * 1024],
                Duration::from_millis(20),
            )
            .await
            .unwrap();
    }
    let grown = std::fs::metadata(store.path()).unwrap().len();
    assert!(grown > 2 << 20, "{grown} bytes");
    tokio::time::sleep(Duration::from_millis(80)).await;
    let mut removed = 0;
    for _ in 0..20 {
        removed += store.sweep().await.unwrap();
        if removed == 300 {
            break;
        }
    }
    assert_eq!(removed, 300);
    let after = std::fs::metadata(store.path()).unwrap().len();
    assert!(after < grown / 2, "compacted from {grown} to {after} bytes");
    assert_eq!(gauge.get(), after as i64, "the gauge shows the file's size");
}

#[tokio::test]
async fn the_background_sweep_removes_expired_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        sweep_interval: Duration::from_millis(20),
        sweep_limit: 1_000,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open_with(&tmp.path().join("data"), options).unwrap();
    for n in 0..50 {
        store
            .put(
                &key(Space::Backoff, n),
                b"x".to_vec(),
                Duration::from_millis(10),
            )
            .await
            .unwrap();
    }
    store
        .put(&key(Space::Backoff, 1000), b"kept".to_vec(), HOUR)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.entry_count().await.unwrap() > 1 {
        assert!(Instant::now() < deadline, "the sweep never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.get(&key(Space::Backoff, 1000)).await,
        Ok(Some(b"kept".to_vec()))
    );
}

#[tokio::test]
async fn anonymous_login_pages_with_fetch_tokens_do_not_grow_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&tmp.path().join("data")).unwrap());
    let mock = MockProvider::start().await;
    let broker = crate::support::broker::Setup::new(&mock, &["googledrive"])
        .store(Arc::clone(&store) as Arc<dyn Store>)
        .limits(oauth_broker::config::Limits {
            login_attempts_per_minute: 5,
            ..oauth_broker::config::Limits::default()
        })
        .build();
    let mut statuses = Vec::new();
    for n in 0..200 {
        let request = axum::http::Request::builder()
            .uri(format!("/?type=googledrive&token=made-up-token-{n:06}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let reply = broker.request_from("198.51.100.20", request).await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 195);
    assert_eq!(
        store.entry_count().await,
        Ok(5),
        "only what the address's login budget allowed was written"
    );
}
