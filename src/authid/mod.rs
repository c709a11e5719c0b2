//! The AuthID: what the user pastes into their backup client.
//!
//! `v3:<compact JWE>` carries the refresh token sealed to a server key
//! (ECDH-ES+A256KW on P-256, A256GCM). The legacy `v2:<provider>:<token>`
//! form of the older services is parsed too, so it can be upgraded, and so
//! is the App Engine service's `keyid:password`, so it can be migrated.

mod appengine;
mod claims;
mod decrypt;
mod error;
mod jwe;
mod key;
pub mod keydir;
mod keyring;
pub mod keysource;
mod keystats;
mod v2;

pub use appengine::{AppEngineAuthId, DerivedLogin};
pub use claims::{
    CLIENT_CLAIM, Claims, GENERATION_CLAIM, LOGIN_SECRET_CLAIM, generation_of, set_generation,
};
pub use error::AuthIdError;
pub use jwe::KeyAlg;
pub use key::ServerKey;
pub use keyring::{Keyring, KeyringHandle, Opened, sealing_kid};
pub use keystats::{KeyCounts, KeyEvent, KeyStats};
pub use v2::V2AuthId;

/// The prefix of every AuthID this broker issues.
pub const V3_PREFIX: &str = "v3:";
/// The longest AuthID accepted. A real one is about 600 characters; the cap
/// keeps hostile input from costing more than a quick length check.
pub const MAX_AUTHID_LEN: usize = 16 * 1024;

/// An AuthID as received, classified by form but not yet opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthIdText<'a> {
    /// The compact JWE after `v3:`.
    V3(&'a str),
    V2(V2AuthId<'a>),
    /// `keyid:password` of the old App Engine service.
    AppEngine(AppEngineAuthId<'a>),
}

/// Classifies an AuthID by its prefix after the checks every form shares:
/// not empty, not over-long, printable ASCII only.
pub fn parse(text: &str) -> Result<AuthIdText<'_>, AuthIdError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AuthIdError::Empty);
    }
    if text.len() > MAX_AUTHID_LEN {
        return Err(AuthIdError::TooLong);
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthIdError::BadCharacters);
    }
    if let Some(jwe) = text.strip_prefix(V3_PREFIX) {
        return Ok(AuthIdText::V3(jwe));
    }
    if let Some(rest) = text.strip_prefix(v2::V2_PREFIX) {
        return V2AuthId::parse(rest).map(AuthIdText::V2);
    }
    if appengine::looks_like(text) {
        return AppEngineAuthId::parse(text).map(AuthIdText::AppEngine);
    }
    Err(AuthIdError::UnknownFormat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_prefix() {
        assert_eq!(parse("v3:a.b.c.d.e"), Ok(AuthIdText::V3("a.b.c.d.e")));
        assert!(matches!(
            parse("v2:googledrive:1//abc"),
            Ok(AuthIdText::V2(_))
        ));
        assert_eq!(parse(""), Err(AuthIdError::Empty));
        assert_eq!(parse("   "), Err(AuthIdError::Empty));
        assert_eq!(parse("v1:abc"), Err(AuthIdError::UnknownFormat));
        assert_eq!(parse("xyz:ghij"), Err(AuthIdError::UnknownFormat));
        assert!(matches!(
            parse(" 0f1e2d3c4b5a69788796a5b4c3d2e1f0:aB3-x9Q.k2_Lm!p4R7sT1\n"),
            Ok(AuthIdText::AppEngine(_))
        ));
        assert!(matches!(
            parse("abcdef:ghij"),
            Err(AuthIdError::Malformed(_))
        ));
        assert_eq!(parse("v3:ab\u{e9}"), Err(AuthIdError::BadCharacters));
        assert_eq!(parse("v3:a b"), Err(AuthIdError::BadCharacters));
        assert_eq!(parse("v3:a\0b"), Err(AuthIdError::BadCharacters));
        let long = format!("v3:{}", "a".repeat(MAX_AUTHID_LEN));
        assert_eq!(parse(&long), Err(AuthIdError::TooLong));
    }
}
