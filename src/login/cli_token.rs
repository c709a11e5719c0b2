//! The Jottacloud login-token flow: the user pastes a personal login token
//! (base64url JSON naming the user, the identity server's discovery
//! document and a one-time secret), which the `password` grant accepts at
//! the token endpoint that document names. The token is a credential: it
//! is never logged, echoed or kept.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use super::{FetchToken, Finished, LoginError, LoginService};
use crate::provider::client::FormField;
use crate::provider::{Provider, UpstreamError, hosts};
use crate::secret::{Sensitive, fingerprint, random_id};

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

/// Scope of the Jottacloud password grant when the provider names none.
const CLI_TOKEN_SCOPE: &str = "openid offline_access";

impl LoginService {
    /// `/cli-token-login`: Jottacloud's personal login token, exchanged with
    /// the `password` grant at the token endpoint its identity server names.
    pub async fn cli_token_login(
        &self,
        name: &str,
        token_text: &str,
        fetch_token: Option<FetchToken>,
        client: Option<IpAddr>,
    ) -> Result<Finished, LoginError> {
        self.count_attempt(client)
            .map_err(|retry_after| LoginError::TooMany { retry_after })?;
        let provider = Arc::clone(self.provider(name)?);
        if !provider.cli_token {
            return Err(LoginError::BadInput(format!(
                "{} does not log in with a token; use its login link",
                provider.name
            )));
        }
        let login = fingerprint(random_id().as_bytes());
        let result = self.cli_token_exchange(&provider, token_text).await;
        self.conclude(result.map(|a| (provider, a)), fetch_token, &login)
            .await
    }

    async fn cli_token_exchange(
        &self,
        provider: &Provider,
        token_text: &str,
    ) -> Result<Sensitive, LoginError> {
        let token = parse(token_text).map_err(|e| LoginError::BadInput(e.into()))?;
        let well_known = hosts::check_url(&provider.allowed_hosts, &token.well_known_link).ok_or(
            LoginError::HostNotAllowed("identity server named by the login token"),
        )?;
        let upstream = |error| LoginError::Upstream {
            provider: provider.id.clone(),
            error,
        };
        // One admission covers the discovery document and the token
        // request: one login, one unit of the provider's budget.
        let admission = self.admit_login(provider).await?;
        let raw = self
            .deps
            .client
            .get_json(&well_known)
            .await
            .map_err(|e| upstream(UpstreamError::from(e)))?;
        if !(200..300).contains(&raw.status) {
            return Err(upstream(UpstreamError::Unavailable {
                detail: "the identity server's discovery document is unavailable",
            }));
        }
        let endpoint = serde_json::from_slice::<Value>(&raw.body)
            .ok()
            .and_then(|doc| doc.get("token_endpoint")?.as_str().map(str::to_string))
            .ok_or_else(|| {
                upstream(UpstreamError::Unavailable {
                    detail: "the discovery document names no token endpoint",
                })
            })?;
        let token_url = hosts::check_url(&provider.allowed_hosts, &endpoint).ok_or(
            LoginError::HostNotAllowed("token endpoint named by the identity server"),
        )?;
        let scope = if provider.scope.is_empty() {
            CLI_TOKEN_SCOPE
        } else {
            provider.scope.as_str()
        };
        let mut form: Vec<FormField> = vec![("grant_type".into(), Sensitive::new("password"))];
        provider.push_client_auth(&mut form);
        form.push(("username".into(), Sensitive::new(token.username.as_str())));
        form.push(("password".into(), token.auth_token.clone()));
        form.push(("scope".into(), Sensitive::new(scope)));
        provider.push_additional(&mut form);
        let grant = self
            .token_request(admission, provider, &token_url, &form)
            .await?;
        self.authid_from(provider, grant)
    }
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
