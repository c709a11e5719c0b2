//! The login state: everything `/logged-in` needs to finish a login, sealed
//! with XChaCha20-Poly1305 into the OAuth `state` parameter so the callback
//! can land on any instance holding the keys.
//!
//! Text form: `ls1.` + base64url(`kid length` ‖ `kid` ‖ 24-byte nonce ‖
//! ciphertext). The key is derived from the server key named by `kid`, so a
//! login started before a key rotation finishes while that key is loaded.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{self, Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::authid::Keyring;
use crate::cause::Cause;
use crate::secret::Sensitive;

/// Version prefix of sealed login states.
pub const STATE_PREFIX: &str = "ls1.";
/// Purpose label of the derived sealing key.
pub const KEY_PURPOSE: &str = "login-state v1";
/// How long a login may take from `/login` to `/logged-in`.
pub const STATE_LIFETIME: i64 = 600;
/// Longest state text accepted; a real one is under 600 characters.
pub const MAX_STATE_LEN: usize = 2048;

const NONCE_LEN: usize = 24;

/// What travels inside the `state` parameter.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoginState {
    /// Provider id.
    #[serde(rename = "p")]
    pub provider: String,
    /// Fetch token of a polling client, if any.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub fetch_token: Option<String>,
    /// PKCE code verifier, for providers that take PKCE.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<Sensitive>,
    /// Random id of this login; the browser's cookie carries it too.
    #[serde(rename = "n")]
    pub nonce: String,
    /// Expiry, seconds since the epoch.
    #[serde(rename = "e")]
    pub expires_at: i64,
}

impl std::fmt::Debug for LoginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginState")
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why a state was refused. Texts are shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the login state is missing")]
    Missing,
    #[error("the login state is damaged or was altered")]
    Invalid,
    #[error("the login state was sealed with a key this server no longer has")]
    UnknownKey,
}

/// Seals a state with the keyring's primary key. A failure is the
/// server's (a key id too long for the format, the cipher), never the
/// user's: its cause is kept for the log.
pub fn seal(keyring: &Keyring, state: &LoginState) -> Result<String, Cause> {
    let key = keyring.primary();
    let kid = key.kid().as_bytes();
    let kid_len = u8::try_from(kid.len())
        .map_err(|e| Cause::new(format_args!("the key id does not fit a login state: {e}")))?;
    let cipher = XChaCha20Poly1305::new(key.derive_key(KEY_PURPOSE).as_ref().into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let plain = serde_json::to_vec(state).map_err(Cause::new)?;
    let mut header = Vec::with_capacity(1 + kid.len());
    header.push(kid_len);
    header.extend_from_slice(kid);
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad(&header),
            },
        )
        .map_err(|aead::Error| Cause::new("the cipher refused the login state"))?;
    let mut out = header;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(format!("{STATE_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
}

/// Opens a state with the key its header names. Expiry is the caller's
/// check (it holds the clock). Every way the text can be wrong is the same
/// [`StateError::Invalid`]: the text is the whole cause.
pub fn open(keyring: &Keyring, text: &str) -> Result<LoginState, StateError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(StateError::Missing);
    }
    if text.len() > MAX_STATE_LEN {
        return Err(StateError::Invalid);
    }
    let body = text.strip_prefix(STATE_PREFIX).ok_or(StateError::Invalid)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| StateError::Invalid)?;
    let kid_len = usize::from(*bytes.first().ok_or(StateError::Invalid)?);
    let header_len = 1 + kid_len;
    if bytes.len() < header_len + NONCE_LEN + 16 {
        return Err(StateError::Invalid);
    }
    let (header, rest) = bytes.split_at(header_len);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    let kid = std::str::from_utf8(&header[1..]).map_err(|_| StateError::Invalid)?;
    let key = keyring.get(kid).ok_or(StateError::UnknownKey)?;
    let cipher = XChaCha20Poly1305::new(key.derive_key(KEY_PURPOSE).as_ref().into());
    let plain = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad(header),
            },
        )
        .map_err(|_| StateError::Invalid)?;
    serde_json::from_slice(&plain).map_err(|_| StateError::Invalid)
}

/// The version prefix and key id are authenticated with the payload.
fn aad(header: &[u8]) -> Vec<u8> {
    let mut aad = STATE_PREFIX.as_bytes().to_vec();
    aad.extend_from_slice(header);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authid::ServerKey;
    use crate::secret::random_id;

    fn state() -> LoginState {
        LoginState {
            provider: "googledrive".into(),
            fetch_token: Some("fetch-token-123456".into()),
            verifier: Some(Sensitive::new("verifier")),
            nonce: random_id(),
            expires_at: 1_800_000_600,
        }
    }

    fn ring(kids: &[&str], primary: &str) -> Keyring {
        let keys: Vec<ServerKey> = kids
            .iter()
            .map(|k| ServerKey::generate(k, 1).unwrap().0)
            .collect();
        Keyring::new(keys, primary, Default::default()).unwrap()
    }

    #[test]
    fn round_trip_and_url_safe() {
        let keyring = Keyring::ephemeral().unwrap();
        let s = state();
        let text = seal(&keyring, &s).unwrap();
        assert!(text.starts_with(STATE_PREFIX));
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        );
        let back = open(&keyring, &text).unwrap();
        assert_eq!(back.provider, "googledrive");
        assert_eq!(back.nonce, s.nonce);
        assert_eq!(back.verifier.unwrap().expose(), "verifier");
        assert!(!text.contains("googledrive"));
    }

    #[test]
    fn any_flipped_character_is_refused() {
        let keyring = Keyring::ephemeral().unwrap();
        let text = seal(&keyring, &state()).unwrap();
        for i in STATE_PREFIX.len()..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != text {
                assert!(open(&keyring, &tampered).is_err(), "position {i}");
            }
        }
        assert_eq!(open(&keyring, "").err(), Some(StateError::Missing));
        assert_eq!(open(&keyring, "ls1.").err(), Some(StateError::Invalid));
        assert_eq!(open(&keyring, "xyz").err(), Some(StateError::Invalid));
    }

    #[test]
    fn survives_rotation_while_the_old_key_is_loaded() {
        let before = ring(&["k1", "k2"], "k1");
        let text = seal(&before, &state()).unwrap();
        let after = ring(&["k2", "k3"], "k3");
        assert_eq!(open(&after, &text).err(), Some(StateError::UnknownKey));
        // k1 is still loaded, k2 is primary now.
        let rotated =
            Keyring::new(before.keys().into_iter().cloned(), "k2", Default::default()).unwrap();
        assert!(open(&rotated, &text).is_ok());
    }
}
