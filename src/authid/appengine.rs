//! The AuthID of the old App Engine service, `keyid:password`: a key into
//! that service's database and the password its token blob is encrypted
//! with. The broker cannot open it; it migrates the grant behind it (see
//! `crate::migrate`) and from then on treats the text as one login whose id
//! and secret are derived from it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use serde_json::{Map, Value};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{AuthIdError, Claims, LOGIN_SECRET_CLAIM};
use crate::secret::{Sensitive, fingerprint};

/// The old service printed its key ids with `%030x` of a random number
/// below 16^32: 30 to 32 lowercase hex digits.
const KEY_ID_LEN: std::ops::RangeInclusive<usize> = 30..=32;
/// Its password generator always made 21 characters.
const PASSWORD_LEN: usize = 21;
/// The password alphabet of the old service's generator.
fn is_password_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!-_.".contains(&b)
}

const FORMAT_HINT: &str =
    "an AuthID of the old service is a 30-32 digit hex key id, a colon and a 21-character password";

/// A parsed App Engine AuthID, borrowed from the request. `Debug` shows
/// only a fingerprint of the key id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AppEngineAuthId<'a> {
    key_id: &'a str,
    text: &'a str,
}

impl std::fmt::Debug for AppEngineAuthId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppEngineAuthId")
            .field("key", &self.key_fingerprint())
            .finish_non_exhaustive()
    }
}

/// True when `text` has the old service's shape, `<hex>:<rest>`, so that
/// a damaged one is reported as damaged rather than as an unknown format.
pub(super) fn looks_like(text: &str) -> bool {
    text.split_once(':')
        .is_some_and(|(key, _)| !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl<'a> AppEngineAuthId<'a> {
    /// Parses the whole AuthID text.
    pub(super) fn parse(text: &'a str) -> Result<Self, AuthIdError> {
        let (key_id, password) = text
            .split_once(':')
            .ok_or(AuthIdError::Malformed(FORMAT_HINT))?;
        let key_ok = KEY_ID_LEN.contains(&key_id.len())
            && key_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let password_ok = password.len() == PASSWORD_LEN && password.bytes().all(is_password_char);
        if !key_ok || !password_ok {
            return Err(AuthIdError::Malformed(FORMAT_HINT));
        }
        Ok(Self { key_id, text })
    }

    /// The whole `keyid:password`, as the old service's API takes it.
    pub fn expose(&self) -> &'a str {
        self.text
    }

    /// Eight hex digits of a hash of the key id: the most a log may show.
    pub fn key_fingerprint(&self) -> String {
        fingerprint(self.key_id.as_bytes())
    }

    /// The login this AuthID stands for. Derived from the whole text, so the
    /// old AuthID and every `v3:` AuthID sealed from it share the login id
    /// and secret, and with them the cache and store entries.
    pub fn login(&self) -> DerivedLogin {
        let hk = Hkdf::<Sha256>::new(Some(b"oauth-broker app engine login"), self.text.as_bytes());
        let mut id = [0u8; 16];
        let mut secret = Zeroizing::new([0u8; 32]);
        if hk.expand(b"login id", &mut id).is_err()
            || hk.expand(b"login secret", secret.as_mut()).is_err()
        {
            unreachable!("HKDF-SHA256 yields 16 and 32 bytes");
        }
        DerivedLogin {
            id: URL_SAFE_NO_PAD.encode(id),
            secret,
        }
    }
}

/// The login id and secret of a migrated login.
pub struct DerivedLogin {
    /// The `jti` claim.
    pub id: String,
    /// The `lsk` claim.
    pub secret: Zeroizing<[u8; 32]>,
}

impl DerivedLogin {
    /// The claims of the migrated grant: `jti` and the login secret are
    /// this login's, so the sealed AuthID is the same login as the old one.
    pub fn claims(&self, svc: &str, rt: Sensitive, iat: i64) -> Claims {
        let mut extra = Map::new();
        extra.insert(
            LOGIN_SECRET_CLAIM.into(),
            Value::String(URL_SAFE_NO_PAD.encode(self.secret.as_ref())),
        );
        Claims {
            provider: svc.to_string(),
            rt,
            iat,
            jti: self.id.clone(),
            extra,
        }
    }
}

impl std::fmt::Debug for DerivedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedLogin")
            .field("login", &fingerprint(self.id.as_bytes()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0:aB3-x9Q.k2_Lm!p4R7sT1";

    #[test]
    fn parses_what_the_old_service_issued() {
        let a = AppEngineAuthId::parse(SAMPLE).unwrap();
        assert_eq!(a.expose(), SAMPLE);
        // 30 digits: a random number with leading zero bits, zero-padded.
        let short = format!("{}:{}", "a".repeat(30), "Z9.z9-z9_z9!z9Z9z9Z9z");
        assert!(AppEngineAuthId::parse(&short).is_ok());
        assert!(looks_like(SAMPLE));
    }

    #[test]
    fn refuses_other_shapes() {
        let password = "aB3-x9Q.k2_Lm!p4R7sT1";
        for bad in [
            format!("{}:{password}", "a".repeat(29)),
            format!("{}:{password}", "a".repeat(33)),
            format!("{}:{password}", "A".repeat(32)),
            format!("{}:{password}x", "a".repeat(32)),
            format!("{}:{}", "a".repeat(32), &password[1..]),
            format!("{}:aB3-x9Q.k2_Lm!p4R7sT+", "a".repeat(32)),
            format!("{}:aB3-x9Q.k2_Lm:p4R7sT1", "a".repeat(32)),
            "a".repeat(32),
        ] {
            assert_eq!(
                AppEngineAuthId::parse(&bad),
                Err(AuthIdError::Malformed(FORMAT_HINT)),
                "{bad}"
            );
        }
        assert!(!looks_like("v3:abc"));
        assert!(!looks_like(":abc"));
        assert!(!looks_like("nocolon"));
    }

    #[test]
    fn debug_shows_a_fingerprint_only() {
        let a = AppEngineAuthId::parse(SAMPLE).unwrap();
        let debug = format!("{a:?}");
        assert!(debug.contains(&a.key_fingerprint()));
        assert!(!debug.contains("0f1e2d3c") && !debug.contains("aB3-x9Q"));
        let login = a.login();
        assert!(!format!("{login:?}").contains(&login.id));
    }

    #[test]
    fn the_login_is_derived_from_the_whole_text() {
        let a = AppEngineAuthId::parse(SAMPLE).unwrap().login();
        let again = AppEngineAuthId::parse(SAMPLE).unwrap().login();
        assert_eq!(a.id, again.id);
        assert_eq!(*a.secret, *again.secret);
        let other_password = SAMPLE.replace("aB3", "aB4");
        let b = AppEngineAuthId::parse(&other_password).unwrap().login();
        assert_ne!(a.id, b.id, "the password is part of the login");
        assert_ne!(*a.secret, *b.secret);
        assert_eq!(a.id.len(), 22);
    }

    #[test]
    fn claims_carry_the_derived_login_across_rotations() {
        let login = AppEngineAuthId::parse(SAMPLE).unwrap().login();
        let mut claims = login.claims("box.com", Sensitive::new("rt0"), 5);
        assert_eq!(claims.jti, login.id);
        assert_eq!(*claims.login_secret(), *login.secret);
        claims.rt = Sensitive::new("rt1");
        claims.pin_login_secret();
        assert_eq!(*claims.login_secret(), *login.secret);
    }
}
