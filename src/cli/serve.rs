//! `oauth-broker serve`: load everything (reporting every problem at once),
//! bind, serve until SIGTERM/Ctrl-C, reload keys on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::KeyArgs;
use crate::app::App;
use crate::config::{
    Limits, Settings, StoreDefault, StoreSettings, defaults, parse_legacy_service,
    parse_opener_origins, parse_proxies, parse_public_url, parse_store, url_for_listen,
};
use crate::http::server::ConnectionLimits;
use crate::provider::catalogue::CatalogueSource;
use crate::provider::{Catalogue, HttpTokenClient};
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

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ListenArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub providers: ProviderArgs,
    /// Application name shown on pages (APPNAME is accepted too).
    #[arg(long, env = "APP_NAME")]
    pub app_name: Option<String>,
    /// Heading shown on pages (DISPLAYNAME is accepted too).
    #[arg(long, env = "DISPLAY_NAME")]
    pub display_name: Option<String>,
    /// Directory whose files override the built-in page templates.
    #[arg(long, env = "TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,
    /// Seconds to wait for a provider's token endpoint.
    #[arg(long, env = "UPSTREAM_TIMEOUT", default_value_t = defaults::UPSTREAM_TIMEOUT_SECS)]
    pub upstream_timeout: u64,
    /// Most access tokens kept in the cache.
    #[arg(long, env = "CACHE_CAPACITY", default_value_t = defaults::CACHE_CAPACITY)]
    pub cache_capacity: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Origins the logged-in page posts the AuthID to (window.opener),
    /// comma-separated; * (the default) posts to any opener.
    #[arg(long, env = "OPENER_ORIGINS", default_value = defaults::OPENER_ORIGINS)]
    pub opener_origins: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Base URL of the old App Engine service whose AuthIDs are migrated
    /// (its worker API: /export and /import).
    #[arg(long, env = "LEGACY_SERVICE_URL")]
    pub legacy_service_url: Option<String>,
    /// The old service's worker API key (sent as X-APIKey).
    #[arg(long, env = "LEGACY_SERVICE_API_KEY", hide_env_values = true, value_parser = sensitive)]
    pub legacy_service_api_key: Option<Sensitive>,
}

/// A secret argument: kept out of `Debug`.
fn sensitive(text: &str) -> Result<Sensitive, String> {
    Ok(Sensitive::new(text))
}

/// Where state shared by instances lives (SPEC 8); shared by `serve` and
/// `demo`, whose defaults differ.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The store: unset = embedded in DATA_DIR (serve; one instance), memory
    /// (demo's default), or redis://[user:password@]host:port/db or
    /// rediss://... (a Redis or Valkey shared by several instances).
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

