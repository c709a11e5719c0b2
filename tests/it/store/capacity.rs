//! The measurements behind docs/CAPACITY.md (run by
//! `scripts/measure-capacity.sh`; ignored in the normal run): for each
//! kind of provider, the Redis commands and bytes one login costs, from
//! two broker instances on a real `redis-server` (`INFO commandstats`,
//! `MEMORY USAGE`), when a login is first refreshed, refreshed again a day
//! later (its access token expired), and served by the other instance
//! while its token is fresh.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use oauth_broker::clock::{Clock, ManualClock, SystemClock};
use oauth_broker::metrics::Metrics;
use oauth_broker::store::instrumented::InstrumentedStore;
use oauth_broker::store::{RedisStore, Store};
use secrecy::SecretString;

use crate::support::broker::{Broker, Setup, server_key};
use crate::support::mock_provider::{MockProvider, Rotation};
use crate::support::redis::{RedisServer, Reply};

/// Logins measured per provider kind.
const LOGINS: usize = 2000;
const PREFIX: &str = "cap:";

fn text(reply: Reply) -> String {
    reply.text().unwrap_or_default()
}

/// Calls per command since the last reset, without the measuring ones.
fn command_calls(redis: &RedisServer) -> BTreeMap<String, u64> {
    text(redis.command(&["INFO", "commandstats"]))
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "info"
                    | "config"
                    | "config|resetstat"
                    | "memory|usage"
                    | "keys"
                    | "auth"
                    | "hello"
                    | "client|setinfo"
                    | "ping"
                    | "flushall"
            )
        })
        .collect()
}

fn reset(redis: &RedisServer) {
    redis.command(&["CONFIG", "RESETSTAT"]);
}

/// Bytes Redis uses per key space (`MEMORY USAGE`, key and overhead
/// included) and the number of keys.
fn memory_by_space(redis: &RedisServer) -> BTreeMap<String, (u64, u64)> {
    let mut spaces = BTreeMap::new();
    for key in redis.keys(&format!("{PREFIX}*")) {
        let space = key[PREFIX.len()..]
            .split(':')
            .next()
            .unwrap_or("?")
            .to_string();
        let bytes = match redis.command(&["MEMORY", "USAGE", &key, "SAMPLES", "0"]) {
            Reply::Integer(n) => u64::try_from(n).unwrap_or(0),
            _ => 0,
        };
        let entry = spaces.entry(space).or_insert((0, 0));
        entry.0 += bytes;
        entry.1 += 1;
    }
    spaces
}

fn per_login(calls: &BTreeMap<String, u64>) -> String {
    let total: u64 = calls.values().sum();
    let detail: Vec<String> = calls
        .iter()
        .map(|(name, n)| format!("{name} {:.2}", *n as f64 / LOGINS as f64))
        .collect();
    format!(
        "{:.2} ({})",
        total as f64 / LOGINS as f64,
        detail.join(", ")
    )
}

fn instance(
    mock: &MockProvider,
    id: &'static str,
    redis: &RedisServer,
    clock: &ManualClock,
    key: &Arc<oauth_broker::authid::ServerKey>,
) -> Broker {
    let url = SecretString::from(redis.url());
    let store = RedisStore::new(&url, PREFIX, Duration::from_millis(250)).unwrap();
    let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(
        Arc::new(store),
        Duration::from_millis(250),
        &Metrics::new(),
    ));
    let broker = Setup::new(mock, &[id])
        .store(store)
        .key(Arc::clone(key))
        .clock(Arc::new(clock.clone()))
        .tweak(|_, entry| {
            entry["rateLimit"] = serde_json::json!({"perSecond": 100_000, "burst": 100_000});
        })
        .build();
    if id == "jottacloud" {
        mock.set_client("jottacli", "");
    }
    broker
}

async fn measure(id: &'static str, rotation: Rotation) {
    let redis = RedisServer::start();
    let mock = MockProvider::start().await;
    mock.set_rotation(rotation);
    let clock = ManualClock::new(SystemClock.now());
    let key = server_key();
    let one = instance(&mock, id, &redis, &clock, &key);
    let two = instance(&mock, id, &redis, &clock, &key);
    let authids: Vec<String> = (0..LOGINS)
        .map(|_| one.seal(id, &mock.issue_refresh_token()))
        .collect();
    let used_before = memory_used(&redis);

    reset(&redis);
    for authid in &authids {
        let reply = one.refresh(authid).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let first = command_calls(&redis);
    reset(&redis);
    for authid in &authids {
        assert_eq!(two.refresh(authid).await.status, 200);
    }
    let shared = command_calls(&redis);
    let fresh = memory_by_space(&redis);
    let used_fresh = memory_used(&redis);

    clock.advance(24 * 3600);
    reset(&redis);
    for authid in &authids {
        assert_eq!(one.refresh(authid).await.status, 200);
    }
    let daily = command_calls(&redis);
    let lasting: BTreeMap<String, (u64, u64)> = memory_by_space(&redis)
        .into_iter()
        .filter(|(space, _)| space != "token" && space != "lock")
        .collect();

    // Between refreshes the access token (and any lock) has expired: what
    // is left is what a login costs for the rest of the day.
    for name in redis.keys(&format!("{PREFIX}token:*")) {
        redis.command(&["DEL", &name]);
    }
    for name in redis.keys(&format!("{PREFIX}lock:*")) {
        redis.command(&["DEL", &name]);
    }
    let used_lasting = memory_used(&redis);

    println!("### {id} ({rotation:?})");
    println!("- first refresh, per login: {} commands", per_login(&first));
    println!(
        "- served by the other instance (token shared), per login: {} commands",
        per_login(&shared)
    );
    println!(
        "- daily refresh (token expired), per login: {} commands",
        per_login(&daily)
    );
    let show = |spaces: &BTreeMap<String, (u64, u64)>| {
        spaces
            .iter()
            .map(|(s, (bytes, keys))| {
                format!("{s}: {keys} keys, {} B/login", bytes / LOGINS as u64)
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    println!("- held right after a refresh: {}", show(&fresh));
    println!(
        "- held between daily refreshes (no token, no lock): {}",
        show(&lasting)
    );
    println!(
        "- used_memory growth right after the first refreshes: {} B/login",
        used_fresh.saturating_sub(used_before) / LOGINS as u64
    );
    println!(
        "- used_memory growth between daily refreshes (tokens expired): {} B/login",
        used_lasting.saturating_sub(used_before) / LOGINS as u64
    );
    println!();
}

fn memory_used(redis: &RedisServer) -> u64 {
    text(redis.command(&["INFO", "memory"]))
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement for docs/CAPACITY.md: scripts/measure-capacity.sh"]
async fn capacity_per_login_and_refresh() {
    println!(
        "## Measured with {LOGINS} logins per provider kind, redis-server {}",
        text(RedisServer::start().command(&["INFO", "server"]))
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
    );
    println!();
    measure("googledrive", Rotation::None).await;
    measure("onedrivev2", Rotation::Rotating).await;
    measure("box.com", Rotation::SingleUse).await;
    measure("jottacloud", Rotation::SingleUseReuseDetection).await;
}
