//! `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds to wait from `now` (Unix seconds). `None` when the header is
/// absent or unreadable; a date in the past gives zero.
pub fn parse(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || value.len() > 64 {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let at = date.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

/// Formats a Unix time as an HTTP-date (for tests and mocks).
pub fn http_date(unix: i64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_dates() {
        assert_eq!(parse("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 ", 0), Some(Duration::ZERO));
        let now = 1_700_000_000;
        assert_eq!(
            parse(&http_date(now + 90), now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse(&http_date(now - 90), now), Some(Duration::ZERO));
        assert_eq!(parse("soon", now), None);
        assert_eq!(parse("-5", now), None);
        assert_eq!(parse("99999999999999999999999", now), None);
        assert_eq!(parse("", now), None);
    }
}
