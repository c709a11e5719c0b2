//! Settings: everything `serve` reads at start, typed and validated, with
//! every problem reported at once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::migrate::LegacyServiceSettings;
use crate::secret::Sensitive;

mod store_url;
pub use store_url::{HaKind, HaRedis, ReplicaAcks, apply_ha_options};

/// The default of each setting, for the command line and for
/// [`Settings::for_url`] alike.
pub mod defaults {
    pub const APP_NAME: &str = "oauth-broker";
    pub const DISPLAY_NAME: &str = "OAuth login";
    pub const UPSTREAM_TIMEOUT_SECS: u64 = 20;
    pub const CACHE_CAPACITY: u64 = 200_000;
    /// Any opener.
    pub const OPENER_ORIGINS: &str = "*";
    pub const BACKOFF_MAX_SECS: u64 = 3600;
    pub const UPSTREAM_CONCURRENCY: usize = 16;
    pub const LOGIN_REFRESHES_PER_HOUR: u32 = 20;
    pub const LOGIN_REQUESTS_PER_HOUR: u32 = 1200;
    pub const BAD_AUTHIDS_PER_MINUTE: u32 = 30;
    pub const LOGIN_ATTEMPTS_PER_MINUTE: u32 = 30;
    pub const MAX_CONCURRENT_REQUESTS: usize = 1024;
    pub const STORE_PREFIX: &str = "oauth-broker:";
    pub const STORE_TIMEOUT_MS: u64 = 250;
    pub const DATA_DIR: &str = "./data";
}

/// Validated server settings (providers and keys are loaded beside them).
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    /// External base URL without a trailing slash.
    pub public_url: Url,
    pub app_name: String,
    pub display_name: String,
    pub templates_dir: Option<PathBuf>,
    /// Timeout of one call to a provider.
    pub upstream_timeout: Duration,
    /// Most access tokens held in the cache.
    pub cache_capacity: u64,
    pub limits: Limits,
    /// Origins the logged-in page posts the AuthID to (`window.opener`);
    /// `["*"]` posts to any opener, as Duplicati's UI runs on any host.
    pub opener_origins: Vec<String>,
    /// Where state shared by instances lives (SPEC 8).
    pub store: StoreSettings,
    /// The old App Engine service whose AuthIDs are migrated; `None` when
    /// `LEGACY_SERVICE_URL` is not set.
    pub legacy_service: Option<LegacyServiceSettings>,
}

/// Protection of providers and of the broker itself.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a provider's `Retry-After` may block it.
    pub backoff_max: Duration,
    /// Concurrent calls to one provider.
    pub upstream_concurrency: usize,
    /// Upstream refreshes one login may cause per hour.
    pub login_refreshes_per_hour: u32,
    /// Requests (cache hits included) one login may make per hour.
    pub login_requests_per_hour: u32,
    /// AuthIDs that fail to open, per client address and minute.
    pub bad_authids_per_minute: u32,
    /// Login callbacks, login-token logins and revocations (each may call
    /// a provider), per client address and minute.
    pub login_attempts_per_minute: u32,
    /// Requests handled at once by the whole server.
    pub max_concurrent_requests: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Longest wait for a request's headers, which is also how long an
    /// idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Client connections open at once.
    pub max_connections: usize,
}

/// The default of `HEADER_READ_TIMEOUT`, in seconds.
pub const HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// Connections allowed when the open-file limit cannot be read or is
/// unlimited, and the most the default ever allows.
const MAX_CONNECTIONS_CEILING: usize = 65_536;
/// Files kept for everything else the process opens (provider
/// connections, key files, the store, logs): a quarter of the limit, and
/// at least this many.
const RESERVED_FILES: u64 = 64;

/// The default of `MAX_CONNECTIONS` for a process allowed `open_files`
/// files (`None`: unknown or unlimited): three quarters of them.
pub fn max_connections_for(open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return MAX_CONNECTIONS_CEILING;
    };
    let reserved = (limit / 4).max(RESERVED_FILES);
    let usable = limit.saturating_sub(reserved).max(16);
    usize::try_from(usable)
        .unwrap_or(MAX_CONNECTIONS_CEILING)
        .min(MAX_CONNECTIONS_CEILING)
}

