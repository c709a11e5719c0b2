//! The store behind Redis Sentinel, on real processes: a master killed
//! with SIGKILL while two `serve` processes rotate Box and Jottacloud
//! logins (the replica is promoted, both processes follow, no spent token
//! reaches a provider, no login is lost); a replica that stops answering
//! (`WAIT` falls short: the client is served, a metric counts it);
//! sentinels unreachable at start; malformed URLs.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oauth_broker::authid::Claims;
use oauth_broker::authid::keydir::KeyDir;
use oauth_broker::clock::{Clock, SystemClock};
use oauth_broker::config::{StoreDefault, StoreSettings, parse_store};
use oauth_broker::metrics::Metrics;
use oauth_broker::secret::Sensitive;
use oauth_broker::store::instrumented::InstrumentedStore;
use oauth_broker::store::{RedisStore, Space, Store, StoreError, Versioned};
use serde_json::Value;

use super::{HOUR, key};
use crate::support::broker::{CLIENT_ID, CLIENT_SECRET, Setup, entries_for};
use crate::support::mock_provider::{MockProvider, Rotation};
use crate::support::process::{self, BIN};
use crate::support::redis_ha::SentinelSet;

/// Logins of each provider that rotate through the failover.
const LOGINS: usize = 3;
/// Longest a rotating login may wait for the new master.
const MOST_WAIT: Duration = Duration::from_secs(30);

fn settings(url: &str, timeout_ms: u64) -> StoreSettings {
    parse_store(
        Some(url),
        StoreDefault::Embedded,
        std::path::Path::new("."),
        "ha-test:",
        timeout_ms,
    )
    .expect("a valid STORE")
}

/// The environment of a `serve` process rotating both providers on `store`.
fn serve_env(
    boxcom: &MockProvider,
    jotta: &MockProvider,
    store: &str,
) -> Vec<(&'static str, String)> {
    boxcom.set_client(CLIENT_ID, CLIENT_SECRET);
    jotta.set_client("jottacli", "");
    let mut entries = entries_for(boxcom, &["box.com"]);
    entries.extend(entries_for(jotta, &["jottacloud"]));
    for entry in &mut entries {
        entry["rateLimit"] = serde_json::json!({"perSecond": 10000, "burst": 10000});
    }
    vec![
        ("CONFIGFILE", Value::Array(entries).to_string()),
        (
            "SECRETS",
            format!(r#"{{"TEST_SECRET": "{CLIENT_SECRET}"}}"#),
        ),
        ("SERVICES", "box.com,jottacloud".into()),
        ("STORE", store.to_string()),
        ("LOGIN_REFRESHES_PER_HOUR", "100000".into()),
        ("LOGIN_REQUESTS_PER_HOUR", "100000".into()),
    ]
}

/// One `/refresh`: the status and the body.
async fn refresh(
    client: &reqwest::Client,
    base: &str,
    authid: &str,
) -> (u16, Value, Option<String>) {
    let response = client
        .get(format!("{base}/refresh"))
        .header("X-AuthID", authid)
        .send()
        .await
        .expect("the broker answers");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, response.json().await.unwrap_or(Value::Null), retry)
}

