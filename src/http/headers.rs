//! Response headers more than one handler sets: those of an answer that
//! carries a token (both `/refresh` paths), and the request-side rules both
//! `/refresh` paths apply (the AuthID as sent, a form body).

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::authid::MAX_AUTHID_LEN;

/// Responses carrying a token must never be cached anywhere.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The headers of a `/refresh` token answer that the handler sets (the
/// middleware stack adds the security headers and the request id).
pub fn token_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(headers);
}

/// Whether a request body is a form the handlers read.
pub fn is_form(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// An AuthID as a client sent it, after the trim.
#[derive(Debug, PartialEq, Eq)]
pub enum SentAuthId<'a> {
    /// Nothing but blanks: as if none was sent.
    Blank,
    TooLong,
    Given(&'a [u8]),
}

/// The rules for an AuthID as sent: blanks around it are dropped (in a
/// header value that is text, the only whitespace is spaces and tabs), an
/// empty one counts as none, a long one is refused. On bytes, unchecked:
/// the fast path cannot afford to check that they are text.
pub fn sent_authid(bytes: &[u8]) -> SentAuthId<'_> {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    let trimmed = &bytes[start..end];
    if trimmed.is_empty() {
        SentAuthId::Blank
    } else if trimmed.len() > MAX_AUTHID_LEN {
        SentAuthId::TooLong
    } else {
        SentAuthId::Given(trimmed)
    }
}

/// The security headers of every answer (set by the middleware stack when
/// a handler did not, and by the fast path on a hit).
pub const SECURITY_HEADERS: [(HeaderName, &str); 2] = [
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authid_is_trimmed_of_blanks_and_refused_when_long() {
        assert_eq!(sent_authid(b""), SentAuthId::Blank);
        assert_eq!(sent_authid(b" \t "), SentAuthId::Blank);
        assert_eq!(sent_authid(b" \tv3:abc\t "), SentAuthId::Given(b"v3:abc"));
        let long = vec![b'v'; MAX_AUTHID_LEN + 1];
        assert_eq!(sent_authid(&long), SentAuthId::TooLong);
        let longest = [b" ".as_slice(), &long[1..], b" "].concat();
        assert!(matches!(sent_authid(&longest), SentAuthId::Given(_)));
    }

    #[test]
    fn only_a_url_encoded_body_is_a_form() {
        let form = |v: &'static str| is_form(Some(&HeaderValue::from_static(v)));
        assert!(form("application/x-www-form-urlencoded"));
        assert!(form("application/x-www-form-urlencoded; charset=utf-8"));
        assert!(!form("application/json"));
        assert!(!is_form(None));
    }
}