/// The soft open-file limit of this process, from `/proc/self/limits`
/// (Linux); `None` when unknown or unlimited.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            backoff_max: Duration::from_secs(defaults::BACKOFF_MAX_SECS),
            upstream_concurrency: defaults::UPSTREAM_CONCURRENCY,
            login_refreshes_per_hour: defaults::LOGIN_REFRESHES_PER_HOUR,
            login_requests_per_hour: defaults::LOGIN_REQUESTS_PER_HOUR,
            bad_authids_per_minute: defaults::BAD_AUTHIDS_PER_MINUTE,
            login_attempts_per_minute: defaults::LOGIN_ATTEMPTS_PER_MINUTE,
            max_concurrent_requests: defaults::MAX_CONCURRENT_REQUESTS,
            trusted_proxies: Vec::new(),
            header_read_timeout: Duration::from_secs(HEADER_READ_TIMEOUT_SECS),
            max_connections: max_connections_for(open_file_limit()),
        }
    }
}

/// Parses `TRUSTED_PROXIES`: comma-separated addresses or CIDR ranges.
pub fn parse_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("TRUSTED_PROXIES: {s:?} is not an address or CIDR range"))
        })
        .collect()
}

impl Settings {
    /// Settings for tests and demo mode: everything default but the URL.
    pub fn for_url(public_url: &str) -> Result<Self, String> {
        Ok(Self {
            listen: "127.0.0.1:0".into(),
            public_url: parse_public_url(public_url)?,
            app_name: defaults::APP_NAME.into(),
            display_name: defaults::DISPLAY_NAME.into(),
            templates_dir: None,
            upstream_timeout: Duration::from_secs(defaults::UPSTREAM_TIMEOUT_SECS),
            cache_capacity: defaults::CACHE_CAPACITY,
            limits: Limits::default(),
            opener_origins: parse_opener_origins(defaults::OPENER_ORIGINS)?,
            store: StoreSettings::memory(),
            legacy_service: None,
        })
    }

    /// True when cookies must be `Secure` (the public URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The OAuth redirect URI registered at every provider.
    pub fn redirect_uri(&self) -> String {
        format!("{}/logged-in", self.public_base())
    }

    /// `PUBLIC_URL` as text, without a trailing slash.
    pub fn public_base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }
}

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

/// `PUBLIC_URL` must be an absolute http(s) URL without query or fragment.
pub fn parse_public_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim())
        .map_err(|_| format!("PUBLIC_URL {text:?} is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("PUBLIC_URL must be an http or https URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("PUBLIC_URL must not have a query or fragment".into());
    }
    Ok(url)
}

/// `OPENER_ORIGINS`: `*`, or comma-separated origins such as
/// `https://backup.example.com,http://localhost:8200`.
pub fn parse_opener_origins(text: &str) -> Result<Vec<String>, String> {
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() || items == ["*"] {
        return Ok(vec!["*".into()]);
    }
    items
        .iter()
        .map(|item| {
            let url = Url::parse(item)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    format!("OPENER_ORIGINS: {item:?} is not an http(s) origin (or use * alone)")
                })?;
            let origin = url.origin().ascii_serialization();
            if item.trim_end_matches('/') != origin {
                return Err(format!(
                    "OPENER_ORIGINS: {item:?} must be an origin only (scheme, host, port), e.g. {origin}"
                ));
            }
            Ok(origin)
        })
        .collect()
}

/// The old service's API key must be at least this long: the old service
/// refuses every call when its own key is shorter.
const MIN_LEGACY_API_KEY_LEN: usize = 10;

/// `LEGACY_SERVICE_URL` and `LEGACY_SERVICE_API_KEY`: both or neither. The
/// URL is the old service's base (where `/export` and `/import` live),
/// https unless on loopback, as AuthIDs and the key travel to it.
pub fn parse_legacy_service(
    url: Option<&str>,
    api_key: Option<&str>,
) -> Result<Option<LegacyServiceSettings>, Vec<String>> {
    let url = url.map(str::trim).filter(|s| !s.is_empty());
    let api_key = api_key.map(str::trim).filter(|s| !s.is_empty());
    let mut problems = Vec::new();
    let parsed = url.and_then(|text| match Url::parse(text) {
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            problems.push("LEGACY_SERVICE_URL must not have a query or fragment".to_string());
            None
        }
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Some(u),
        Ok(u) if u.scheme() == "http" && crate::provider::hosts::is_loopback(&u) => Some(u),
        Ok(_) => {
            problems.push(
                "LEGACY_SERVICE_URL must be an https URL (plain http only on loopback)".to_string(),
            );
            None
        }
        Err(_) => {
            problems.push(format!(
                "LEGACY_SERVICE_URL {text:?} is not an absolute URL"
            ));
            None
        }
    });
    match (url, api_key) {
        (Some(_), None) => problems.push("LEGACY_SERVICE_URL is set but LEGACY_SERVICE_API_KEY is not".into()),
        (None, Some(_)) => problems.push("LEGACY_SERVICE_API_KEY is set but LEGACY_SERVICE_URL is not".into()),
        (_, Some(key)) if key.len() < MIN_LEGACY_API_KEY_LEN => problems.push(format!(
            "LEGACY_SERVICE_API_KEY must have at least {MIN_LEGACY_API_KEY_LEN} characters (the old service refuses shorter keys)"
        )),
        _ => {}
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(parsed.zip(api_key).map(|(url, key)| LegacyServiceSettings {
        url,
        api_key: Sensitive::new(key),
    }))
}

