//! The `v2:<provider>:<refresh token>` AuthID of the older services, accepted so that users
//! of the older services can switch by changing only the URL.

use super::AuthIdError;
use crate::provider::is_provider_id;

pub(super) const V2_PREFIX: &str = "v2:";

/// A parsed `v2:` AuthID. The token is borrowed from the request and never
/// printed by `Debug`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct V2AuthId<'a> {
    pub provider: &'a str,
    pub refresh_token: &'a str,
}

impl std::fmt::Debug for V2AuthId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2AuthId")
            .field("provider", &self.provider)
            .field("refresh_token", &"[redacted]")
            .finish()
    }
}

impl<'a> V2AuthId<'a> {
    /// Parses what follows `v2:`.
    pub(super) fn parse(rest: &'a str) -> Result<Self, AuthIdError> {
        let (provider, refresh_token) = rest.split_once(':').ok_or(AuthIdError::Malformed(
            "a v2 AuthID has the form v2:<provider>:<token>",
        ))?;
        if !is_provider_id(provider) {
            return Err(AuthIdError::Malformed(
                "the provider part of the v2 AuthID is invalid",
            ));
        }
        if refresh_token.is_empty() {
            return Err(AuthIdError::Malformed("the v2 AuthID has no token"));
        }
        Ok(Self {
            provider,
            refresh_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_provider_and_token() {
        let a = V2AuthId::parse("box.com:abc:def").unwrap();
        assert_eq!(a.provider, "box.com");
        assert_eq!(a.refresh_token, "abc:def");
        assert!(!format!("{a:?}").contains("abc"));
    }

    #[test]
    fn refuses_bad_parts() {
        assert!(V2AuthId::parse("nocolon").is_err());
        assert!(V2AuthId::parse(":token").is_err());
        assert!(V2AuthId::parse("Drive:token").is_err());
        assert!(V2AuthId::parse("drive:").is_err());
    }
}
