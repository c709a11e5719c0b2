//! What the Redis store checks of the server and of what it reads back:
//! an eviction policy that can drop entries is reported at start (a log
//! line), in `/ready`'s details, in a metric and by `check-config`; a value
//! larger than any the broker writes is refused before it is decoded.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use oauth_broker::metrics::Metrics;
use oauth_broker::store::{RedisStore, Space, Store, StoreError};

use super::{key, redis_settings};
use crate::support::mock_provider::MockProvider;
use crate::support::process::{self, BIN};
use crate::support::redis::{RedisServer, Reply};

fn check_config(store: &str) -> String {
    let output = Command::new(BIN)
        .arg("check-config")
        .env_clear()
        .env("PUBLIC_URL", "https://oauth.example.com")
        .env("STORE", store)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn an_evicting_policy_is_reported_at_start_in_ready_metrics_and_check_config() {
    let redis = RedisServer::start();
    assert!(check_config(&redis.url()).contains("store eviction policy: noeviction; replicas: 0"));
    let set = redis.command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    assert_eq!(set, Reply::Status("OK".into()));

    let metrics = Arc::new(Metrics::new());
    let store = oauth_broker::store::open(&redis_settings(&redis.url(), "ev:"), metrics.clone())
        .await
        .unwrap();
    let details = store.details().expect("Redis has details");
    assert_eq!(details["eviction_policy"], "allkeys-lru", "{details}");
    assert_eq!(details["evicting"], true);
    assert_eq!(details["topology"], "direct");
    assert!(metrics.render().contains("oauth_broker_store_evicting 1"));

    let stdout = check_config(&redis.url());
    assert!(
        stdout.contains(
            "warning: the store's Redis may evict entries (maxmemory-policy allkeys-lru)"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(redis.password()), "{stdout}");

    let mock = MockProvider::start().await;
    let tmp = tempfile::tempdir().unwrap();
    crate::support::process::key_dir_with_primary(tmp.path());
    let mut env = crate::lifecycle::provider_env(&mock);
    env.push(("STORE", redis.url()));
    let server = process::start(&["serve"], &env, tmp.path());
    // Logged while the store opens, before the server listens.
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("../test-logs")
        .join(format!("child-{}.log", server.child.id()));
    let logged = std::fs::read_to_string(log).unwrap();
    let line = logged
        .lines()
        .find(|l| l.contains("may evict entries"))
        .unwrap_or_else(|| panic!("no warning at start:\n{logged}"));
    assert!(
        line.contains("allkeys-lru") && !line.contains(redis.password()),
        "{line}"
    );
    let ready: serde_json::Value = reqwest::get(format!("{}/ready", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"]["details"]["evicting"], true, "{ready}");
}

#[tokio::test]
async fn a_value_larger_than_any_the_broker_writes_is_refused() {
    let redis = RedisServer::start();
    let store = RedisStore::new(
        &secrecy::SecretString::from(redis.url()),
        "big:",
        Duration::from_secs(1),
    )
    .unwrap();
    let k = key(Space::Token, 1);
    let huge = format!(
        "p{}",
        "x".repeat(oauth_broker::store::redis::MAX_VALUE_LEN + 100)
    );
    let name = store.key_name(&k);
    assert_eq!(
        redis.command(&["SET", &name, &huge]),
        Reply::Status("OK".into())
    );
    assert!(matches!(store.get(&k).await, Err(StoreError::Failed(_))));
    assert!(matches!(
        store.get_versioned(&k).await,
        Err(StoreError::Failed(_))
    ));
    assert!(matches!(
        store
            .put(
                &k,
                vec![0; oauth_broker::store::redis::MAX_VALUE_LEN + 1],
                super::HOUR
            )
            .await,
        Err(StoreError::Failed(_))
    ));
}