async fn json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_while_two_serve_processes_rotate_loses_no_login() {
    let set = SentinelSet::start(true, 3);
    let boxcom = MockProvider::start().await;
    boxcom.set_rotation(Rotation::SingleUse);
    let jotta = MockProvider::start().await;
    jotta.set_rotation(Rotation::SingleUseReuseDetection);
    // Below the cache's margin: every refresh reaches the provider.
    boxcom.set_access_token_lifetime(30);
    jotta.set_access_token_lifetime(30);
    let tmp = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(tmp.path().join("keys"));
    keys.generate(SystemClock.now(), true).unwrap();
    let env = serve_env(&boxcom, &jotta, &set.url());
    let servers = [
        process::start(&["serve"], &env, tmp.path()),
        process::start(&["serve"], &env, tmp.path()),
    ];
    let ring = keys.load().unwrap();
    let logins: Vec<(&str, String)> = (0..2 * LOGINS)
        .map(|i| {
            let (id, mock) = if i % 2 == 0 {
                ("box.com", &boxcom)
            } else {
                ("jottacloud", &jotta)
            };
            let claims = Claims::new(
                id,
                Sensitive::new(mock.issue_refresh_token()),
                SystemClock.now(),
            );
            (id, ring.seal(&claims).unwrap())
        })
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Both processes wait for the replica before handing a rotation out.
    for server in &servers {
        wait_for_replica_acks(&client, &server.base).await;
    }
    for round in 0..3 {
        for (i, (id, authid)) in logins.iter().enumerate() {
            let (status, body, _) = refresh(&client, &servers[(round + i) % 2].base, authid).await;
            assert_eq!(status, 200, "{id} before the failover: {body}");
        }
    }
    let old_master = set.master.port;
    let mut set = set;
    set.master.kill();
    let killed = Instant::now();

    // Rotate on, alternating processes, until every login was served
    // again, and two rounds more.
    let (longest, waits) = rotate_until_all_served(&client, &servers, &logins, killed).await;
    eprintln!(
        "failover: rotating logins waited at most {longest:?} after the master was killed ({waits} answers were 503 + Retry-After)"
    );
    let new_master = set.named_master().expect("the sentinels name a master");
    assert_ne!(new_master, old_master, "the replica was promoted");
    assert_eq!(Some(new_master), set.replica.as_ref().map(|r| r.port));
    assert_eq!(
        boxcom.spent_token_presentations(),
        0,
        "a spent Box token reached the provider"
    );
    assert_eq!(
        jotta.spent_token_presentations(),
        0,
        "a spent Jottacloud token reached the provider"
    );
    for server in &servers {
        let metrics = client
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("oauth_broker_store_master_changes_total 1"),
            "each process moved to the new master once"
        );
    }
}

