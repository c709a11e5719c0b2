//! The payload sealed inside a v3 AuthID.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AuthIdError;
use super::legacy::is_service_id;
use crate::secret::{Sensitive, fingerprint};

/// What an AuthID says: the provider, the refresh token, when it was issued
/// and which login it came from. Unknown claims are kept, so a newer
/// instance's extra claims survive a re-seal by an older one.
#[derive(Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Provider id, e.g. `googledrive`.
    pub svc: String,
    /// The provider's refresh token.
    pub rt: Sensitive,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Random id of the login this AuthID descends from; stays the same
    /// across re-seals and rotations.
    pub jti: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Claims {
    pub fn new(svc: impl Into<String>, rt: Sensitive, iat: i64) -> Self {
        Self {
            svc: svc.into(),
            rt,
            iat,
            jti: new_login_id(),
            extra: Map::new(),
        }
    }

    /// A short fingerprint of the login id, safe for logs.
    pub fn login_fingerprint(&self) -> String {
        fingerprint(self.jti.as_bytes())
    }

    pub(super) fn from_payload(payload: &[u8]) -> Result<Self, AuthIdError> {
        let claims: Claims = serde_json::from_slice(payload)
            .map_err(|_| AuthIdError::Claims("expected svc, rt, iat and jti"))?;
        claims.validate()?;
        Ok(claims)
    }

    fn validate(&self) -> Result<(), AuthIdError> {
        if !is_service_id(&self.svc) {
            return Err(AuthIdError::Claims("the provider id is invalid"));
        }
        if self.rt.is_empty() {
            return Err(AuthIdError::Claims("the refresh token is empty"));
        }
        if self.jti.is_empty() || self.jti.len() > 128 {
            return Err(AuthIdError::Claims("the login id is invalid"));
        }
        if self.iat < 0 {
            return Err(AuthIdError::Claims("the issue time is invalid"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("svc", &self.svc)
            .field("iat", &self.iat)
            .field("login", &self.login_fingerprint())
            .finish_non_exhaustive()
    }
}

/// 128 random bits, base64url: the id of one login.
pub fn new_login_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_keeps_unknown_claims() {
        let json = br#"{"svc":"dropbox","rt":"r","iat":5,"jti":"j","x":1}"#;
        let claims = Claims::from_payload(json).unwrap();
        assert_eq!(claims.extra.get("x"), Some(&Value::from(1)));
        let back = serde_json::to_value(&claims).unwrap();
        assert_eq!(back["x"], 1);
        assert_eq!(back["rt"], "r");
    }

    #[test]
    fn refuses_missing_or_invalid_fields() {
        for bad in [
            &br#"{"rt":"r","iat":5,"jti":"j"}"#[..],
            br#"{"svc":"dropbox","iat":5,"jti":"j"}"#,
            br#"{"svc":"dropbox","rt":"","iat":5,"jti":"j"}"#,
            br#"{"svc":"Drop Box","rt":"r","iat":5,"jti":"j"}"#,
            br#"{"svc":"dropbox","rt":"r","iat":"5","jti":"j"}"#,
            br#"{"svc":"dropbox","rt":"r","iat":-1,"jti":"j"}"#,
            br#"{"svc":"dropbox","rt":"r","iat":5,"jti":""}"#,
            br#"[]"#,
            b"not json",
        ] {
            assert!(
                Claims::from_payload(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Claims::new("dropbox", Sensitive::new("secret-rt"), 1);
        assert!(!format!("{c:?}").contains("secret-rt"));
    }

    #[test]
    fn login_ids_are_unique() {
        assert_ne!(new_login_id(), new_login_id());
        assert_eq!(new_login_id().len(), 22);
    }
}
