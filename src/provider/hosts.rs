//! Which hosts the broker may talk to for a provider besides its
//! configured endpoints: its `allowedHosts` (pCloud's regional API hosts,
//! Jottacloud's identity server), `host` or `host:port`, and plain http
//! only on loopback. Host names are compared without regard to case.

use url::Url;

/// `host` or `host:port` as it appears in an `allowedHosts` entry; `None`
/// when the text is not a plain host name or address with an optional port.
pub fn parse_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() || text.len() > 260 {
        return None;
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().ok()?)),
        None => (text.clone(), None),
    };
    let plain = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    plain.then_some((host, port))
}

pub use crate::config::is_loopback;

/// `host` or `host:port`, as in an `allowedHosts` entry.
pub fn host_port(host: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// True when `host[:port]` is one of `allowed`.
pub fn is_allowed(allowed: &[String], host: &str, port: Option<u16>) -> bool {
    let candidate = host_port(host, port);
    allowed.iter().any(|a| a.eq_ignore_ascii_case(&candidate))
}

/// An URL the broker may fetch for a login: https to an allowed host, or
/// plain http to an allowed loopback host (tests, demo mode). No user info.
pub fn check_url(allowed: &[String], text: &str) -> Option<Url> {
    let url = Url::parse(text.trim()).ok()?;
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => is_loopback(&url),
        _ => false,
    };
    let host = url.host_str()?.to_ascii_lowercase();
    let clean = url.username().is_empty() && url.password().is_none();
    (scheme_ok && clean && is_allowed(allowed, &host, url.port())).then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["api.pcloud.com".into(), "127.0.0.1:8123".into()]
    }

    #[test]
    fn host_port_entries() {
        assert_eq!(
            parse_host_port("eapi.pcloud.com"),
            Some(("eapi.pcloud.com".into(), None))
        );
        assert_eq!(
            parse_host_port("127.0.0.1:8123"),
            Some(("127.0.0.1".into(), Some(8123)))
        );
        for bad in [
            "",
            "evil.com/x",
            "a:b",
            "user@evil",
            "a b",
            "evil.com:99999",
            "//evil",
        ] {
            assert_eq!(parse_host_port(bad), None, "{bad}");
        }
        assert!(is_allowed(&allowed(), "api.pcloud.com", None));
        assert!(!is_allowed(&allowed(), "api.pcloud.com", Some(8443)));
        assert!(!is_allowed(&allowed(), "127.0.0.1", None));
        assert!(is_allowed(&allowed(), "127.0.0.1", Some(8123)));
    }

    #[test]
    fn urls_must_be_https_or_loopback_http_on_allowed_hosts() {
        assert!(check_url(&allowed(), "https://api.pcloud.com/x").is_some());
        assert!(check_url(&allowed(), "https://api.pcloud.com:443/x").is_some());
        assert!(check_url(&allowed(), "http://127.0.0.1:8123/x").is_some());
        for bad in [
            "http://api.pcloud.com/x",
            "https://evil.com/x",
            "https://api.pcloud.com.evil.com/x",
            "https://u:p@api.pcloud.com/x",
            "http://127.0.0.1:8124/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(check_url(&allowed(), bad).is_none(), "{bad}");
        }
    }
}
