//! The protection limits (`Limits`) and the defaults that depend on the
//! machine: the connection cap follows the open-file limit.

use std::time::Duration;

use super::defaults;

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
    /// Leading bits of an IPv6 address that name one client in every
    /// per-address count (a subscriber usually has a whole /64).
    pub ipv6_prefix_length: u8,
    /// Exports from the old App Engine service, broker-wide, per minute.
    pub legacy_exports_per_minute: u32,
    /// Exports from the old App Engine service in progress at once.
    pub legacy_export_concurrency: usize,
    /// Client connections one address (an IPv6 /64) may hold open at once;
    /// trusted proxies are not counted.
    pub max_connections_per_address: usize,
    /// Longest a response may make no progress (the client reads nothing)
    /// before its connection is closed.
    pub write_timeout: Duration,
    /// Longest one request may take; it is then answered 504.
    pub request_timeout: Duration,
}

/// The default of `HEADER_READ_TIMEOUT`, in seconds.
pub const HEADER_READ_TIMEOUT_SECS: u64 = 10;
/// The default of `WRITE_TIMEOUT`, in seconds.
pub const WRITE_TIMEOUT_SECS: u64 = 10;
/// The default of `REQUEST_TIMEOUT`, in seconds: above the upstream timeout.
pub const REQUEST_TIMEOUT_SECS: u64 = 30;
/// The default of `MAX_CONNECTIONS_PER_ADDRESS`.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
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
            ipv6_prefix_length: defaults::IPV6_PREFIX_LENGTH,
            legacy_exports_per_minute: defaults::LEGACY_EXPORTS_PER_MINUTE,
            legacy_export_concurrency: defaults::LEGACY_EXPORT_CONCURRENCY,
            max_connections_per_address: MAX_CONNECTIONS_PER_ADDRESS,
            write_timeout: Duration::from_secs(WRITE_TIMEOUT_SECS),
            request_timeout: Duration::from_secs(REQUEST_TIMEOUT_SECS),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies() {
        let p = parse_proxies("10.0.0.0/8, 127.0.0.1").unwrap();
        assert_eq!(p.len(), 2);
        assert!(p[1].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_proxies("nope").is_err());
        assert!(parse_proxies("").unwrap().is_empty());
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
}
