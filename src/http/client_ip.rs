//! The client's address: the peer, or, when the peer is a trusted proxy,
//! the nearest `X-Forwarded-For` hop that is not one. Also notices
//! `X-Forwarded-For` from peers that are not trusted: behind a proxy left
//! out of `TRUSTED_PROXIES`, every client shares the proxy's address.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};

use super::state::AppState;

/// Seconds between two warnings about `X-Forwarded-For` from an untrusted
/// peer: the condition is a deployment setting, one line a minute says it.
const WARN_EVERY_SECS: i64 = 60;

/// Where a request came from, as far as the broker can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The client's address; `None` when the connection's peer is unknown
    /// (requests driven in-process).
    pub ip: Option<IpAddr>,
    /// The request carried `X-Forwarded-For` but came from a peer that is
    /// not a trusted proxy, so the header was ignored.
    pub untrusted_forwarded: bool,
}

pub fn origin(headers: &HeaderMap, extensions: &Extensions, trusted: &[ipnet::IpNet]) -> Origin {
    let Some(peer) = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return Origin {
            ip: None,
            untrusted_forwarded: false,
        };
    };
    let mut forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .peekable();
    if !is_trusted(peer, trusted) {
        return Origin {
            ip: Some(peer),
            untrusted_forwarded: forwarded.peek().is_some(),
        };
    }
    // Walk from the right: each trusted proxy appended the address it saw.
    // An entry that does not parse ends the walk: what is left of it was
    // written by someone no trusted proxy vouches for.
    let entries: Vec<&[u8]> = forwarded.collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_hop(entry) else {
            break;
        };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    Origin {
        ip: Some(client),
        untrusted_forwarded: false,
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:5678`) or in brackets (`[2001:db8::1]`),
/// as proxies write them.
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address as an extractor. Counts requests whose
/// `X-Forwarded-For` was ignored, and says so in the log once a minute.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let found = origin(
            &parts.headers,
            &parts.extensions,
            &app.settings().limits.trusted_proxies,
        );
        if found.untrusted_forwarded {
            note_untrusted_forwarded(app, found.ip);
        }
        Ok(Self(found.ip))
    }
}

/// What the [`ClientIp`] extractor notices about a request, for a path
/// that answers without extracting the address (the `/refresh` fast path):
/// `X-Forwarded-For` from a peer that is not trusted is counted and logged
/// the same way.
pub fn notice_forwarded(app: &AppState, headers: &HeaderMap, extensions: &Extensions) {
    let found = origin(headers, extensions, &app.settings().limits.trusted_proxies);
    if found.untrusted_forwarded {
        note_untrusted_forwarded(app, found.ip);
    }
}

fn note_untrusted_forwarded(app: &AppState, peer: Option<IpAddr>) {
    app.metrics().untrusted_forwarded.inc();
    let now = app.now();
    let last = app.forwarded_warned.load(Ordering::Relaxed);
    let due = last == 0 || now - last >= WARN_EVERY_SECS;
    if due
        && app
            .forwarded_warned
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let peer = peer.map(|ip| ip.to_string()).unwrap_or_default();
        tracing::warn!(
            peer = %peer,
            "X-Forwarded-For from a peer outside TRUSTED_PROXIES is ignored: every client behind that proxy shares its address (and its limits); add the proxy's address to TRUSTED_PROXIES"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn parts(peer: &str, xff: &[&str]) -> (HeaderMap, Extensions) {
        let mut headers = HeaderMap::new();
        for x in xff {
            headers.append("x-forwarded-for", HeaderValue::from_str(x).unwrap());
        }
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 1)));
        (headers, extensions)
    }

    fn client(peer: &str, xff: &[&str], trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
        let (headers, extensions) = parts(peer, xff);
        origin(&headers, &extensions, trusted).ip
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = crate::config::parse_proxies("10.0.0.0/8").unwrap();
        assert_eq!(
            client("203.0.113.9", &["1.2.3.4"], &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client("10.0.0.2", &["1.2.3.4"], &trusted), ip("1.2.3.4"));
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, 1.2.3.4, 10.0.0.3"], &trusted),
            ip("1.2.3.4"),
            "a client cannot spoof past the nearest untrusted hop"
        );
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6", "1.2.3.4"], &trusted),
            ip("1.2.3.4"),
            "several header lines read as one list"
        );
        assert_eq!(client("10.0.0.2", &["junk"], &trusted), ip("10.0.0.2"));
        assert_eq!(
            origin(&HeaderMap::new(), &Extensions::new(), &trusted),
            Origin {
                ip: None,
                untrusted_forwarded: false
            }
        );
    }

    #[test]
    fn forwarded_entries_with_ports_are_read_without_the_port() {
        let trusted = crate::config::parse_proxies("10.0.0.0/8").unwrap();
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, 1.2.3.4:5678"], &trusted),
            ip("1.2.3.4")
        );
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, [2001:db8::7]:443"], &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, [2001:db8::7]"], &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, 10.0.0.3:80"], &trusted),
            ip("6.6.6.6"),
            "a trusted hop with a port is still a trusted hop"
        );
    }

    #[test]
    fn an_entry_that_does_not_parse_ends_the_walk() {
        let trusted = crate::config::parse_proxies("10.0.0.0/8").unwrap();
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, garbage"], &trusted),
            ip("10.0.0.2"),
            "the client-written entry left of the unreadable one is not believed"
        );
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, 1.2.3.4:x, 10.0.0.3"], &trusted),
            ip("10.0.0.3"),
            "the last hop a trusted proxy vouched for"
        );
        assert_eq!(
            client("10.0.0.2", &["6.6.6.6, , 10.0.0.3"], &trusted),
            ip("10.0.0.3"),
            "an empty entry does not parse either"
        );
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_noticed() {
        let trusted = crate::config::parse_proxies("10.0.0.0/8").unwrap();
        let (headers, extensions) = parts("203.0.113.9", &["1.2.3.4"]);
        let found = origin(&headers, &extensions, &trusted);
        assert_eq!(found.ip, ip("203.0.113.9"));
        assert!(found.untrusted_forwarded);
        let (headers, extensions) = parts("203.0.113.9", &[]);
        assert!(!origin(&headers, &extensions, &trusted).untrusted_forwarded);
        let (headers, extensions) = parts("10.0.0.2", &["1.2.3.4"]);
        assert!(!origin(&headers, &extensions, &trusted).untrusted_forwarded);
        let (headers, extensions) = parts("127.0.0.1", &["1.2.3.4"]);
        assert!(
            origin(&headers, &extensions, &[]).untrusted_forwarded,
            "no TRUSTED_PROXIES at all"
        );
    }
}
