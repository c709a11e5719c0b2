//! `oauth-broker serve`'s arguments and how they become a configuration:
//! settings, keys and providers loaded together, every problem reported at
//! once. Running the server is `run`'s job.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, FromArgMatches};

use super::args::{KeyArgs, LimitArgs, ListenArgs, ProviderArgs, StoreArgs};
use crate::app::{App, AppParts};
use crate::config::{
    Settings, StoreDefault, defaults, parse_app_engine_service, parse_opener_origins,
    parse_public_url,
};
use crate::provider::{Catalogue, HttpTokenClient};
use crate::secret::Sensitive;

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
        let app_engine_service = parse_app_engine_service(
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
                app_engine_service,
            }),
            _ => Err(problems),
        }
    }

    /// Loads settings, keys and providers; every problem at once.
    /// Everything `serve` needs but the store, or every problem found in
    /// the configuration. The store is opened afterwards, inside the
    /// runtime (see [`super::run::run`]).
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
                    crate::http::Templates::new(settings.templates_dir.as_deref()).check();
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

impl ServeArgs {
    /// `serve` settings from the environment alone (no command given).
    pub(super) fn from_env() -> anyhow::Result<Self> {
        let matches = <Self as Args>::augment_args(clap::Command::new("serve"))
            .try_get_matches_from(["serve"])?;
        Ok(Self::from_arg_matches(&matches)?)
    }
}

/// A configuration that loaded: what [`App::new`] needs but the
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
        Ok(App::new(AppParts {
            settings: self.settings,
            keyring: self.keyring,
            key_source: Some(self.source),
            catalogue: self.catalogue,
            client: self.client,
            clock: crate::clock::system(),
            store,
            metrics,
            demo: None,
        }))
    }
}
