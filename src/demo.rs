//! The built-in demo provider: a small OAuth 2.0 authorization server in
//! the same process, so a newcomer can click through a whole login,
//! refresh, rotation and revocation with no provider account. It behaves
//! like a single-use-rotation provider (Box): every refresh spends the
//! refresh token and returns a new one.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::secret::{Sensitive, random_base64url};

pub const PROVIDER_ID: &str = "demo";
pub const CLIENT_ID: &str = "demo-client";
/// Access tokens live ten minutes, so a newcomer sees a refresh happen.
pub const ACCESS_TOKEN_SECS: u64 = 600;
const CODE_SECS: i64 = 300;

struct Code {
    redirect_uri: String,
    challenge: Option<String>,
    expires_at: i64,
}

#[derive(Default)]
struct State {
    codes: HashMap<String, Code>,
    /// Refresh token → its family (one per login); spent tokens map to
    /// `None` so a replay can be told from an unknown token.
    refresh_tokens: HashMap<String, Option<String>>,
    access_tokens: HashMap<String, i64>,
    revoked_families: Vec<String>,
}

/// The demo authorization server's state.
pub struct DemoProvider {
    client_secret: Sensitive,
    redirect_uri: String,
    state: Mutex<State>,
}

/// An OAuth error: status and `error` code.
pub type DemoError = (u16, &'static str);

fn token(prefix: &str) -> String {
    format!("{prefix}{}", random_base64url::<24>())
}

impl DemoProvider {
    /// `redirect_uri` is the only one accepted: the broker's callback.
    pub fn new(redirect_uri: String) -> Self {
        Self {
            client_secret: Sensitive::new(token("demo-secret-")),
            redirect_uri,
            state: Mutex::new(State::default()),
        }
    }

    pub fn client_secret(&self) -> &Sensitive {
        &self.client_secret
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks an authorize request; `Ok` means the consent page may show.
    pub fn check_authorize(
        &self,
        client_id: &str,
        redirect_uri: &str,
        response_type: &str,
    ) -> Result<(), &'static str> {
        if client_id != CLIENT_ID {
            return Err("unknown client_id");
        }
        if redirect_uri != self.redirect_uri {
            return Err("redirect_uri is not registered for this client");
        }
        if response_type != "code" {
            return Err("response_type must be code");
        }
        Ok(())
    }

    /// The user approved: a one-time code bound to the redirect URI and the
    /// PKCE challenge.
    pub fn approve(&self, redirect_uri: &str, challenge: Option<String>, now: i64) -> String {
        let code = token("demo-code-");
        self.lock().codes.insert(
            code.clone(),
            Code {
                redirect_uri: redirect_uri.to_string(),
                challenge,
                expires_at: now + CODE_SECS,
            },
        );
        code
    }

    fn check_client(&self, form: &HashMap<String, String>) -> Result<(), DemoError> {
        let id = form.get("client_id").map(String::as_str);
        let secret = form.get("client_secret").map(String::as_str);
        if id == Some(CLIENT_ID) && secret == Some(self.client_secret.expose()) {
            Ok(())
        } else {
            Err((401, "invalid_client"))
        }
    }

    /// The token endpoint: authorization_code and refresh_token grants.
    pub fn token(&self, form: &HashMap<String, String>, now: i64) -> Result<Value, DemoError> {
        self.check_client(form)?;
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let mut state = self.lock();
        match field("grant_type") {
            "authorization_code" => {
                let code = state
                    .codes
                    .remove(field("code"))
                    .ok_or((400, "invalid_grant"))?;
                if code.expires_at < now || code.redirect_uri != field("redirect_uri") {
                    return Err((400, "invalid_grant"));
                }
                if let Some(challenge) = &code.challenge {
                    let computed =
                        URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier").as_bytes()));
                    if &computed != challenge {
                        return Err((400, "invalid_grant"));
                    }
                }
                let family = token("family-");
                Ok(Self::issue(&mut state, family, now))
            }
            "refresh_token" => {
                let presented = field("refresh_token").to_string();
                match state.refresh_tokens.get(&presented).cloned() {
                    Some(Some(family)) if !state.revoked_families.contains(&family) => {
                        state.refresh_tokens.insert(presented, None);
                        Ok(Self::issue(&mut state, family, now))
                    }
                    _ => Err((400, "invalid_grant")),
                }
            }
            _ => Err((400, "unsupported_grant_type")),
        }
    }

    fn issue(state: &mut State, family: String, now: i64) -> Value {
        let access = token("demo-at-");
        let refresh = token("demo-rt-");
        state
            .access_tokens
            .insert(access.clone(), now + ACCESS_TOKEN_SECS as i64);
        state.refresh_tokens.insert(refresh.clone(), Some(family));
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECS,
            "refresh_token": refresh,
            "scope": "demo.read",
        })
    }

    /// RFC 7009: revoking a refresh token ends its whole login.
    pub fn revoke(&self, form: &HashMap<String, String>) -> Result<(), DemoError> {
        self.check_client(form)?;
        let presented = form.get("token").cloned().unwrap_or_default();
        let mut state = self.lock();
        if let Some(Some(family)) = state.refresh_tokens.get(&presented).cloned() {
            state.revoked_families.push(family);
        }
        state.access_tokens.remove(&presented);
        Ok(())
    }

    /// The demo API: is this access token good now?
    pub fn check_access_token(&self, token: &str, now: i64) -> bool {
        self.lock()
            .access_tokens
            .get(token)
            .is_some_and(|expires| *expires > now)
    }

    /// The provider entry for the catalogue, pointing at `base`.
    pub fn catalogue_entry(&self, base: &str) -> Value {
        json!({
            "id": PROVIDER_ID,
            "name": "Demo provider (built in)",
            "clientId": CLIENT_ID,
            "clientSecret": self.client_secret.expose(),
            "loginUrl": format!("{base}/demo/authorize"),
            "authUrl": format!("{base}/demo/token"),
            "revokeUrl": format!("{base}/demo/revoke"),
            "scope": "demo.read",
            "serviceLink": format!("{base}/demo/api/me"),
            "notes": "A provider inside this process, for trying the broker without an account anywhere.",
            "pkce": true,
            "rotation": "single-use",
            "refreshTokenLifetime": 86400,
            "rateLimit": {"perSecond": 20, "burst": 40},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn code_pkce_rotation_and_revocation() {
        let demo = DemoProvider::new("http://127.0.0.1:8080/logged-in".into());
        let secret = demo.client_secret().expose().to_string();
        assert!(
            demo.check_authorize(CLIENT_ID, "http://evil.example/cb", "code")
                .is_err()
        );
        assert!(
            demo.check_authorize(CLIENT_ID, demo.redirect_uri(), "code")
                .is_ok()
        );
        let verifier = "a-verifier-of-enough-length-for-pkce-000000000";
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let code = demo.approve(demo.redirect_uri(), Some(challenge), 0);
        let base = [("client_id", CLIENT_ID), ("client_secret", secret.as_str())];
        let mut exchange = form(&base);
        exchange.extend(form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:8080/logged-in"),
            ("code_verifier", "wrong"),
        ]));
        assert_eq!(
            demo.token(&exchange, 1).unwrap_err(),
            (400, "invalid_grant")
        );
        let code = demo.approve(
            demo.redirect_uri(),
            Some(URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))),
            0,
        );
        exchange.insert("code".into(), code);
        exchange.insert("code_verifier".into(), verifier.into());
        let first = demo.token(&exchange, 1).unwrap();
        assert!(demo.check_access_token(first["access_token"].as_str().unwrap(), 2));
        assert!(demo.token(&exchange, 1).is_err(), "codes are single use");

        let rt0 = first["refresh_token"].as_str().unwrap().to_string();
        let mut refresh = form(&base);
        refresh.extend(form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt0),
        ]));
        let second = demo.token(&refresh, 5).unwrap();
        assert_ne!(second["refresh_token"], first["refresh_token"]);
        assert!(demo.token(&refresh, 6).is_err(), "a spent token is refused");

        let mut revoke = form(&base);
        revoke.insert(
            "token".into(),
            second["refresh_token"].as_str().unwrap().into(),
        );
        demo.revoke(&revoke).unwrap();
        refresh.insert(
            "refresh_token".into(),
            second["refresh_token"].as_str().unwrap().into(),
        );
        assert!(demo.token(&refresh, 7).is_err(), "revoked");
        let mut wrong = refresh.clone();
        wrong.insert("client_secret".into(), "nope".into());
        assert_eq!(demo.token(&wrong, 7).unwrap_err(), (401, "invalid_client"));
    }
}
