//! The Redis store (`STORE=redis://...` or `rediss://...`): state shared by
//! every instance on one Redis 7 or Valkey, through the `redis` crate's
//! Tokio connection manager (one multiplexed connection, re-made when it
//! breaks).
//!
//! Key names are `STORE_PREFIX` + `space:hex(id)`. Values are laid out as
//! `record` says, so one GET serves plain and versioned entries; Redis
//! expires entries itself (`PX`). The two compare-then-write operations are
//! Lua scripts (run by hash, `EVALSHA`), so no other client's command comes
//! between their check and their change.
//!
//! The store never connects at construction: the first operation (or the
//! health check) does, so an instance starts while Redis is down. Error
//! texts never hold the URL's password.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, Script, ServerErrorKind};
use secrecy::{ExposeSecret, SecretString};

use super::record::{Record, encode_plain, encode_versioned};
use super::{Store, StoreError, StoreKey, StoreResult, Versioned, ttl_millis};

/// `KEYS[1]`, `ARGV[1]` = the new record, `ARGV[2]` = TTL in ms. Stores the
/// record unless the key holds the same or a higher generation (a plain
/// entry counts as generation 0). Generations are 8 big-endian bytes after
/// the tag, so comparing them byte by byte compares the numbers.
const PUT_VERSIONED: &str = r"
local function newer(a, b)
  for i = 1, 8 do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return false
end
local current = redis.call('GET', KEYS[1])
if current then
  local held = '\0\0\0\0\0\0\0\0'
  if string.sub(current, 1, 1) == 'v' then held = string.sub(current, 2, 9) end
  if not newer(string.sub(ARGV[1], 2, 9), held) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// `KEYS[1]`, `ARGV[1]` = the expected value. Deletes the key only if its
/// value (after the tag, and the generation of a versioned entry) is the
/// expected one.
const DELETE_IF: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local value
if string.sub(current, 1, 1) == 'v' then
  value = string.sub(current, 10)
else
  value = string.sub(current, 2)
end
if value ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
";

/// Operations abandoned in a row (their caller gave up waiting) after
/// which the connection is presumed stuck and replaced: a connection to a
/// host that vanished without closing it would otherwise wait for the
/// kernel to give up, many minutes later.
const STALLS_BEFORE_RENEW: u32 = 3;

/// Least time between two replacements of the connection.
const RENEW_INTERVAL: Duration = Duration::from_secs(1);

pub struct RedisStore {
    client: redis::Client,
    config: ConnectionManagerConfig,
    manager: ArcSwap<ConnectionManager>,
    renewed_at: Mutex<Instant>,
    stalls: AtomicU32,
    prefix: String,
    /// The URL's password, as written and decoded: removed from every
    /// error text, in case a library puts it there.
    passwords: Vec<SecretString>,
    put_versioned: Script,
    delete_if: Script,
}

impl RedisStore {
    /// A store on the Redis at `url`, not yet connected. `timeout` bounds
    /// one connection attempt. Must be called inside a Tokio runtime.
    pub fn new(url: &SecretString, prefix: &str, timeout: Duration) -> Result<Self, String> {
        let passwords = url::Url::parse(url.expose_secret())
            .ok()
            .and_then(|u| u.password().map(str::to_string))
            .filter(|p| !p.is_empty())
            .map(|written| {
                let decoded = percent_encoding::percent_decode_str(&written)
                    .decode_utf8_lossy()
                    .into_owned();
                [written, decoded].map(SecretString::from).to_vec()
            })
            .unwrap_or_default();
        let client = redis::Client::open(url.expose_secret())
            .map_err(|e| format!("STORE is not a usable Redis URL: {}", e.category()))?;
        // One connection attempt per call: while Redis is down every
        // operation fails at once (refused) or within the timeout, and the
        // next operation or health check tries again.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
            .set_response_timeout(None);
        let manager = Self::manager(&client, &config)?;
        Ok(Self {
            client,
            config,
            manager: ArcSwap::from_pointee(manager),
            renewed_at: Mutex::new(Instant::now()),
            stalls: AtomicU32::new(0),
            prefix: prefix.to_string(),
            passwords,
            put_versioned: Script::new(PUT_VERSIONED),
            delete_if: Script::new(DELETE_IF),
        })
    }

