//! The broker's own URLs: `PUBLIC_URL`, `OPENER_ORIGINS`, the default
//! public URL of a listener, and where plain http is allowed.

use url::Url;

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

/// `localhost` or a loopback address: where plain http is allowed (tests,
/// demo mode).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
