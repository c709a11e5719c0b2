//! Structural checks on a compact JWE before any cryptography: five
//! base64url parts of plausible sizes and a protected header naming only
//! the algorithms we accept. Everything refused here costs no key agreement.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::AuthIdError;

/// The only content encryption this broker produces or accepts.
pub const CONTENT_ENCRYPTION: &str = "A256GCM";

/// Key-management algorithm, pinned per key by the JWK's `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    EcdhEsA256kw,
    EcdhEs,
}

impl KeyAlg {
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdhEsA256kw => "ECDH-ES+A256KW",
            Self::EcdhEs => "ECDH-ES",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ECDH-ES+A256KW" => Some(Self::EcdhEsA256kw),
            "ECDH-ES" => Some(Self::EcdhEs),
            _ => None,
        }
    }
}

/// Header members a standard JOSE library may write for ECDH-ES. Anything
/// else (`zip`, `crit`, `jku`, `jwk`, `x5u`, ...) is refused.
const ALLOWED_HEADER_MEMBERS: &[&str] = &["alg", "enc", "kid", "epk", "typ", "cty", "apu", "apv"];
const MAX_HEADER_LEN: usize = 1024;

/// What the protected header says, once checked.
#[derive(Debug)]
pub(super) struct Header {
    pub alg: KeyAlg,
    pub kid: String,
    /// The whole protected header, for the key agreement's parameters.
    pub members: Map<String, Value>,
}

pub(super) fn inspect(compact: &str) -> Result<Header, AuthIdError> {
    let parts: Vec<&str> = compact.split('.').collect();
    let [header, encrypted_key, iv, ciphertext, tag] = parts[..] else {
        return Err(AuthIdError::Malformed(
            "expected five parts separated by dots",
        ));
    };
    for part in [header, encrypted_key, iv, ciphertext, tag] {
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthIdError::Malformed("a part is not base64url"));
        }
    }
    // A256GCM: 96-bit IV, 128-bit tag.
    if iv.len() != 16 || tag.len() != 22 {
        return Err(AuthIdError::Malformed("the IV or tag has the wrong length"));
    }
    if ciphertext.is_empty() {
        return Err(AuthIdError::Malformed("the ciphertext is empty"));
    }
    if header.is_empty() || header.len() > MAX_HEADER_LEN {
        return Err(AuthIdError::Malformed("the header is missing or too long"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthIdError::Malformed("the header is not base64url"))?;
    let map: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| AuthIdError::Malformed("the header is not a JSON object"))?;
    if map
        .keys()
        .any(|k| !ALLOWED_HEADER_MEMBERS.contains(&k.as_str()))
    {
        return Err(AuthIdError::Algorithm);
    }
    let text = |name: &str| match map.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(AuthIdError::Malformed("the header lacks alg, enc or kid")),
    };
    let alg = text("alg")?;
    let enc = text("enc")?;
    let kid = text("kid")?;
    if enc != CONTENT_ENCRYPTION {
        return Err(AuthIdError::Algorithm);
    }
    if !matches!(map.get("epk"), Some(Value::Object(_))) {
        return Err(AuthIdError::Algorithm);
    }
    let alg = KeyAlg::from_name(&alg).ok_or(AuthIdError::Algorithm)?;
    // ECDH-ES has no encrypted key; ECDH-ES+A256KW wraps a 256-bit key (40 bytes).
    let expected_key_len = match alg {
        KeyAlg::EcdhEs => 0,
        KeyAlg::EcdhEsA256kw => 54,
    };
    if encrypted_key.len() != expected_key_len {
        return Err(AuthIdError::Malformed(
            "the encrypted key has the wrong length",
        ));
    }
    Ok(Header {
        alg,
        kid,
        members: map,
    })
}