impl ServeArgs {
    /// Validates the settings alone.
    pub fn settings(&self) -> Result<Settings, Vec<String>> {
        let mut problems = Vec::new();
        let public_url = self.server.public_url_or(&self.server.listen);
        let public_url = parse_public_url(&public_url)
            .map_err(|e| problems.push(e))
            .ok();
        let limits = self.limits.limits(&mut problems);
        if self.upstream_timeout == 0 || self.upstream_timeout > 24 {
            problems
                .push("UPSTREAM_TIMEOUT must be 1 to 24 seconds (clients give up after 25)".into());
        }
        if let Some(dir) = &self.templates_dir {
            if !dir.is_dir() {
                problems.push(format!(
                    "TEMPLATES_DIR {} is not a directory",
                    dir.display()
                ));
            }
        }
        let opener_origins = parse_opener_origins(&self.opener_origins)
            .map_err(|e| problems.push(e))
            .unwrap_or_default();
        let store = self.store.settings(StoreDefault::Embedded, &mut problems);
        let legacy_service = parse_legacy_service(
            self.legacy_service_url.as_deref(),
            self.legacy_service_api_key.as_ref().map(Sensitive::expose),
        )
        .unwrap_or_else(|mut p| {
            problems.append(&mut p);
            None
        });
        let fallback = |primary: &Option<String>, legacy: &str, default: &str| {
            primary
                .clone()
                .or_else(|| std::env::var(legacy).ok())
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        match (public_url, store) {
            (Some(public_url), Some(store)) if problems.is_empty() => Ok(Settings {
                listen: self.server.listen.clone(),
                public_url,
                app_name: fallback(&self.app_name, "APPNAME", defaults::APP_NAME),
                display_name: fallback(&self.display_name, "DISPLAYNAME", defaults::DISPLAY_NAME),
                templates_dir: self.templates_dir.clone(),
                upstream_timeout: Duration::from_secs(self.upstream_timeout),
                cache_capacity: self.cache_capacity.max(1),
                limits,
                opener_origins,
                store,
                legacy_service,
            }),
            _ => Err(problems),
        }
    }

    /// Loads settings, keys and providers; every problem at once.
    /// Everything `serve` needs but the store, or every problem found in
    /// the configuration. The store is opened afterwards, inside the
    /// runtime (see [`run`]).
    pub fn load(&self) -> Result<Loaded, Vec<String>> {
        let settings = self.settings();
        let source = self.keys.source();
        let keyring = source.load();
        let catalogue = self.providers.load();
        match (settings, keyring, catalogue) {
            (Ok(settings), Ok(keyring), Ok(catalogue)) => {
                for (id, reason) in catalogue.disabled() {
                    tracing::info!(provider = %id, reason = %reason, "provider disabled");
                }
                let client = HttpTokenClient::new(settings.upstream_timeout)
                    .map_err(|e| vec![format!("HTTP client: {e}")])?;
                let problems =
                    crate::login::Templates::new(settings.templates_dir.as_deref()).check();
                if !problems.is_empty() {
                    return Err(problems);
                }
                Ok(Loaded {
                    settings,
                    keyring,
                    source,
                    catalogue,
                    client: Arc::new(client),
                })
            }
            (s, k, c) => Err([s.err(), k.err(), c.err()]
                .into_iter()
                .flatten()
                .flatten()
                .collect()),
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.server.log_format);
    let loaded = args.load().map_err(|problems| {
        for p in &problems {
            tracing::error!("{p}");
        }
        anyhow::anyhow!(
            "cannot start: {} problem(s) in the configuration",
            problems.len()
        )
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // The store is opened before the server listens: an embedded store
        // whose DATA_DIR another process holds stops the start here. It
        // stays open (and DATA_DIR locked) until the server stops.
        let app = loaded.open().await.map_err(|e| {
            tracing::error!("{e}");
            anyhow::anyhow!("cannot start: {e}")
        })?;
        serve(Arc::new(app)).await
    })
}

/// A configuration that loaded: what [`App::with_metrics`] needs but the
/// store.
pub struct Loaded {
    pub settings: Settings,
    pub keyring: crate::authid::Keyring,
    pub source: crate::authid::keysource::KeySource,
    pub catalogue: Catalogue,
    pub client: Arc<dyn crate::provider::TokenClient>,
}

impl Loaded {
    /// Opens the store the settings name and builds the application on it.
    pub async fn open(self) -> Result<App, String> {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = crate::store::open(&self.settings.store, Arc::clone(&metrics)).await?;
        Ok(App::with_metrics(
            self.settings,
            self.keyring,
            Some(self.source),
            self.catalogue,
            self.client,
            crate::clock::system(),
            store,
            metrics,
        ))
    }
}

pub async fn serve(app: Arc<App>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&app.settings.listen).await?;
    serve_on(listener, app).await
}

pub async fn serve_on(listener: tokio::net::TcpListener, app: Arc<App>) -> anyhow::Result<()> {
    let connections = ConnectionLimits::from_settings(&app.settings.limits);
    tracing::info!(
        address = %listener.local_addr()?,
        public_url = %app.settings.public_base(),
        providers = app.catalogue().providers().len(),
        max_connections = connections.max_connections,
        "listening"
    );
    spawn_reload_on_sighup(Arc::clone(&app));
    spawn_key_dir_watch(Arc::clone(&app));
    let metrics = Arc::clone(&app.metrics);
    let router = crate::http::router(app);
    let (stopping, mut stopping_rx) = tokio::sync::watch::channel(false);
    let server = crate::http::server::serve(listener, router, connections, metrics, async move {
        shutdown_signal().await;
        let _ = stopping.send(true);
    });
    // In-flight requests get a bounded time to finish (each is itself
    // bounded by the request timeout); then the process exits anyway.
    let grace = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => {},
        () = grace => tracing::warn!("shutdown grace period over; closing the remaining connections"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Longest wait for in-flight requests after SIGTERM: above the request
/// timeout, so no request that can still succeed is cut. Orchestrators
/// should allow this long before they kill (Docker `stop_grace_period`,
/// Kubernetes `terminationGracePeriodSeconds`).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(35);

fn spawn_reload_on_sighup(app: Arc<App>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; keys reload only on restart");
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(problems) = app.reload_keys() {
                tracing::error!(problems = %problems.join("; "), "key reload failed; keeping the current keys");
            }
        }
    });
}

/// How often the key directory is checked for changes.
const KEY_DIR_POLL: std::time::Duration = std::time::Duration::from_secs(30);

/// Reloads keys when the key directory changes (a mounted secret updated,
/// `keys activate` run on the host), so SIGHUP is not required.
fn spawn_key_dir_watch(app: Arc<App>) {
    let Some(crate::authid::keysource::KeySource::Dir(dir)) = app.key_source.clone() else {
        return;
    };
    let dir = crate::authid::keydir::KeyDir::new(dir);
    tokio::spawn(async move {
        let mut seen = dir.fingerprint();
        let mut tick = tokio::time::interval(KEY_DIR_POLL);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = dir.fingerprint();
            if now != seen {
                seen = now;
                if let Err(problems) = app.reload_keys() {
                    tracing::error!(problems = %problems.join("; "), "key directory changed but does not load; keeping the current keys");
                }
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// `LOG_FORMAT=json` for machines, text otherwise; `LOG_LEVEL` filters.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format.eq_ignore_ascii_case("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
