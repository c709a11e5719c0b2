//! The shared-store scenarios on a real Redis: each test starts its own
//! `redis-server` (password, append-only persistence); each instance opens
//! its own connection to it, as a process would, bounded by the default
//! store timeout. "Store down" stops the server; "back" restarts it on its
//! data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use futures::future::BoxFuture;
use oauth_broker::config::defaults::STORE_TIMEOUT_MS;
use oauth_broker::metrics::Metrics;
use oauth_broker::provider::protect::SHARED_RECHECK_SECS;
use oauth_broker::store::instrumented::InstrumentedStore;
use oauth_broker::store::redis::RedisStore;
use oauth_broker::store::{Space, Store, StoreKey, StoreResult, Versioned};
use secrecy::SecretString;

use crate::shared_store::{self, Backend};
use crate::support::broker::Setup;
use crate::support::mock_provider::{Fault, MockProvider, Rotation};
use crate::support::redis::{Pauser, RedisServer, Reply};

const PREFIX: &str = "oauth-broker-test:";
const TIMEOUT: Duration = Duration::from_millis(STORE_TIMEOUT_MS);

struct Redis {
    server: Mutex<RedisServer>,
    url: SecretString,
}

fn redis() -> Redis {
    let server = RedisServer::start();
    let url = SecretString::from(server.url());
    Redis {
        server: Mutex::new(server),
        url,
    }
}

impl Backend for Redis {
    fn open(&self) -> Arc<dyn Store> {
        let redis = RedisStore::new(&self.url, PREFIX, TIMEOUT).expect("store");
        Arc::new(InstrumentedStore::new(
            Arc::new(redis),
            TIMEOUT,
            &Metrics::new(),
        ))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn set_down(&self, down: bool) {
        let mut server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        if down {
            server.stop();
        } else {
            server.restart();
        }
    }

    fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner());
        let keys = server.keys("*");
        assert!(
            keys.iter().all(|k| k.starts_with(PREFIX)),
            "every key carries the prefix: {keys:?}"
        );
        keys.into_iter()
            .map(|key| match server.command(&["GET", &key]) {
                Reply::Bulk(Some(value)) => (key, value),
                other => panic!("GET {key} answered {other:?}"),
            })
            .collect()
    }
}

#[tokio::test]
async fn box_runs_from_the_pasted_authid_across_instances_and_a_rolling_restart() {
    shared_store::six_runs_over_two_instances(&redis(), "box.com", Rotation::SingleUse).await;
}

#[tokio::test]
async fn jottacloud_runs_from_the_pasted_authid_across_instances_and_a_rolling_restart() {
    shared_store::six_runs_over_two_instances(
        &redis(),
        "jottacloud",
        Rotation::SingleUseReuseDetection,
    )
    .await;
}

#[tokio::test]
async fn forty_concurrent_refreshes_over_two_instances_make_one_provider_call() {
    shared_store::forty_concurrent_refreshes_over_two_instances_make_one_provider_call(&redis())
        .await;
}

#[tokio::test]
async fn a_google_token_obtained_on_one_instance_is_served_by_the_other() {
    shared_store::a_google_token_obtained_on_one_instance_is_served_by_the_other(&redis()).await;
}

#[tokio::test]
async fn a_retry_after_seen_by_one_instance_holds_the_other() {
    shared_store::a_retry_after_seen_by_one_instance_holds_the_other(&redis()).await;
}

#[tokio::test]
async fn a_login_finished_on_one_instance_is_fetched_once_on_the_other() {
    shared_store::a_login_finished_on_one_instance_is_fetched_once_on_the_other(&redis()).await;
}

#[tokio::test]
async fn while_redis_is_stopped_google_is_served_and_box_waits_then_goes_on_after_a_restart() {
    shared_store::while_the_store_is_down_google_is_served_and_box_waits_then_goes_on(&redis())
        .await;
}

#[tokio::test]
async fn revoking_the_pasted_box_authid_after_rotations_ends_the_login_on_every_instance() {
    shared_store::revoking_the_pasted_box_authid_after_rotations_ends_the_login_on_every_instance(
        &redis(),
    )
    .await;
}

#[tokio::test]
async fn while_redis_is_stopped_revoking_a_rotating_login_changes_nothing() {
    shared_store::revoking_a_rotating_login_while_the_store_is_down_changes_nothing(&redis()).await;
}

