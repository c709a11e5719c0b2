//! Jottacloud's personal login token: base64url JSON naming the user, the
//! identity server's discovery document and a one-time secret that the
//! `password` grant accepts. The token is a credential: it is never logged,
//! echoed or kept.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use crate::secret::Sensitive;

/// Longest login token accepted; real ones are around 400 characters.
pub const MAX_LOGIN_TOKEN_LEN: usize = 8 * 1024;

/// A decoded login token.
#[derive(Deserialize)]
pub struct LoginToken {
    pub username: String,
    #[serde(default)]
    pub realm: String,
    pub well_known_link: String,
    pub auth_token: Sensitive,
}

impl std::fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginToken")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);

/// Decodes a pasted login token (base64url or standard base64, padded or
/// not). The error text never quotes the input.
pub fn parse(text: &str) -> Result<LoginToken, &'static str> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if text.is_empty() {
        return Err("Paste the personal login token");
    }
    if text.len() > MAX_LOGIN_TOKEN_LEN {
        return Err("The login token is too long");
    }
    // The decoders' own errors are dropped on purpose: they quote bytes
    // and fragments of the token, which is a password.
    let bytes = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT)
        .decode(&text)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT).decode(&text))
        .map_err(|_| "The login token is not valid: copy it again from the provider's page")?;
    let token: LoginToken = serde_json::from_slice(&bytes)
        .map_err(|_| "The login token does not have the expected content: copy it again")?;
    if token.username.is_empty() || token.auth_token.is_empty() {
        return Err("The login token is incomplete: copy it again");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};

    #[test]
    fn decodes_padded_and_unpadded() {
        let json = r#"{"username":"u","realm":"jottacloud","well_known_link":"https://id.jottacloud.com/x","auth_token":"secret-at"}"#;
        for text in [
            URL_SAFE_NO_PAD.encode(json),
            URL_SAFE.encode(json),
            STANDARD.encode(json),
        ] {
            let t = parse(&format!(" {text}\n")).unwrap();
            assert_eq!(t.username, "u");
            assert_eq!(t.auth_token.expose(), "secret-at");
            assert!(!format!("{t:?}").contains("secret-at"));
        }
    }

    #[test]
    fn refuses_an_empty_paste_with_its_own_message() {
        for empty in ["", " \n\t"] {
            assert_eq!(parse(empty).unwrap_err(), "Paste the personal login token");
        }
    }

    #[test]
    fn refuses_garbage_without_quoting_it() {
        let incomplete = URL_SAFE_NO_PAD.encode(r#"{"username":"u","auth_token":"secret-x"}"#);
        for bad in [
            "%%%%",
            &URL_SAFE_NO_PAD.encode("not json"),
            &URL_SAFE_NO_PAD.encode(r#"{"username":"u"}"#),
            &incomplete,
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains(bad), "{e}");
            assert!(!e.contains("secret-x") && !e.contains("not json"), "{e}");
        }
    }
}
