//! The Redis store against a real `redis-server`: its password, its key
//! prefix, an outage (every call fails within the bound, nothing hangs)
//! and the return of Redis with its data (the same store object
//! reconnects).

use std::time::{Duration, Instant};

use oauth_broker::store::{RedisStore, Space, Store, StoreError, Versioned};
use secrecy::SecretString;

use super::{HOUR, key, metrics, redis_settings};
use crate::support::redis::{RedisServer, Reply};

/// Bounds a whole test step: a hang fails the test instead of blocking it.
async fn bounded<T>(step: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), step)
        .await
        .expect("a store call hung")
}

fn raw_store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::new(
        &SecretString::from(url.to_string()),
        prefix,
        Duration::from_secs(1),
    )
    .unwrap()
}

#[tokio::test]
async fn a_wrong_or_missing_password_is_unavailable_and_never_shown() {
    let redis = RedisServer::start();
    let wrong = raw_store(&redis.url_with_password("not-the-password-0x"), "p:");
    match bounded(wrong.get(&key(Space::Token, 1))).await {
        Err(StoreError::Unavailable(text)) => {
            assert!(!text.contains("not-the-password-0x"), "{text}")
        }
        other => panic!("a wrong password gave {other:?}"),
    }
    assert!(matches!(
        bounded(wrong.put(&key(Space::Token, 1), b"x".to_vec(), HOUR)).await,
        Err(StoreError::Unavailable(_))
    ));

    let none = raw_store(&redis.url_without_password(), "p:");
    assert!(matches!(
        bounded(none.get(&key(Space::Token, 1))).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(redis.keys("*").is_empty(), "nothing was written");

    let right = raw_store(&redis.url(), "p:");
    assert_eq!(bounded(right.get(&key(Space::Token, 1))).await, Ok(None));
}

#[tokio::test]
async fn keys_carry_the_prefix_and_values_are_opaque() {
    let redis = RedisServer::start();
    let store = raw_store(&redis.url(), "tenant-a:");
    let k = key(Space::Lock, 5);
    store.put_new(&k, b"holder".to_vec(), HOUR).await.unwrap();
    store
        .put_versioned(
            &key(Space::Rotation, 5),
            Versioned {
                generation: 2,
                value: b"rt".to_vec(),
            },
            HOUR,
        )
        .await
        .unwrap();
    let mut keys = redis.keys("*");
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("tenant-a:lock:{}", hex::encode(k.id)),
            format!(
                "tenant-a:rotation:{}",
                hex::encode(key(Space::Rotation, 5).id)
            ),
        ]
    );
    // The entry expires in Redis itself.
    let Reply::Integer(ttl) = redis.command(&["PTTL", &keys[0]]) else {
        panic!("PTTL");
    };
    assert!(ttl > 0 && ttl <= 3_600_000, "{ttl}");

    // Another prefix on the same Redis sees none of it.
    let other = raw_store(&redis.url(), "tenant-b:");
    assert_eq!(other.get(&k).await, Ok(None));
    assert_eq!(other.put_new(&k, b"other".to_vec(), HOUR).await, Ok(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_every_call_in_time_and_the_same_store_comes_back_with_the_data() {
    let mut redis = RedisServer::start();
    let m = metrics();
    let store = oauth_broker::store::open(&redis_settings(&redis.url(), "ob:"), m.clone())
        .await
        .unwrap();
    let rotation = key(Space::Rotation, 1);
    let v = |generation| Versioned {
        generation,
        value: format!("rt-{generation}").into_bytes(),
    };
    assert_eq!(store.put_versioned(&rotation, v(1), HOUR).await, Ok(true));
    assert!(store.state().up);

    redis.stop();
    for _ in 0..3 {
        let results = bounded(async {
            (
                store.get_versioned(&rotation).await,
                store.put_versioned(&rotation, v(2), HOUR).await.map(|_| ()),
                store
                    .put_new(&key(Space::Lock, 1), b"t".to_vec(), HOUR)
                    .await
                    .map(|_| ()),
                store.ping().await,
            )
        })
        .await;
        assert!(results.0.is_err(), "{results:?}");
        assert!(results.1.is_err() && results.2.is_err() && results.3.is_err());
        for e in [results.1, results.2, results.3] {
            assert!(matches!(
                e,
                Err(StoreError::Timeout | StoreError::Unavailable(_))
            ));
        }
    }
    let state = store.state();
    assert!(!state.up);
    assert!(matches!(
        state.last_error_kind,
        Some("timeout" | "unavailable")
    ));
    let text = m.render();
    assert!(text.contains("oauth_broker_store_up 0"), "{text}");
    assert!(
        text.contains(
            r#"oauth_broker_store_operations_total{op="get_versioned",outcome="error"} 3"#
        ),
        "{text}"
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let back = loop {
        match store.get_versioned(&rotation).await {
            Ok(found) => break found,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the store did not reconnect: {e}"),
        }
    };
    assert_eq!(back, Some(v(1)), "the append-only file kept the write");
    assert_eq!(store.put_versioned(&rotation, v(2), HOUR).await, Ok(true));
    assert!(store.state().up);
    assert!(m.render().contains("oauth_broker_store_up 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_starts_while_redis_is_down_and_connects_when_it_is_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let store = bounded(oauth_broker::store::open(
        &redis_settings(&redis.url(), "ob:"),
        metrics(),
    ))
    .await
    .expect("opening does not need Redis");
    assert!(!store.state().up);
    assert!(bounded(store.get(&key(Space::Token, 1))).await.is_err());

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while store
        .put(&key(Space::Token, 1), b"x".to_vec(), HOUR)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the store never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        store.get(&key(Space::Token, 1)).await,
        Ok(Some(b"x".to_vec()))
    );
}

#[tokio::test]
async fn a_dump_of_redis_holds_only_what_callers_stored() {
    // The store adds no secret of its own: key names are the prefix, the
    // space and the caller's HMAC; values are the caller's bytes behind a
    // tag (and a generation).
    let redis = RedisServer::start();
    let store = raw_store(&redis.url(), "ob:");
    let k = key(Space::Fetch, 3);
    store.put(&k, b"sealed-bytes".to_vec(), HOUR).await.unwrap();
    let name = format!("ob:fetch:{}", hex::encode(k.id));
    assert_eq!(
        redis.command(&["GET", &name]),
        Reply::Bulk(Some(b"psealed-bytes".to_vec()))
    );
}

#[tokio::test]
async fn rediss_speaks_tls_and_checks_the_certificate() {
    let redis = RedisServer::start_tls();
    // The test certificate is self-signed: refused unless told otherwise.
    let checked = raw_store(&redis.tls_url(), "tls:");
    assert!(matches!(
        bounded(checked.get(&key(Space::Token, 1))).await,
        Err(StoreError::Unavailable(_))
    ));
    let store = raw_store(&format!("{}#insecure", redis.tls_url()), "tls:");
    bounded(store.put(&key(Space::Token, 1), b"over tls".to_vec(), HOUR))
        .await
        .unwrap();
    assert_eq!(
        bounded(store.get(&key(Space::Token, 1))).await,
        Ok(Some(b"over tls".to_vec()))
    );
    assert_eq!(redis.keys("tls:*").len(), 1);
}

#[tokio::test]
async fn a_foreign_value_under_a_key_is_a_failure_not_a_panic() {
    let redis = RedisServer::start();
    let store = raw_store(&redis.url(), "ob:");
    let k = key(Space::Rotation, 4);
    let name = format!("ob:rotation:{}", hex::encode(k.id));
    redis.command(&["SET", &name, "x"]);
    assert!(matches!(store.get(&k).await, Err(StoreError::Failed(_))));
    assert!(matches!(
        store.get_versioned(&k).await,
        Err(StoreError::Failed(_))
    ));
    redis.command(&["DEL", &name]);
    redis.command(&["HSET", &name, "field", "value"]);
    assert!(matches!(
        store
            .put_versioned(
                &k,
                Versioned {
                    generation: 1,
                    value: b"v".to_vec()
                },
                HOUR
            )
            .await,
        Err(StoreError::Failed(_))
    ));
}

/// A value larger than any the broker writes, put in Redis by something
/// else, is refused when read (never decoded), through the bounded store
/// every backend passes, and the broker never writes one.
#[tokio::test]
async fn a_value_over_the_bound_is_refused_when_read_and_never_written() {
    use oauth_broker::store::{InstrumentedStore, MAX_VALUE_LEN};
    let redis = RedisServer::start();
    let store = InstrumentedStore::new(
        std::sync::Arc::new(raw_store(&redis.url(), "p:")),
        Duration::from_secs(5),
        &metrics(),
    );
    let (fits, over) = (key(Space::Token, 1), key(Space::Fetch, 2));
    bounded(store.put(&fits, vec![7; MAX_VALUE_LEN], HOUR))
        .await
        .unwrap();
    assert_eq!(
        bounded(store.get(&fits)).await.unwrap().map(|v| v.len()),
        Some(MAX_VALUE_LEN)
    );
    assert!(matches!(
        bounded(store.put(&over, vec![7; MAX_VALUE_LEN + 1], HOUR)).await,
        Err(StoreError::Failed(_))
    ));
    assert!(redis.keys("*fetch*").is_empty(), "nothing was written");
    // Written behind the broker's back, with the broker's own layout.
    let name = format!("p:{}", over.name());
    let huge = format!("p{}", "x".repeat(4 * MAX_VALUE_LEN));
    assert_eq!(
        redis.command(&["SET", &name, &huge]),
        Reply::Status("OK".into())
    );
    assert!(matches!(
        bounded(store.get(&over)).await,
        Err(StoreError::Failed(_))
    ));
}