/// The URL a listener is reachable at, for a default `PUBLIC_URL`.
pub fn url_for_listen(listen: &str) -> String {
    let host = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    format!("http://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_rules() {
        assert!(parse_public_url("https://oauth.example.com").is_ok());
        assert!(parse_public_url("http://127.0.0.1:8080/").is_ok());
        assert!(parse_public_url("ftp://x").is_err());
        assert!(parse_public_url("/relative").is_err());
        assert!(parse_public_url("https://x/?a=b").is_err());
        let s = Settings::for_url("https://oauth.example.com/base/").unwrap();
        assert_eq!(s.redirect_uri(), "https://oauth.example.com/base/logged-in");
    }

    #[test]
    fn proxies() {
        let p = parse_proxies("10.0.0.0/8, 127.0.0.1").unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[1].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_proxies("nope").is_err());
        assert!(parse_proxies("").unwrap().is_empty());
    }

    #[test]
    fn opener_origins() {
        assert_eq!(parse_opener_origins("").unwrap(), ["*"]);
        assert_eq!(parse_opener_origins(" * ").unwrap(), ["*"]);
        assert_eq!(
            parse_opener_origins("https://a.example, http://localhost:8200/").unwrap(),
            ["https://a.example", "http://localhost:8200"]
        );
        for bad in [
            "*,https://a.example",
            "https://a.example/path",
            "ftp://a",
            "nonsense",
        ] {
            assert!(parse_opener_origins(bad).is_err(), "{bad}");
        }
    }

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

    #[test]
    fn the_default_connection_cap_leaves_files_for_everything_else() {
        assert_eq!(max_connections_for(Some(1024)), 768);
        assert_eq!(max_connections_for(Some(128)), 64);
        assert_eq!(max_connections_for(Some(20_000)), 15_000);
        assert_eq!(max_connections_for(Some(10)), 16, "never below a handful");
        assert_eq!(max_connections_for(Some(1 << 20)), 65_536);
        assert_eq!(max_connections_for(None), 65_536);
    }

    #[test]
    fn the_open_file_limit_is_read_from_procfs() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             63471                63471                processes\n\
                      Max open files            20000                524288               files\n";
        assert_eq!(parse_open_file_limit(limits), Some(20_000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert_eq!(parse_open_file_limit(""), None);
    }

    #[test]
    fn legacy_service_settings() {
        assert!(parse_legacy_service(None, None).unwrap().is_none());
        assert!(parse_legacy_service(Some(" "), Some("")).unwrap().is_none());
        let s = parse_legacy_service(Some("https://old.appspot.com/"), Some("k-0123456789"))
            .unwrap()
            .unwrap();
        assert_eq!(s.url.as_str(), "https://old.appspot.com/");
        assert_eq!(s.api_key.expose(), "k-0123456789");
        assert!(!format!("{s:?}").contains("k-0123456789"));
        assert!(
            parse_legacy_service(Some("http://127.0.0.1:9"), Some("k-0123456789"))
                .unwrap()
                .is_some()
        );
        for (url, key, needle) in [
            (
                Some("https://old.example"),
                None,
                "LEGACY_SERVICE_API_KEY is not",
            ),
            (None, Some("k-0123456789"), "LEGACY_SERVICE_URL is not"),
            (Some("http://old.example"), Some("k-0123456789"), "https"),
            (Some("nonsense"), Some("k-0123456789"), "absolute"),
            (
                Some("https://old.example/?x=1"),
                Some("k-0123456789"),
                "query",
            ),
            (Some("https://old.example"), Some("short"), "at least 10"),
        ] {
            let problems = parse_legacy_service(url, key).unwrap_err();
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{url:?} {key:?}: {problems:?}"
            );
            assert!(!problems.iter().any(|p| p.contains("k-0123456789")));
        }
    }

    #[test]
    fn listen_to_url() {
        assert_eq!(url_for_listen("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(url_for_listen("127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