/// The backoff window in Redis is authenticated, and what this instance
/// read from it is believed only for a few seconds: a window deleted
/// there stops holding anyone, and one written by someone who does not
/// hold the client secret (a bare 2^62, as the text Redis users type or
/// as the 8 bytes the broker once wrote) holds no one.
#[tokio::test]
async fn a_deleted_or_forged_backoff_window_in_redis_holds_no_instance() {
    let redis = redis();
    let mock = MockProvider::start().await;
    let deployment = shared_store::Deployment::new(&redis, &mock, &["googledrive"]);
    let (one, two) = (deployment.instance(), deployment.instance());
    mock.push_fault(Fault::Throttle {
        status: 429,
        retry_after: Some("600".into()),
    });
    let throttled = one
        .refresh(&one.seal("googledrive", &mock.issue_refresh_token()))
        .await;
    assert_eq!(throttled.status, StatusCode::SERVICE_UNAVAILABLE);
    let keys = redis
        .server
        .lock()
        .unwrap()
        .keys(&format!("{PREFIX}backoff:*"));
    let [key] = keys.as_slice() else {
        panic!("one backoff window: {keys:?}")
    };
    let held = two
        .refresh(&two.seal("googledrive", &mock.issue_refresh_token()))
        .await;
    assert_eq!(
        held.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        held.body
    );
    assert_eq!(mock.token_calls(), 1);

    let deleted = redis.server.lock().unwrap().command(&["DEL", key]);
    assert_eq!(deleted, Reply::Integer(1));
    deployment.clock.advance(SHARED_RECHECK_SECS);
    let freed = two
        .refresh(&two.seal("googledrive", &mock.issue_refresh_token()))
        .await;
    assert_eq!(freed.status, StatusCode::OK, "{}", freed.body);
    assert_eq!(mock.token_calls(), 2);

    let huge = 1i64 << 62;
    let bytes = String::from_utf8(huge.to_be_bytes().to_vec()).expect("ASCII bytes");
    for forged in [huge.to_string(), bytes] {
        let set = redis
            .server
            .lock()
            .unwrap()
            .command(&["SET", key, &forged, "EX", "3600"]);
        assert_eq!(set, Reply::Status("OK".into()));
        deployment.clock.advance(SHARED_RECHECK_SECS);
        let calls = mock.token_calls();
        let served = two
            .refresh(&two.seal("googledrive", &mock.issue_refresh_token()))
            .await;
        assert_eq!(served.status, StatusCode::OK, "{}", served.body);
        assert_eq!(mock.token_calls(), calls + 1, "the provider was asked");
        assert_eq!(served.header("retry-after"), None);
    }
}

/// The Redis store, with Redis paused just before a lock is asked for:
/// the `SET NX` is queued past the store's bound, then applied.
struct PausedBeforeLock {
    inner: RedisStore,
    pauser: Pauser,
    armed: AtomicBool,
}

impl Store for PausedBeforeLock {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        self.inner.get(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.inner.put(key, value, ttl)
    }
    fn put_new<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        if key.space == Space::Lock && self.armed.swap(false, Ordering::SeqCst) {
            self.pauser.pause(500);
        }
        self.inner.put_new(key, value, ttl)
    }
    fn take<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        self.inner.take(key)
    }
    fn delete<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>> {
        self.inner.delete(key)
    }
    fn delete_if<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.inner.delete_if(key, expected)
    }
    fn get_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        self.inner.get_versioned(key)
    }
    fn put_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Versioned,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        self.inner.put_versioned(key, value, ttl)
    }
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.ping()
    }
}

/// A lock `SET NX` that times out after Redis applied it (Redis paused
/// past the store's bound, then applying the queued command) is looked
/// at again: the refresh goes on under the lock it did take, and releases
/// it, instead of answering 503 and leaving the lock for its lease.
#[tokio::test]
async fn a_lock_taken_by_a_write_that_timed_out_is_used_and_released() {
    let redis = redis();
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUse);
    let timeout = Duration::from_millis(300);
    let paused = Arc::new(PausedBeforeLock {
        inner: RedisStore::new(&redis.url, PREFIX, timeout).expect("store"),
        pauser: redis.server.lock().unwrap().pauser(),
        armed: AtomicBool::new(true),
    });
    let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(
        Arc::clone(&paused) as Arc<dyn Store>,
        timeout,
        &Metrics::new(),
    ));
    let broker = Setup::new(&mock, &["box.com"]).store(store).build();
    let authid = broker.seal("box.com", &mock.issue_refresh_token());
    let answer = broker.refresh(&authid).await;
    assert!(!paused.armed.load(Ordering::SeqCst), "Redis was paused");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(mock.token_calls(), 1);
    let locks = redis
        .server
        .lock()
        .unwrap()
        .keys(&format!("{PREFIX}lock:*"));
    assert!(locks.is_empty(), "no lock is left behind: {locks:?}");
}
