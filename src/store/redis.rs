//! The Redis store (`STORE=redis://...`, `rediss://...`, and the highly
//! available `redis+sentinel://...` and `redis+cluster://...`): state shared
//! by every instance on Redis 7 or Valkey, through the `redis` crate (its
//! Tokio connection manager on one node, its sentinel client to find the
//! master, its cluster connection on a cluster; see `link`).
//!
//! Key names are `STORE_PREFIX` + `space:hex(id)`. Values are laid out as
//! `record` says, so one GET serves plain and versioned entries, and are
//! size-checked before they are decoded; Redis expires entries itself
//! (`PX`). The two compare-then-write operations are Lua scripts (run by
//! hash, `EVALSHA`) on one key each, so no other client's command comes
//! between their check and their change, and on a cluster each runs in
//! its key's slot.
//!
//! A write of a rotation or a migrated grant waits (`WAIT`, in one
//! pipeline with the write) for `STORE_REPLICA_ACKS` replicas; when they
//! do not answer in time the write is reported failed after it was made,
//! so the caller serves its client and keeps the value, as for any failed
//! write (see `facts`). The health check also reads the eviction policy
//! and the replicas (`INFO`), and behind sentinels asks them which node is
//! the master.
//!
//! Error texts never hold a password.

mod facts;
mod inspect;
mod link;
mod operations;
mod scripts;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};
use secrecy::{ExposeSecret, SecretString};

use facts::FactsWatch;
pub use facts::{Facts, NO_EVICTION, durable};
pub use inspect::check_line;
use link::{Asked, Conn, Link};

use super::{StoreError, StoreKey, StoreResult, ttl_millis};
use crate::config::{ReplicaAcks, StoreBackend, StoreSettings};
use crate::metrics::StoreRedisMetrics;

/// Operations abandoned in a row (their caller gave up waiting) after
/// which the connection is presumed stuck and replaced: a connection to a
/// host that vanished without closing it would otherwise wait for the
/// kernel to give up, many minutes later.
const STALLS_BEFORE_RENEW: u32 = 3;

/// Largest value read back: far above anything the broker writes (a
/// sealed token or AuthID is a few kilobytes), so a damaged or foreign
/// entry is refused before it is decoded.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

