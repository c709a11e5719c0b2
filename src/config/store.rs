//! The store settings: `STORE`, `DATA_DIR`, `STORE_PREFIX` and
//! `STORE_TIMEOUT_MS`, parsed into which store to open and how to use it.
//! A Redis URL may hold a password: it is kept secret and never repeated in
//! a problem, a log line or `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::defaults;
use super::store_url::{self, HaRedis, ReplicaAcks};

/// The store and how it is used.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub backend: StoreBackend,
    /// Prefix of every key name in Redis (`STORE_PREFIX`).
    pub prefix: String,
    /// Longest one store operation may take (`STORE_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Replicas that acknowledge a rotation (`STORE_REPLICA_ACKS`).
    pub replica_acks: ReplicaAcks,
}

/// Which store (`STORE`).
#[derive(Clone)]
pub enum StoreBackend {
    /// This process's memory (`memory`).
    Memory,
    /// A redb file in `DATA_DIR` (`STORE` unset, or `embedded`).
    Embedded { dir: PathBuf },
    /// A Redis or Valkey (`redis://...`, `rediss://...`).
    Redis {
        /// The whole URL, password included.
        url: SecretString,
        /// The URL without its password, for logs.
        shown: String,
    },
    /// A Redis behind sentinels, or a Redis Cluster (`redis+sentinel://`,
    /// `redis+cluster://`, and their `rediss+` forms).
    RedisHa(HaRedis),
}

impl fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Embedded { dir } => f.debug_struct("Embedded").field("dir", dir).finish(),
            Self::Redis { shown, .. } => f.debug_struct("Redis").field("url", shown).finish(),
            Self::RedisHa(ha) => ha.fmt(f),
        }
    }
}

/// What an unset `STORE` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDefault {
    /// `serve`: the embedded store in `DATA_DIR`.
    Embedded,
    /// `demo`: memory.
    Memory,
}

impl StoreSettings {
    /// An in-memory store with the default prefix and timeout.
    pub fn memory() -> Self {
        Self {
            backend: StoreBackend::Memory,
            prefix: defaults::STORE_PREFIX.into(),
            timeout: Duration::from_millis(defaults::STORE_TIMEOUT_MS),
            replica_acks: ReplicaAcks::Auto,
        }
    }

    /// The store in words, without secrets: for logs and `check-config`.
    pub fn describe(&self) -> String {
        match &self.backend {
            StoreBackend::Memory => "memory (lost on exit; one instance)".into(),
            StoreBackend::Embedded { dir } => {
                format!("embedded in DATA_DIR {} (one instance)", dir.display())
            }
            StoreBackend::Redis { shown, .. } => {
                format!("Redis {shown}, key prefix {:?}", self.prefix)
            }
            StoreBackend::RedisHa(ha) => {
                format!("Redis {}, key prefix {:?}", ha.shown, self.prefix)
            }
        }
    }
}

/// Longest bound of one store operation (see `parse_store`).
pub const MAX_STORE_TIMEOUT_MS: u64 = 500;
/// Reads `STORE`, `DATA_DIR`, `STORE_PREFIX` and `STORE_TIMEOUT_MS`.
/// Problems name the variable and never repeat a password.
pub fn parse_store(
    store: Option<&str>,
    default: StoreDefault,
    data_dir: &Path,
    prefix: &str,
    timeout_ms: u64,
) -> Result<StoreSettings, Vec<String>> {
    let mut problems = Vec::new();
    let embedded = |problems: &mut Vec<String>| {
        if data_dir.exists() && !data_dir.is_dir() {
            problems.push(format!(
                "DATA_DIR {} is not a directory",
                data_dir.display()
            ));
        }
        StoreBackend::Embedded {
            dir: data_dir.to_path_buf(),
        }
    };
    let text = store.map(str::trim).filter(|s| !s.is_empty());
    let backend = match text {
        None => match default {
            StoreDefault::Embedded => embedded(&mut problems),
            StoreDefault::Memory => StoreBackend::Memory,
        },
        Some(t) if t.eq_ignore_ascii_case("memory") => StoreBackend::Memory,
        Some(t) if t.eq_ignore_ascii_case("embedded") => embedded(&mut problems),
        Some(t) if store_url::is_ha(t) => match store_url::parse_ha(t) {
            Ok(ha) => StoreBackend::RedisHa(ha),
            Err(e) => {
                problems.push(e);
                StoreBackend::Memory
            }
        },
        Some(t) => match parse_redis_url(t) {
            Ok((url, shown)) => StoreBackend::Redis { url, shown },
            Err(e) => {
                problems.push(e);
                StoreBackend::Memory
            }
        },
    };
    // Up to a few store calls follow a provider call under a login's lock,
    // inside the lock's margin of a few seconds: a longer bound could let
    // the lease end before a rotation is recorded.
    if timeout_ms == 0 || timeout_ms > MAX_STORE_TIMEOUT_MS {
        problems.push(format!(
            "STORE_TIMEOUT_MS must be 1 to {MAX_STORE_TIMEOUT_MS} milliseconds"
        ));
    }
    if prefix.chars().any(char::is_control) {
        problems.push("STORE_PREFIX must not contain control characters".into());
    }
    if problems.is_empty() {
        Ok(StoreSettings {
            backend,
            prefix: prefix.to_string(),
            timeout: Duration::from_millis(timeout_ms),
            replica_acks: ReplicaAcks::Auto,
        })
    } else {
        Err(problems)
    }
}

