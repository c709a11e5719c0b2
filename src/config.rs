//! Settings: everything `serve` reads at start, typed and validated, with
//! every problem reported at once.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

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
    pub const MAX_CONCURRENT_REQUESTS: usize = 1024;
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
    /// Requests handled at once by the whole server.
    pub max_concurrent_requests: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            backoff_max: Duration::from_secs(defaults::BACKOFF_MAX_SECS),
            upstream_concurrency: defaults::UPSTREAM_CONCURRENCY,
            login_refreshes_per_hour: defaults::LOGIN_REFRESHES_PER_HOUR,
            login_requests_per_hour: defaults::LOGIN_REQUESTS_PER_HOUR,
            bad_authids_per_minute: defaults::BAD_AUTHIDS_PER_MINUTE,
            max_concurrent_requests: defaults::MAX_CONCURRENT_REQUESTS,
            trusted_proxies: Vec::new(),
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

    #[test]
    fn listen_to_url() {
        assert_eq!(url_for_listen("0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(url_for_listen("127.0.0.1:9"), "http://127.0.0.1:9");
    }
}
