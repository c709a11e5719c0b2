//! The store on a real three-master Redis Cluster: the entries of one
//! login share a slot (a hash tag per login), a resharding under load is
//! followed (`MOVED`, `ASK`), and a rotating login runs through a broker
//! as on one Redis.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use oauth_broker::config::{StoreDefault, parse_store};
use oauth_broker::metrics::Metrics;
use oauth_broker::store::instrumented::InstrumentedStore;
use oauth_broker::store::{RedisStore, Space, Store};

use super::{HOUR, key};
use crate::support::broker::{Setup, server_key};
use crate::support::mock_provider::{MockProvider, Rotation};
use crate::support::redis_ha::{Cluster, Node};

fn store_on(cluster: &Cluster, prefix: &str) -> Arc<InstrumentedStore> {
    let settings = parse_store(
        Some(&cluster.url()),
        StoreDefault::Embedded,
        std::path::Path::new("."),
        prefix,
        500,
    )
    .expect("a valid STORE");
    let redis = RedisStore::open(&settings, None).unwrap();
    Arc::new(InstrumentedStore::new(
        Arc::new(redis),
        settings.timeout,
        &Metrics::new(),
    ))
}

fn keyslot(node: &Node, name: &str) -> String {
    node.cli(&["CLUSTER", "KEYSLOT", name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotating_login_runs_through_a_broker_and_its_entries_share_a_slot() {
    let cluster = Cluster::start(3);
    let store = store_on(&cluster, "cl:");
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUse);
    // Below the cache's margin: every refresh rotates.
    mock.set_access_token_lifetime(30);
    let server_key = server_key();
    let one = Setup::new(&mock, &["box.com"])
        .store(store.clone())
        .key(Arc::clone(&server_key))
        .build();
    let two = Setup::new(&mock, &["box.com"])
        .store(store_on(&cluster, "cl:"))
        .key(server_key)
        .build();
    let pasted = one.seal("box.com", &mock.issue_refresh_token());
    for (round, broker) in [&one, &two, &one, &two].into_iter().enumerate() {
        let reply = broker.refresh(&pasted).await;
        assert_eq!(reply.status, 200, "round {round}: {}", reply.body);
    }
    assert_eq!(mock.token_calls(), 4, "each round rotated");
    assert_eq!(mock.spent_token_presentations(), 0);

    let names = cluster.keys();
    let tagged: Vec<&String> = names.iter().filter(|n| n.starts_with("cl:{")).collect();
    assert!(
        tagged.iter().any(|n| n.contains("}rotation:")),
        "the rotation record is tagged: {names:?}"
    );
    let tags: BTreeSet<&str> = tagged
        .iter()
        .map(|n| &n[..n.find('}').unwrap() + 1])
        .collect();
    assert_eq!(tags.len(), 1, "one login, one tag: {names:?}");
    let slots: BTreeSet<String> = tagged
        .iter()
        .map(|n| keyslot(&cluster.nodes[0], n))
        .collect();
    assert_eq!(slots.len(), 1, "one login, one slot: {names:?}");
}

/// Moves `count` slots from the node on `from` to the node on `to`.
fn reshard(cluster: &Cluster, from: &Node, to: &Node, count: usize) {
    let id = |n: &Node| n.cli(&["CLUSTER", "MYID"]);
    let status = Command::new(std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into()))
        .args([
            "-a",
            &cluster.password,
            "--no-auth-warning",
            "--cluster",
            "reshard",
        ])
        .arg(format!("127.0.0.1:{}", from.port))
        .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
        .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli --cluster reshard");
    assert!(status.success(), "reshard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resharding_under_load_is_followed() {
    let cluster = Cluster::start(3);
    let store = store_on(&cluster, "rs:");
    const ENTRIES: u32 = 300;
    for n in 0..ENTRIES {
        store
            .put(&key(Space::Token, n), n.to_be_bytes().to_vec(), HOUR)
            .await
            .unwrap();
    }
    // Reads go on while a third of the slots move.
    let reader = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut failures = 0;
            for round in 0..40u32 {
                for n in (round % 7..ENTRIES).step_by(7) {
                    match store.get(&key(Space::Token, n)).await {
                        Ok(Some(v)) => assert_eq!(v, n.to_be_bytes().to_vec()),
                        Ok(None) => panic!("entry {n} vanished during the resharding"),
                        Err(_) => failures += 1,
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        })
    };
    let moved = {
        let (from, to) = (&cluster.nodes[0], &cluster.nodes[1]);
        tokio::task::block_in_place(|| reshard(&cluster, from, to, 2000));
        cluster.nodes[0].cli(&["CLUSTER", "COUNTKEYSINSLOT", "0"])
    };
    let failures = reader.await.unwrap();
    eprintln!(
        "resharding: {failures} reads failed while slots moved ({moved} keys left in slot 0)"
    );
    for n in 0..ENTRIES {
        assert_eq!(
            store.get(&key(Space::Token, n)).await,
            Ok(Some(n.to_be_bytes().to_vec())),
            "entry {n} after the resharding"
        );
    }
    store
        .put(&key(Space::Lock, 1), b"after".to_vec(), HOUR)
        .await
        .expect("writes go on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_waits_for_replicas_in_its_own_slot() {
    let cluster = Cluster::start(3);
    let mut settings = parse_store(
        Some(&cluster.url()),
        StoreDefault::Embedded,
        std::path::Path::new("."),
        "wait:",
        250,
    )
    .unwrap();
    // More replicas than the cluster has: every wait falls short, on the
    // node that holds the key.
    let problems = oauth_broker::config::apply_ha_options(&mut settings, None, Some("1"));
    assert!(problems.is_empty(), "{problems:?}");
    let store = RedisStore::open(&settings, None).unwrap();
    for n in 0..8 {
        let k = key(Space::Rotation, n);
        let record = oauth_broker::store::Versioned {
            generation: 1,
            value: b"sealed".to_vec(),
        };
        match store.put_versioned(&k, record, HOUR).await {
            Err(oauth_broker::store::StoreError::Failed(text)) => {
                assert!(text.contains("0 of 1 replica"), "{text}");
            }
            other => panic!("entry {n}: {other:?}"),
        }
        assert_eq!(
            store.get_versioned(&k).await.unwrap().map(|v| v.generation),
            Some(1),
            "entry {n} was written"
        );
    }
    store
        .put(&key(Space::Token, 1), b"t".to_vec(), HOUR)
        .await
        .expect("a cache entry does not wait");
}
