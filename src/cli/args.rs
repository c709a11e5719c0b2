//! Arguments more than one command takes: where the server listens (serve,
//! demo), the keys (every command that opens or seals AuthIDs), the
//! providers (serve, check-config), the protection limits and the store
//! (serve, demo). Each turns itself into its part of the settings,
//! adding what is wrong to a list so every problem is reported at once.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::authid::keysource::KeySource;
use crate::config::{
    Limits, StoreDefault, StoreSettings, apply_ha_options, defaults, parse_proxies, parse_store,
    url_for_listen,
};
use crate::provider::Catalogue;
use crate::provider::catalogue::CatalogueSource;
use crate::secret::Sensitive;

/// Where the server listens and how it logs; shared by `serve` and `demo`.
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// Address to bind (port 0 picks a free one).
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// External base URL; the OAuth redirect URI is PUBLIC_URL/logged-in.
    /// Defaults to http://LISTEN (the address bound).
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl ListenArgs {
    /// `PUBLIC_URL`, or the URL of `bound` when it is not set.
    pub fn public_url_or(&self, bound: &str) -> String {
        self.public_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| url_for_listen(bound))
    }
}

/// Where keys come from; shared by every command that needs them.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Directory of private JWK files.
    #[arg(long, env = "KEYS_DIR", default_value = "./keys")]
    pub keys_dir: PathBuf,
    /// A JWK Set (raw JSON or base64:...) used instead of KEYS_DIR.
    #[arg(long, env = "KEYS", hide_env_values = true)]
    pub keys: Option<Sensitive>,
}

impl KeyArgs {
    pub fn source(&self) -> KeySource {
        KeySource::from_settings(self.keys.as_ref().map(Sensitive::expose), &self.keys_dir)
    }
}

/// Where state shared by instances lives (SPEC 8); shared by `serve` and
/// `demo`, whose defaults differ.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The store: unset = embedded in DATA_DIR (serve; one instance), memory
    /// (demo's default), or redis://[user:password@]host:port/db or
    /// rediss://... (a Redis or Valkey shared by several instances),
    /// redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]
    /// or redis+cluster://[user:password@]host:port[,host:port...] (and
    /// their rediss+ forms) for a highly available Redis.
    #[arg(long, env = "STORE", hide_env_values = true)]
    pub store: Option<Sensitive>,
    /// Directory of the embedded store.
    #[arg(long, env = "DATA_DIR", default_value = defaults::DATA_DIR)]
    pub data_dir: PathBuf,
    /// Prefix of every key the broker writes to Redis.
    #[arg(long, env = "STORE_PREFIX", default_value = defaults::STORE_PREFIX)]
    pub store_prefix: String,
    /// Milliseconds one store operation may take before it counts as failed.
    #[arg(long, env = "STORE_TIMEOUT_MS", default_value_t = defaults::STORE_TIMEOUT_MS)]
    pub store_timeout_ms: u64,
    /// The sentinels' own password, when they have one (redis+sentinel://).
    #[arg(long, env = "STORE_SENTINEL_PASSWORD", hide_env_values = true)]
    pub store_sentinel_password: Option<Sensitive>,
    /// Replicas that must acknowledge a rotation before the new token is
    /// handed out: auto (1 when the master reports a connected replica,
    /// else 0) or 0 to 16.
    #[arg(long, env = "STORE_REPLICA_ACKS")]
    pub store_replica_acks: Option<String>,
}

impl StoreArgs {
    pub(super) fn settings(
        &self,
        default: StoreDefault,
        problems: &mut Vec<String>,
    ) -> Option<StoreSettings> {
        parse_store(
            self.store.as_ref().map(Sensitive::expose),
            default,
            &self.data_dir,
            &self.store_prefix,
            self.store_timeout_ms,
        )
        .and_then(|mut settings| {
            let found = apply_ha_options(
                &mut settings,
                self.store_sentinel_password.as_ref().map(Sensitive::expose),
                self.store_replica_acks.as_deref(),
            );
            if found.is_empty() {
                Ok(settings)
            } else {
                Err(found)
            }
        })
        .map_err(|p| problems.extend(p))
        .ok()
    }
}

