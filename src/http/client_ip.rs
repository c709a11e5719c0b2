//! The client's address: the peer, or, when the peer is a trusted proxy,
//! the last `X-Forwarded-For` hop that is not one.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::Request;

pub fn client_ip<B>(request: &Request<B>, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    // Walk from the right: each trusted proxy appended the address it saw.
    let forwarded: Vec<IpAddr> = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(*ip, trusted))
            .unwrap_or(peer),
    )
}

fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(peer: &str, xff: Option<&str>) -> Request<Body> {
        let mut r = Request::builder();
        if let Some(x) = xff {
            r = r.header("x-forwarded-for", x);
        }
        let mut r = r.body(Body::empty()).unwrap();
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 1)));
        r
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = crate::config::parse_proxies("10.0.0.0/8").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_ip(&request("203.0.113.9", Some("1.2.3.4")), &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_ip(&request("10.0.0.2", Some("1.2.3.4")), &trusted),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            client_ip(
                &request("10.0.0.2", Some("6.6.6.6, 1.2.3.4, 10.0.0.3")),
                &trusted
            ),
            Some(ip("1.2.3.4")),
            "a client cannot spoof past the nearest untrusted hop"
        );
        assert_eq!(
            client_ip(&request("10.0.0.2", Some("junk")), &trusted),
            Some(ip("10.0.0.2"))
        );
        let none: Request<Body> = Request::new(Body::empty());
        assert_eq!(client_ip(&none, &trusted), None);
    }
}