    fn manager(
        client: &redis::Client,
        config: &ConnectionManagerConfig,
    ) -> Result<ConnectionManager, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the Redis store needs a Tokio runtime".into());
        }
        ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| format!("cannot set up the Redis connection: {}", e.category()))
    }

    /// The key's name in Redis.
    pub fn key_name(&self, key: &StoreKey) -> String {
        format!("{}{}", self.prefix, key.name())
    }

    /// Replaces the connection manager (at most once per
    /// `RENEW_INTERVAL`): after a refused authentication, which the
    /// manager does not retry by itself, and after stalls.
    fn renew(&self) {
        let mut renewed_at = self.renewed_at.lock().unwrap_or_else(|e| e.into_inner());
        if renewed_at.elapsed() < RENEW_INTERVAL {
            return;
        }
        if let Ok(manager) = Self::manager(&self.client, &self.config) {
            self.manager.store(Arc::new(manager));
            *renewed_at = Instant::now();
            self.stalls.store(0, Ordering::Relaxed);
            tracing::debug!("Redis connection replaced");
        }
    }

    /// Runs one command on the current connection, noticing answers,
    /// abandonments and errors.
    async fn run<T, F>(&self, command: impl FnOnce(ConnectionManager) -> F) -> StoreResult<T>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let connection = ConnectionManager::clone(&self.manager.load());
        let mut watch = StallWatch {
            store: self,
            finished: false,
        };
        let result = command(connection).await;
        watch.finished = true;
        match result {
            Ok(value) => {
                self.stalls.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Err(e) => {
                if e.kind() == ErrorKind::AuthenticationFailed {
                    self.renew();
                }
                Err(self.classify(&e))
            }
        }
    }

    fn classify(&self, e: &RedisError) -> StoreError {
        let mut text = e.to_string();
        for password in &self.passwords {
            text = text.replace(password.expose_secret(), "***");
        }
        // Redis answered, but refuses to serve now or to this user.
        let refused = matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::NoPerm
            )
        ) || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
        // Redis answered something this store did not expect.
        let answered = matches!(
            e.kind(),
            ErrorKind::Server(_)
                | ErrorKind::Extension
                | ErrorKind::UnexpectedReturnType
                | ErrorKind::Parse
        );
        if e.is_timeout() {
            StoreError::Timeout
        } else if refused || !answered {
            // Not reached, refused (connection, TLS, authentication), or
            // not serving: the store is unavailable.
            StoreError::Unavailable(format!("Redis: {text}"))
        } else {
            StoreError::Failed(format!("Redis: {text}"))
        }
    }
}

/// Counts an operation whose future was dropped before Redis answered.
struct StallWatch<'a> {
    store: &'a RedisStore,
    finished: bool,
}

impl Drop for StallWatch<'_> {
    fn drop(&mut self) {
        if !self.finished
            && self.store.stalls.fetch_add(1, Ordering::Relaxed) + 1 >= STALLS_BEFORE_RENEW
        {
            self.store.renew();
        }
    }
}

fn decode_value(bytes: Option<Vec<u8>>) -> StoreResult<Option<Vec<u8>>> {
    bytes
        .map(|b| Record::decode(&b).map(|r| r.value().to_vec()))
        .transpose()
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            let name = self.key_name(key);
            let bytes: Option<Vec<u8>> = self
                .run(|mut c| async move { redis::cmd("GET").arg(name).query_async(&mut c).await })
                .await?;
            decode_value(bytes)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let name = self.key_name(key);
            let record = encode_plain(&value);
            self.run(|mut c| async move {
                redis::cmd("SET")
                    .arg(name)
                    .arg(record)
                    .arg("PX")
                    .arg(ttl_millis(ttl))
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
        })
    }

    fn put_new<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let name = self.key_name(key);
            let record = encode_plain(&value);
            let answer: Option<String> = self
                .run(|mut c| async move {
                    redis::cmd("SET")
                        .arg(name)
                        .arg(record)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_millis(ttl))
                        .query_async(&mut c)
                        .await
                })
                .await?;
            Ok(answer.is_some())
        })
    }

    fn take<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            let name = self.key_name(key);
            let bytes: Option<Vec<u8>> = self
                .run(
                    |mut c| async move { redis::cmd("GETDEL").arg(name).query_async(&mut c).await },
                )
                .await?;
            decode_value(bytes)
        })
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let name = self.key_name(key);
            self.run(
                |mut c| async move { redis::cmd("DEL").arg(name).query_async::<()>(&mut c).await },
            )
            .await
        })
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let name = self.key_name(key);
            let deleted: i64 = self
                .run(|mut c| async move {
                    self.delete_if
                        .key(name)
                        .arg(expected)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(deleted == 1)
        })
    }

    fn get_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        Box::pin(async move {
            let name = self.key_name(key);
            let bytes: Option<Vec<u8>> = self
                .run(|mut c| async move { redis::cmd("GET").arg(name).query_async(&mut c).await })
                .await?;
            match bytes {
                Some(b) => Ok(Record::decode(&b)?.versioned()),
                None => Ok(None),
            }
        })
    }

    fn put_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Versioned,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let name = self.key_name(key);
            let record = encode_versioned(value.generation, &value.value);
            let stored: i64 = self
                .run(|mut c| async move {
                    self.put_versioned
                        .key(name)
                        .arg(record)
                        .arg(ttl_millis(ttl))
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(stored == 1)
        })
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Space;

    #[tokio::test]
    async fn key_names_carry_the_prefix() {
        let url = SecretString::from("redis://:pw@127.0.0.1:1/0");
        let store = RedisStore::new(&url, "ob:", Duration::from_millis(100)).unwrap();
        let key = StoreKey::new(Space::Lock, [1; 32]);
        assert_eq!(store.key_name(&key), format!("ob:lock:{}", "01".repeat(32)));
    }

    #[tokio::test]
    async fn errors_never_show_the_password() {
        let url = SecretString::from("redis://:s3cr%2Ft@127.0.0.1:1/0");
        let store = RedisStore::new(&url, "ob:", Duration::from_millis(100)).unwrap();
        let e = RedisError::from((ErrorKind::Io, "failed", "s3cr/t and s3cr%2Ft".to_string()));
        let text = store.classify(&e).to_string();
        assert!(!text.contains("s3cr"), "{text}");
    }

    #[test]
    fn needs_a_runtime_instead_of_panicking() {
        let url = SecretString::from("redis://127.0.0.1:1/0");
        assert!(RedisStore::new(&url, "", Duration::from_millis(100)).is_err());
    }
}