pub struct RedisStore {
    link: Arc<Link>,
    /// Key names carry their group as a hash tag (on a cluster).
    tagged: bool,
    timeout: Duration,
    stalls: AtomicU32,
    prefix: String,
    /// Passwords as written and decoded: removed from every error text,
    /// in case a library puts one there.
    passwords: Vec<SecretString>,
    facts: FactsWatch,
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
            .map(|p| vec![p])
            .unwrap_or_default();
        let link = Link::direct(url.expose_secret(), timeout)?;
        Ok(Self::with_link(
            link,
            prefix,
            timeout,
            &passwords,
            FactsWatch::new(ReplicaAcks::Auto, None),
        ))
    }

    /// The store `settings` name (any Redis form), reporting to `metrics`.
    /// Not yet connected; must be called inside a Tokio runtime.
    pub fn open(
        settings: &StoreSettings,
        metrics: Option<StoreRedisMetrics>,
    ) -> Result<Self, String> {
        let facts = FactsWatch::new(settings.replica_acks, metrics);
        let (link, passwords) = match &settings.backend {
            StoreBackend::Redis { url, .. } => {
                let store = Self::new(url, &settings.prefix, settings.timeout)?;
                return Ok(Self { facts, ..store });
            }
            StoreBackend::RedisHa(ha) => {
                let passwords: Vec<String> = [&ha.password, &ha.sentinel_password]
                    .into_iter()
                    .flatten()
                    .map(|p| p.expose_secret().to_string())
                    .collect();
                (Link::ha(ha, settings.timeout)?, passwords)
            }
            _ => return Err("not a Redis store".into()),
        };
        Ok(Self::with_link(
            link,
            &settings.prefix,
            settings.timeout,
            &passwords,
            facts,
        ))
    }

    fn with_link(
        link: Link,
        prefix: &str,
        timeout: Duration,
        passwords: &[String],
        facts: FactsWatch,
    ) -> Self {
        let passwords = passwords
            .iter()
            .filter(|p| !p.is_empty())
            .flat_map(|written| {
                let decoded = percent_encoding::percent_decode_str(written)
                    .decode_utf8_lossy()
                    .into_owned();
                [written.clone(), decoded]
            })
            .map(SecretString::from)
            .collect();
        Self {
            tagged: link.topology() == "cluster",
            link: Arc::new(link),
            timeout,
            stalls: AtomicU32::new(0),
            prefix: prefix.to_string(),
            passwords,
            facts,
            put_versioned: Script::new(scripts::PUT_VERSIONED),
            delete_if: Script::new(scripts::DELETE_IF),
        }
    }

    /// The key's name in Redis: on a cluster, the entries of one login
    /// carry the login's group as a hash tag, so they share a slot.
    pub fn key_name(&self, key: &StoreKey) -> String {
        match key.group.filter(|_| self.tagged) {
            Some(group) => format!("{}{{{}}}{}", self.prefix, hex::encode(group), key.name()),
            None => format!("{}{}", self.prefix, key.name()),
        }
    }

    /// What `INFO` said last (eviction policy, replicas).
    pub fn facts(&self) -> Facts {
        self.facts.current()
    }

    /// Runs one command on the current connection, noticing answers,
    /// abandonments and errors.
    async fn run<T, F>(&self, command: impl FnOnce(Conn) -> F) -> StoreResult<T>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        let mut watch = StallWatch {
            store: self,
            finished: false,
        };
        let result = match self.link.connection().await {
            Ok(connection) => command(connection).await,
            Err(e) => Err(e),
        };
        watch.finished = true;
        match result {
            Ok(value) => {
                self.stalls.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Err(e) => {
                let error = self.classify(&e);
                // A refused authentication is not retried by the manager;
                // READONLY means the node was demoted (a managed service's
                // endpoint now names another node, or the sentinels do).
                if matches!(
                    e.kind(),
                    ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::ReadOnly)
                ) {
                    self.link.renew(self.timeout);
                } else if matches!(error, StoreError::Unavailable(_) | StoreError::Timeout) {
                    self.follow_failover();
                }
                Err(error)
            }
        }
    }

    /// Behind sentinels, asks them (in the background, at most a few
    /// times a second) whether another node is the master now.
    fn follow_failover(&self) {
        if self.link.topology() != "sentinel" {
            return;
        }
        let link = Arc::clone(&self.link);
        let count = self.facts.master_changes();
        tokio::spawn(async move {
            if let Ok(Asked::Switched) = link.ask_sentinels(false).await {
                count();
                tracing::warn!("the sentinels name another Redis master; the store moved to it");
            }
        });
    }

    async fn query<T: redis::FromRedisValue>(&self, command: redis::Cmd) -> StoreResult<T> {
        self.run(|mut c| async move { command.query_async(&mut c).await })
            .await
    }

    async fn read(&self, key: &StoreKey, command: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut cmd = redis::cmd(command);
        cmd.arg(self.key_name(key));
        let bytes: Option<Vec<u8>> = self.query(cmd).await?;
        match bytes {
            Some(b) if b.len() > MAX_VALUE_LEN + 16 => Err(StoreError::Failed(
                "an entry in the store is larger than any the broker writes".into(),
            )),
            other => Ok(other),
        }
    }

    /// A versioned write; a durable one waits for the replicas in the same
    /// pipeline, so the wait covers this write on this connection.
    async fn write_versioned(
        &self,
        key: &StoreKey,
        record: Vec<u8>,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let name = self.key_name(key);
        let acks = self.facts.acks_for(key.space);
        if acks == 0 {
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
            return Ok(stored == 1);
        }
        // Redis notices a wait's end at its next tick (up to 100 ms at
        // the default hz 10): the wait takes two fifths of the store's
        // bound, so its answer comes within the bound.
        let wait_ms = (self.timeout.as_millis() * 2 / 5).max(1);
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(scripts::PUT_VERSIONED)
            .arg(1)
            .arg(name)
            .arg(record)
            .arg(ttl_millis(ttl))
            .cmd("WAIT")
            .arg(acks)
            .arg(u64::try_from(wait_ms).unwrap_or(u64::MAX));
        let (stored, acked): (i64, i64) = self
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        if stored == 1 && acked < i64::from(acks) {
            self.facts.unacknowledged(key.space);
            return Err(StoreError::Failed(format!(
                "Redis: the write was made on the master, but {acked} of {acks} replica(s) acknowledged it in time"
            )));
        }
        Ok(stored == 1)
    }

    /// Reads `INFO` (at most every few seconds), behind sentinels after
    /// asking them for the master.
    async fn check_server(&self) -> StoreResult<()> {
        match self.link.ask_sentinels(true).await {
            Ok(Asked::Switched) => {
                self.facts.master_changes()();
                tracing::warn!("the sentinels name another Redis master; the store moved to it");
            }
            Ok(Asked::Found) => {
                tracing::info!("the sentinels name the Redis master; the store uses it")
            }
            Ok(Asked::Same) => {}
            Err(e) => return Err(self.classify(&e)),
        }
        if self.facts.due() {
            let mut pipe = redis::pipe();
            pipe.cmd("INFO")
                .arg("replication")
                .cmd("INFO")
                .arg("memory");
            let values: Vec<Value> = self
                .run(|mut c| async move { pipe.query_async(&mut c).await })
                .await?;
            self.facts.update(Facts::from_values(&values));
        }
        Ok(())
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
            && self.store.link.renew(self.store.timeout)
        {
            self.store.stalls.store(0, Ordering::Relaxed);
            tracing::debug!("Redis connection replaced");
        }
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

    #[test]
    fn oversized_values_are_refused() {
        use operations::check_len;
        assert!(check_len(&vec![0; MAX_VALUE_LEN]).is_ok());
        assert!(matches!(
            check_len(&vec![0; MAX_VALUE_LEN + 1]),
            Err(StoreError::Failed(_))
        ));
    }
}
