//! Counting per client address: one function says which addresses are one
//! client (an IPv6 network of a configured prefix, 64 bits by default, as
//! a single subscriber is usually given a whole /64), and a window counter
//! keyed by that group.

use std::net::{IpAddr, Ipv6Addr};

use super::WindowLimiter;

/// The default of `IPV6_PREFIX_LENGTH`: a /64 is one client.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The address that stands for `ip`'s client in every per-address count:
/// an IPv4 address as it is (an IPv4-mapped IPv6 address as its IPv4
/// address), an IPv6 address with all but its first `ipv6_prefix` bits
/// cleared (a prefix above 128 counts as 128).
pub fn address_group(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// A [`WindowLimiter`] of client addresses, counting each group of
/// [`address_group`] as one key.
pub struct AddressLimiter {
    counts: WindowLimiter<IpAddr>,
    ipv6_prefix: u8,
}

impl AddressLimiter {
    /// At most `limit` hits per client in each window of `window_secs`,
    /// for at most about `capacity` clients.
    pub fn new(limit: u32, window_secs: i64, capacity: u64, ipv6_prefix: u8) -> Self {
        Self {
            counts: WindowLimiter::new(limit, window_secs, capacity),
            ipv6_prefix,
        }
    }

    fn key(&self, ip: IpAddr) -> IpAddr {
        address_group(ip, self.ipv6_prefix)
    }

    /// Counts a hit; `Err(seconds)` when the client is over its limit.
    pub fn hit(&self, ip: IpAddr, now: i64) -> Result<(), u64> {
        self.counts.hit(&self.key(ip), now)
    }

    /// Whether the client is over its limit, without counting.
    pub fn check(&self, ip: IpAddr, now: i64) -> Result<(), u64> {
        self.counts.check(&self.key(ip), now)
    }

    /// Gives back one hit of the client's running window.
    pub fn refund(&self, ip: IpAddr, now: i64) {
        self.counts.refund(&self.key(ip), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_group_by_their_prefix() {
        assert_eq!(
            address_group(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_group(ip("2001:db8:1:2::5"), 48), ip("2001:db8:1::"));
        assert_eq!(address_group(ip("2001:db8::5"), 128), ip("2001:db8::5"));
        assert_eq!(address_group(ip("2001:db8::5"), 200), ip("2001:db8::5"));
        assert_eq!(address_group(ip("2001:db8::5"), 0), ip("::"));
        assert_eq!(address_group(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(address_group(ip("::ffff:192.0.2.7"), 64), ip("192.0.2.7"));
    }

    #[test]
    fn one_64_shares_a_budget_and_others_do_not() {
        let l = AddressLimiter::new(2, 60, 100, DEFAULT_IPV6_PREFIX);
        assert!(l.hit(ip("2001:db8:0:1::1"), 0).is_ok());
        assert!(l.hit(ip("2001:db8:0:1:ffff::2"), 0).is_ok());
        assert!(
            l.hit(ip("2001:db8:0:1:1234:5678:9abc:def0"), 0).is_err(),
            "a third address of the same /64 is over the shared limit"
        );
        assert!(l.hit(ip("2001:db8:0:2::1"), 0).is_ok(), "another /64");
        assert!(l.hit(ip("192.0.2.1"), 0).is_ok());
        assert!(
            l.hit(ip("192.0.2.2"), 0).is_ok(),
            "IPv4 addresses stay apart"
        );
        assert!(l.hit(ip("192.0.2.1"), 0).is_ok());
        assert!(
            l.hit(ip("::ffff:192.0.2.1"), 0).is_err(),
            "an IPv4-mapped address is its IPv4 address"
        );
        l.refund(ip("2001:db8:0:1::99"), 0);
        assert!(l.check(ip("2001:db8:0:1::1"), 0).is_ok());
    }
}