/// A store on `set` reporting to `metrics`, with INFO read.
async fn store_on(set: &SentinelSet, metrics: &Metrics) -> Arc<InstrumentedStore> {
    let settings = settings(&set.url(), 250);
    let redis = RedisStore::open(&settings, Some(metrics.store_redis.clone())).unwrap();
    let store = Arc::new(InstrumentedStore::new(
        Arc::new(redis),
        settings.timeout,
        metrics,
    ));
    store.ping().await.expect("the store answers");
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_stops_answering_leaves_a_rotation_served_and_counted() {
    let set = SentinelSet::start(true, 1);
    let metrics = Metrics::new();
    let store = store_on(&set, &metrics).await;
    assert_eq!(store.details().unwrap()["replica_acks"], 1);
    let record = |generation| Versioned {
        generation,
        value: b"sealed".to_vec(),
    };
    let k = key(Space::Rotation, 1);
    assert_eq!(
        store.put_versioned(&k, record(1), HOUR).await,
        Ok(true),
        "acknowledged"
    );

    let replica = set.replica.as_ref().unwrap();
    replica.signal("STOP");
    match store.put_versioned(&k, record(2), HOUR).await {
        Err(StoreError::Failed(text)) => assert!(text.contains("replica"), "{text}"),
        other => panic!("an unacknowledged rotation gave {other:?}"),
    }
    assert_eq!(
        store.get_versioned(&k).await.unwrap().map(|v| v.generation),
        Some(2),
        "the master has it"
    );
    store
        .put(&key(Space::Token, 1), b"cached".to_vec(), HOUR)
        .await
        .expect("a cache entry does not wait for replicas");
    assert!(
        metrics
            .render()
            .contains(r#"oauth_broker_store_unacknowledged_writes_total{space="rotation"} 1"#),
        "{}",
        metrics.render()
    );

    // Through the broker: the client gets its token and the new AuthID.
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUse);
    let broker = Setup::new(&mock, &["box.com"]).store(store.clone()).build();
    let authid = broker.seal("box.com", &mock.issue_refresh_token());
    let reply = broker.refresh(&authid).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["v2_authid"].is_string());
    assert!(
        broker
            .app
            .metrics()
            .render()
            .contains("oauth_broker_rotations_unrecorded_total")
    );
    assert!(
        metrics
            .render()
            .contains(r#"oauth_broker_store_unacknowledged_writes_total{space="rotation"} 2"#)
    );
    replica.signal("CONT");
    let k3 = key(Space::Rotation, 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.put_versioned(&k3, record(3), HOUR).await != Ok(true) {
        assert!(
            Instant::now() < deadline,
            "the replica never acknowledged again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(mock.spent_token_presentations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinels_unreachable_at_start_are_used_once_they_answer() {
    let mut set = SentinelSet::start(false, 1);
    set.sentinels[0].kill();
    let settings = settings(&set.url(), 250);
    let store = oauth_broker::store::open(&settings, Arc::new(Metrics::new()))
        .await
        .expect("the start does not wait for the sentinels");
    let k = key(Space::Token, 1);
    assert!(matches!(
        store.get(&k).await,
        Err(StoreError::Unavailable(_))
    ));
    set.sentinels[0].restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.put(&k, b"v".to_vec(), HOUR).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the store never reached the master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.get(&k).await, Ok(Some(b"v".to_vec())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_with_their_own_password_need_store_sentinel_password() {
    let set = SentinelSet::start_with(false, 1, Some("sentinel-secret-7"));
    let k = key(Space::Token, 1);
    let mut settings = settings(&set.url(), 250);
    let without = RedisStore::open(&settings, None).unwrap();
    match without.get(&k).await {
        Err(StoreError::Unavailable(text)) => assert!(!text.contains(&set.password), "{text}"),
        other => panic!("sentinels refusing the client gave {other:?}"),
    }
    let problems =
        oauth_broker::config::apply_ha_options(&mut settings, Some("sentinel-secret-7"), None);
    assert!(problems.is_empty(), "{problems:?}");
    let with = RedisStore::open(&settings, None).unwrap();
    with.put(&k, b"v".to_vec(), HOUR).await.unwrap();
    assert_eq!(with.get(&k).await, Ok(Some(b"v".to_vec())));
}

#[tokio::test]
async fn serve_starts_while_no_sentinel_answers() {
    let boxcom = MockProvider::start().await;
    let jotta = MockProvider::start().await;
    let tmp = tempfile::tempdir().unwrap();
    KeyDir::new(tmp.path().join("keys"))
        .generate(SystemClock.now(), true)
        .unwrap();
    let nobody = crate::support::redis_ha::free_port();
    let url = format!("redis+sentinel://:pw@127.0.0.1:{nobody}/{}", "brokermaster");
    let server = process::start(&["serve"], &serve_env(&boxcom, &jotta, &url), tmp.path());
    let client = reqwest::Client::new();
    let ready = json(&client, &format!("{}/ready", server.base)).await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["store"]["up"], false, "{ready}");
}

#[test]
fn malformed_sentinel_and_cluster_urls_stop_the_start_naming_store() {
    let tmp = tempfile::tempdir().unwrap();
    for url in [
        "redis+sentinel://:hunter2@127.0.0.1:26379",
        "redis+sentinel://:hunter2@127.0.0.1:0/m",
        "rediss+sentinel://:hunter2@/m",
        "redis+cluster://:hunter2@127.0.0.1:7000/5",
        "redis+cluster://:hunter2@127.0.0.1:port",
    ] {
        let output = Command::new(BIN)
            .arg("serve")
            .current_dir(tmp.path())
            .env_clear()
            .env("PUBLIC_URL", "https://oauth.example.com")
            .env("STORE", url)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{url}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("STORE:"), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{url}: {stderr}");
    }
}

/// Waits until the broker at `base` sees the replica and will wait for its
/// acknowledgement.
async fn wait_for_replica_acks(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = json(client, &format!("{base}/ready")).await;
        if ready["store"]["details"]["replica_acks"] == 1 && ready["store"]["up"] == true {
            assert_eq!(ready["store"]["details"]["topology"], "sentinel");
            assert_eq!(ready["store"]["details"]["eviction_policy"], "noeviction");
            return;
        }
        assert!(Instant::now() < deadline, "never saw the replica: {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Refreshes every login, alternating processes, until each was served
/// again after `killed`, and two rounds more: the longest wait and the
/// number of 503 answers.
async fn rotate_until_all_served(
    client: &reqwest::Client,
    servers: &[process::Server],
    logins: &[(&str, String)],
    killed: Instant,
) -> (Duration, usize) {
    let mut served_again: Vec<Option<Duration>> = vec![None; logins.len()];
    let mut waits = 0;
    let mut extra_rounds = 0;
    for round in 0.. {
        for (i, (id, authid)) in logins.iter().enumerate() {
            let (status, body, retry) =
                refresh(client, &servers[(round + i) % 2].base, authid).await;
            match status {
                200 => {
                    served_again[i].get_or_insert(killed.elapsed());
                }
                503 => {
                    assert!(retry.is_some(), "{id}: a 503 says when to retry");
                    waits += 1;
                }
                other => panic!("{id} during the failover: {other} {body}"),
            }
        }
        if served_again.iter().all(Option::is_some) {
            extra_rounds += 1;
            if extra_rounds > 2 {
                break;
            }
        }
        assert!(
            killed.elapsed() < MOST_WAIT,
            "not every login is served again: {served_again:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let longest = served_again
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or_default();
    (longest, waits)
}