const STORE_FORMS: &str = "memory, embedded, redis://[user:password@]host:port/db or rediss://[user:password@]host:port/db, redis+sentinel://[user:password@]host:port[,host:port...]/<master name>[/db] or redis+cluster://[user:password@]host:port[,host:port...] (or their rediss+ forms)";

/// A `redis://` or `rediss://` URL: the URL (kept secret) and a form
/// without the password to show. Errors never repeat the text, which may
/// hold a password.
fn parse_redis_url(text: &str) -> Result<(SecretString, String), String> {
    let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("redis" | "rediss") => {}
        // Before "://" there is no password to leak.
        Some(other) if !other.contains(['@', ':', '/']) => {
            return Err(format!(
                "STORE: unknown kind of store {other:?}; use {STORE_FORMS}"
            ));
        }
        _ => {
            return Err(format!(
                "STORE is not a store this broker knows; use {STORE_FORMS}"
            ));
        }
    }
    let url = Url::parse(text)
        .map_err(|_| format!("STORE is not a valid Redis URL; use {STORE_FORMS}"))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("STORE: the Redis URL has no host")?;
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        db => db.parse::<u32>().map_err(|_| {
            "STORE: the Redis database (after the host and port) must be a number, such as /0"
                .to_string()
        })?,
    };
    // The client's own checks (no connection is made).
    redis::Client::open(text)
        .map_err(|e| format!("STORE is not a valid Redis URL: {}", e.category()))?;
    let user = match (url.username(), url.password()) {
        ("", None) => String::new(),
        ("", Some(_)) => ":***@".into(),
        (user, None) => format!("{user}@"),
        (user, Some(_)) => format!("{user}:***@"),
    };
    let port = url.port().unwrap_or(6379);
    let shown = format!("{}://{user}{host}:{port}/{db}", url.scheme());
    Ok((SecretString::from(text.to_string()), shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(text: Option<&str>) -> Result<StoreSettings, Vec<String>> {
        parse_store(
            text,
            StoreDefault::Embedded,
            Path::new("./data"),
            defaults::STORE_PREFIX,
            250,
        )
    }

    #[test]
    fn store_defaults() {
        let s = store(None).unwrap();
        assert!(matches!(&s.backend, StoreBackend::Embedded { dir } if dir == Path::new("./data")));
        assert_eq!(s.prefix, "oauth-broker:");
        assert_eq!(s.timeout, Duration::from_millis(250));
        let demo = parse_store(None, StoreDefault::Memory, Path::new("x"), "p:", 10).unwrap();
        assert!(matches!(demo.backend, StoreBackend::Memory));
        assert!(matches!(
            store(Some("memory")).unwrap().backend,
            StoreBackend::Memory
        ));
        assert!(matches!(
            store(Some(" embedded ")).unwrap().backend,
            StoreBackend::Embedded { .. }
        ));
    }

    #[test]
    fn redis_urls() {
        let s = store(Some("redis://:hunter2@cache.internal:6380/3")).unwrap();
        let StoreBackend::Redis { shown, .. } = &s.backend else {
            panic!("not redis");
        };
        assert_eq!(shown, "redis://:***@cache.internal:6380/3");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!s.describe().contains("hunter2"));
        let s = store(Some("rediss://app:pw@cache")).unwrap();
        assert!(s.describe().contains("rediss://app:***@cache:6379/0"));
    }

    #[test]
    fn bad_stores_name_store_and_hide_the_password() {
        for bad in [
            "mysql://root:hunter2@db/0",
            "redis://:hunter2@host:6379/zero",
            "redis://:hunter2@host:99999/0",
            "redis://:hunter2@/0",
            "redis:/:hunter2@host",
            "hunter2",
            "redis://:hunter2@host:6379/-1",
        ] {
            let problems = store(Some(bad)).unwrap_err();
            assert_eq!(problems.len(), 1, "{bad}: {problems:?}");
            assert!(problems[0].contains("STORE"), "{bad}: {problems:?}");
            assert!(!problems[0].contains("hunter2"), "{bad}: {problems:?}");
        }
        let problems =
            parse_store(Some("nope"), StoreDefault::Embedded, Path::new("."), "", 0).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].contains("STORE_TIMEOUT_MS"));
        let too_long = parse_store(None, StoreDefault::Memory, Path::new("."), "", 501);
        assert!(too_long.unwrap_err()[0].contains("STORE_TIMEOUT_MS"));
        assert!(parse_store(None, StoreDefault::Memory, Path::new("."), "", 500).is_ok());
    }

    #[test]
    fn data_dir_must_be_a_directory() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let problems = parse_store(None, StoreDefault::Embedded, file.path(), "", 250).unwrap_err();
        assert!(problems[0].starts_with("DATA_DIR"));
    }
}
