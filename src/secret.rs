//! Secret-carrying types: they never print their content in `Debug` or
//! `Display`, and their memory is zeroized on drop. Also how secret
//! settings (`KEYS`, `SECRETS`, `CONFIGFILE`) are read when given inline,
//! as `base64:...`, or in a file.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A token, secret or credential. `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct Sensitive(SecretString);

impl Sensitive {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The plain text, for the few places that must send or seal it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// A short, non-reversible fingerprint that may appear in logs.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.expose().as_bytes())
    }
}

/// Lets a secret be read straight from the command line or environment.
impl From<String> for Sensitive {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for Sensitive {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Eq for Sensitive {}

impl Serialize for Sensitive {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Sensitive {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Sensitive::new)
    }
}

/// Eight hex digits of a SHA-256: enough to correlate log lines, far too few
/// to recover or confirm a secret by brute force on a high-entropy input.
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..4])
}

/// A setting given inline: `base64:<data>` is decoded (standard or
/// URL-safe alphabet), anything else is taken as it is.
pub fn decode_inline(value: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    match value.trim().strip_prefix("base64:") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim()))
            .map(Zeroizing::new)
            .map_err(|_| "the base64: value is not valid base64".to_string()),
        None => Ok(Zeroizing::new(value.as_bytes().to_vec())),
    }
}

/// A setting given inline or by file: `base64:...`, inline JSON (starts
/// with `{` or `[`), or a file path.
pub fn read_file_or_inline(spec: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let spec = spec.trim();
    if spec.starts_with("base64:") || spec.starts_with('{') || spec.starts_with('[') {
        return decode_inline(spec);
    }
    std::fs::read(spec)
        .map(Zeroizing::new)
        .map_err(|e| format!("cannot read {spec}: {e}"))
}

/// 128 random bits, base64url (22 characters): the ids and nonces that
/// must not be guessed (login ids, login-state nonces, page nonces).
pub fn random_id() -> String {
    random_base64url::<16>()
}

/// `N` random bytes, base64url without padding.
pub fn random_base64url<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Sensitive::new("very-secret-token");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert!(!format!("{:?}", Some(&s)).contains("very-secret"));
    }

    #[test]
    fn serde_round_trip_keeps_the_value() {
        let s = Sensitive::new("abc");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"abc\"");
        let back: Sensitive = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn settings_are_read_inline_from_base64_or_from_a_file() {
        assert_eq!(
            &*read_file_or_inline(r#" {"a":1} "#).unwrap(),
            br#"{"a":1}"#
        );
        assert_eq!(&*read_file_or_inline("base64:e30=").unwrap(), b"{}");
        assert_eq!(&*decode_inline("base64:e30").unwrap(), b"{}");
        assert_eq!(&*decode_inline("raw").unwrap(), b"raw");
        assert!(decode_inline("base64:!!").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, "[]").unwrap();
        assert_eq!(
            &*read_file_or_inline(path.to_str().unwrap()).unwrap(),
            b"[]"
        );
        assert!(read_file_or_inline("/nonexistent/s.json").is_err());
    }

    #[test]
    fn random_ids_differ_and_have_the_documented_length() {
        assert_ne!(random_id(), random_id());
        assert_eq!(random_id().len(), 22);
        assert_eq!(random_base64url::<24>().len(), 32);
    }

    #[test]
    fn fingerprint_is_short_and_stable() {
        assert_eq!(fingerprint(b"x"), fingerprint(b"x"));
        assert_ne!(fingerprint(b"x"), fingerprint(b"y"));
        assert_eq!(fingerprint(b"x").len(), 8);
    }
}