/// Protection of providers and of the server.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Longest block, in seconds, that a provider's Retry-After may impose.
    #[arg(long, env = "BACKOFF_MAX", default_value_t = defaults::BACKOFF_MAX_SECS)]
    pub backoff_max: u64,
    /// Concurrent calls to one provider; further calls queue briefly.
    #[arg(long, env = "UPSTREAM_CONCURRENCY", default_value_t = defaults::UPSTREAM_CONCURRENCY)]
    pub upstream_concurrency: usize,
    /// Upstream refreshes one login may cause per hour.
    #[arg(long, env = "LOGIN_REFRESHES_PER_HOUR", default_value_t = defaults::LOGIN_REFRESHES_PER_HOUR)]
    pub login_refreshes_per_hour: u32,
    /// Requests (cache hits included) one login may make per hour.
    #[arg(long, env = "LOGIN_REQUESTS_PER_HOUR", default_value_t = defaults::LOGIN_REQUESTS_PER_HOUR)]
    pub login_requests_per_hour: u32,
    /// AuthIDs that fail to open, per client address and minute.
    #[arg(long, env = "BAD_AUTHIDS_PER_MINUTE", default_value_t = defaults::BAD_AUTHIDS_PER_MINUTE)]
    pub bad_authids_per_minute: u32,
    /// Login callbacks, login-token logins and revocations, per client
    /// address and minute.
    #[arg(long, env = "LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = defaults::LOGIN_ATTEMPTS_PER_MINUTE)]
    pub login_attempts_per_minute: u32,
    /// Requests the server handles at once; more get 503.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = defaults::MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,
    /// Proxies (addresses or CIDR ranges) whose X-Forwarded-For is believed.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Seconds to wait for a request's headers; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value_t = crate::config::HEADER_READ_TIMEOUT_SECS)]
    pub header_read_timeout: u64,
    /// Client connections open at once; more wait until one closes.
    /// Default: three quarters of the process's open-file limit.
    #[arg(long, env = "MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
}

impl LimitArgs {
    pub(super) fn limits(&self, problems: &mut Vec<String>) -> Limits {
        let trusted_proxies = parse_proxies(&self.trusted_proxies).unwrap_or_else(|e| {
            problems.push(e);
            Vec::new()
        });
        let positive = |name: &str, v: u64, problems: &mut Vec<String>| {
            if v == 0 {
                problems.push(format!("{name} must be above 0"));
            }
        };
        positive("BACKOFF_MAX", self.backoff_max, problems);
        positive(
            "UPSTREAM_CONCURRENCY",
            self.upstream_concurrency as u64,
            problems,
        );
        positive(
            "LOGIN_REFRESHES_PER_HOUR",
            self.login_refreshes_per_hour.into(),
            problems,
        );
        positive(
            "LOGIN_REQUESTS_PER_HOUR",
            self.login_requests_per_hour.into(),
            problems,
        );
        positive(
            "BAD_AUTHIDS_PER_MINUTE",
            self.bad_authids_per_minute.into(),
            problems,
        );
        positive(
            "LOGIN_ATTEMPTS_PER_MINUTE",
            self.login_attempts_per_minute.into(),
            problems,
        );
        positive(
            "MAX_CONCURRENT_REQUESTS",
            self.max_concurrent_requests as u64,
            problems,
        );
        positive("HEADER_READ_TIMEOUT", self.header_read_timeout, problems);
        if let Some(max) = self.max_connections {
            positive("MAX_CONNECTIONS", max as u64, problems);
        }
        Limits {
            backoff_max: Duration::from_secs(self.backoff_max),
            upstream_concurrency: self.upstream_concurrency,
            login_refreshes_per_hour: self.login_refreshes_per_hour,
            login_requests_per_hour: self.login_requests_per_hour,
            bad_authids_per_minute: self.bad_authids_per_minute,
            login_attempts_per_minute: self.login_attempts_per_minute,
            max_concurrent_requests: self.max_concurrent_requests,
            trusted_proxies,
            header_read_timeout: Duration::from_secs(self.header_read_timeout),
            max_connections: self.max_connections.unwrap_or_else(|| {
                crate::config::max_connections_for(crate::config::open_file_limit())
            }),
        }
    }
}

/// Where providers come from; shared by `serve` and `check-config`.
#[derive(Debug, Clone, Args)]
pub struct ProviderArgs {
    /// Provider entries: a JSON file, or base64:...
    #[arg(long, env = "CONFIGFILE")]
    pub configfile: Option<String>,
    /// Secrets for %NAME% references: a JSON file, or base64:...
    #[arg(long, env = "SECRETS", hide_env_values = true)]
    pub secrets: Option<Sensitive>,
    /// Comma-separated provider ids to enable; empty = all with credentials.
    #[arg(long, env = "SERVICES")]
    pub services: Option<String>,
}

impl ProviderArgs {
    pub fn load(&self) -> Result<Catalogue, Vec<String>> {
        let source = CatalogueSource {
            configfile: self.configfile.as_deref(),
            secrets: self.secrets.as_ref().map(Sensitive::expose),
            services: self.services.as_deref(),
        };
        Catalogue::load(&source, &|name| std::env::var(name).ok())
    }
}
