//! The rule every provider endpoint in the catalogue follows: https, or
//! plain http only on loopback (tests, demo mode).

use url::Url;

use crate::provider::hosts::is_loopback;

/// Provider endpoints must be https; plain http only on loopback (tests,
/// demo mode).
pub(super) fn check_url(
    prefix: &str,
    field: &str,
    value: &str,
    problems: &mut Vec<String>,
) -> Option<Url> {
    match Url::parse(value) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some() => Some(url),
        Ok(url) if url.scheme() == "http" && is_loopback(&url) => Some(url),
        Ok(_) => {
            problems.push(format!("{prefix}: {field} must be an https URL"));
            None
        }
        Err(_) => {
            problems.push(format!("{prefix}: {field} is not a valid URL"));
            None
        }
    }
}
