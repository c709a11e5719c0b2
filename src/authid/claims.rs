//! The payload sealed inside a v3 AuthID.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AuthIdError;
use crate::provider::is_provider_id;
use crate::secret::{Sensitive, fingerprint, random_id};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The claim holding the per-login secret.
pub const LOGIN_SECRET_CLAIM: &str = "lsk";
/// The claim naming the client (registration) the grant was issued to;
/// absent means the provider entry's own client.
pub const CLIENT_CLAIM: &str = "cid";

/// The claim that says which recorded rotation an AuthID's refresh token
/// came from. An AuthID without it holds the token of the login itself
/// (generation 0). It lets the broker tell an AuthID newer than the store
/// (a rotation the store missed) from an older one.
pub const GENERATION_CLAIM: &str = "rgen";

/// The rotation generation of the refresh token in these claims.
pub fn generation_of(claims: &Claims) -> u64 {
    claims
        .extra
        .get(GENERATION_CLAIM)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Records the rotation generation of the refresh token in these claims.
pub fn set_generation(claims: &mut Claims, generation: u64) {
    claims
        .extra
        .insert(GENERATION_CLAIM.into(), Value::from(generation));
}

/// What an AuthID says: the provider, the refresh token, when it was issued
/// and which login it came from. Unknown claims are kept, so a newer
/// instance's extra claims survive a re-seal by an older one.
#[derive(Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Provider id, e.g. `googledrive`; `svc` in the sealed payload.
    #[serde(rename = "svc")]
    pub provider: String,
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
    /// Claims of a new login: a fresh login id and login secret.
    pub fn new(provider: impl Into<String>, rt: Sensitive, iat: i64) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::thread_rng().fill_bytes(secret.as_mut());
        let mut extra = Map::new();
        extra.insert(
            LOGIN_SECRET_CLAIM.into(),
            Value::String(URL_SAFE_NO_PAD.encode(secret.as_ref())),
        );
        Self {
            provider: provider.into(),
            rt,
            iat,
            jti: random_id(),
            extra,
        }
    }

    /// Claims for a `v2:` AuthID. The login id is derived from the
    /// token, so every request with the same `v2:` AuthID is the same
    /// login (one cache entry, one rotation-store entry).
    pub fn from_v2(provider: &str, rt: Sensitive, iat: i64) -> Self {
        let digest = Sha256::new()
            .chain_update(b"oauth-broker legacy login id\0")
            .chain_update(provider.as_bytes())
            .chain_update(b"\0")
            .chain_update(rt.expose().as_bytes())
            .finalize();
        Self {
            provider: provider.to_string(),
            rt,
            iat,
            jti: URL_SAFE_NO_PAD.encode(&digest[..16]),
            extra: Map::new(),
        }
    }

    /// The per-login secret. It exists only inside the AuthID: a fresh
    /// random one for logins made here; for AuthIDs minted without one
    /// (legacy, other systems) it is derived from the refresh token they
    /// carry, and [`Claims::pin_login_secret`] carries it forward.
    pub fn login_secret(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        if let Some(bytes) = self
            .extra
            .get(LOGIN_SECRET_CLAIM)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .filter(|b| b.len() == 32)
        {
            out.copy_from_slice(&bytes);
            return out;
        }
        let mut h = Sha256::new();
        for part in [
            b"oauth-broker derived login secret".as_slice(),
            self.provider.as_bytes(),
            self.jti.as_bytes(),
            self.rt.expose().as_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        out.copy_from_slice(&h.finalize());
        out
    }

    /// Writes the login secret into the claims, so AuthIDs sealed from
    /// them keep the same secret after the refresh token changes.
    pub fn pin_login_secret(&mut self) {
        let secret = self.login_secret();
        self.extra.insert(
            LOGIN_SECRET_CLAIM.into(),
            Value::String(URL_SAFE_NO_PAD.encode(secret.as_ref())),
        );
    }

    /// The client id the grant was issued to (`cid`), if the AuthID names
    /// one.
    pub fn client_id(&self) -> Option<&str> {
        self.extra.get(CLIENT_CLAIM).and_then(Value::as_str)
    }

    /// Records the client the grant was issued to.
    pub fn set_client_id(&mut self, client_id: &str) {
        self.extra
            .insert(CLIENT_CLAIM.into(), Value::String(client_id.to_string()));
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
        if !is_provider_id(&self.provider) {
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
        match self.extra.get(CLIENT_CLAIM) {
            None => {}
            Some(Value::String(c)) if !c.is_empty() && c.len() <= 512 => {}
            Some(_) => return Err(AuthIdError::Claims("the client id is invalid")),
        }
        Ok(())
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("provider", &self.provider)
            .field("iat", &self.iat)
            .field("login", &self.login_fingerprint())
            .finish_non_exhaustive()
    }
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
    fn the_client_claim_is_optional_and_checked() {
        let json = br#"{"svc":"dropbox","rt":"r","iat":5,"jti":"j"}"#;
        assert_eq!(Claims::from_payload(json).unwrap().client_id(), None);
        let json = br#"{"svc":"dropbox","rt":"r","iat":5,"jti":"j","cid":"old-client"}"#;
        assert_eq!(
            Claims::from_payload(json).unwrap().client_id(),
            Some("old-client")
        );
        for bad in [
            &br#"{"svc":"dropbox","rt":"r","iat":5,"jti":"j","cid":""}"#[..],
            br#"{"svc":"dropbox","rt":"r","iat":5,"jti":"j","cid":5}"#,
        ] {
            assert!(Claims::from_payload(bad).is_err());
        }
        let mut c = Claims::new("dropbox", Sensitive::new("r"), 1);
        c.set_client_id("new-client");
        assert_eq!(serde_json::to_value(&c).unwrap()["cid"], "new-client");
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Claims::new("dropbox", Sensitive::new("secret-rt"), 1);
        assert!(!format!("{c:?}").contains("secret-rt"));
    }

    #[test]
    fn login_secret_is_random_or_derived_and_survives_pinning() {
        let a = Claims::new("box.com", Sensitive::new("rt"), 1);
        let b = Claims::new("box.com", Sensitive::new("rt"), 1);
        assert_ne!(*a.login_secret(), *b.login_secret());
        let mut legacy = Claims::from_v2("box.com", Sensitive::new("rt0"), 1);
        let again = Claims::from_v2("box.com", Sensitive::new("rt0"), 2);
        assert_eq!(legacy.jti, again.jti);
        let derived = legacy.login_secret();
        assert_eq!(*derived, *again.login_secret());
        legacy.pin_login_secret();
        legacy.rt = Sensitive::new("rt1");
        assert_eq!(*legacy.login_secret(), *derived, "pinned across rotation");
        assert!(!format!("{legacy:?}").contains("lsk"));
    }
}
