//! Settings: everything `serve` reads at start, typed and validated, with
//! every problem reported at once. Each part parses its own variables and
//! returns every problem it finds: the store in `store`, the old App Engine
//! service in `app_engine`, the protection limits in `limits`, the URLs in
//! `urls`. Nothing here depends on the rest of the broker.

mod app_engine;
mod limits;
mod store;
mod store_url;
mod urls;

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

pub use app_engine::{AppEngineServiceSettings, parse_app_engine_service};
pub use limits::{
    HEADER_READ_TIMEOUT_SECS, Limits, max_connections_for, open_file_limit, parse_proxies,
};
pub use store::{MAX_STORE_TIMEOUT_MS, StoreBackend, StoreDefault, StoreSettings, parse_store};
pub use store_url::{HaKind, HaRedis, ReplicaAcks, apply_ha_options};
pub use urls::{is_loopback, parse_opener_origins, parse_public_url, url_for_listen};

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
    pub app_engine_service: Option<AppEngineServiceSettings>,
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
            app_engine_service: None,
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
}
