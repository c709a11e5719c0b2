//! The authorization-code flow: `/login` seals a fresh state (with PKCE
//! where the provider takes it) and sends the browser to the provider;
//! `/logged-in` checks the state against the browser's cookie, spends it
//! on every instance, exchanges the code and seals the AuthID.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::state::{self, LoginState, STATE_LIFETIME};
use super::{FetchToken, Finished, LoginError, LoginService, pkce};
use crate::provider::Provider;
use crate::provider::client::FormField;
use crate::provider::hosts;
use crate::provider::outcome::is_oauth_error_code;
use crate::secret::{Sensitive, fingerprint, random_id};
use crate::store::{Space, StoreKey};

/// Longest authorization code accepted from a callback.
const MAX_CODE_LEN: usize = 4096;
/// How long a used state is remembered: longer than it is valid.
pub(super) const USED_STATE_TTL: Duration = Duration::from_secs(STATE_LIFETIME as u64 + 60);

/// The store entry of a used state: an HMAC under the state's nonce, which
/// exists only inside the sealed state.
fn used_state_key(nonce: &str) -> StoreKey {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(nonce.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"oauth-broker used login state");
    StoreKey::new(Space::UsedState, mac.finalize().into_bytes().into())
}

/// Where `/login` sends the browser.
#[derive(Debug)]
pub enum Start {
    /// To the provider's authorize URL; the cookie must carry `nonce`.
    Authorize { url: Url, nonce: Sensitive },
    /// The provider logs in with a pasted token instead.
    CliToken { provider: String },
}

/// The query of a callback to `/logged-in`.
#[derive(Default)]
pub struct Callback<'a> {
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    /// pCloud's regional API host.
    pub hostname: Option<&'a str>,
}

/// The code buys tokens until it is used: `Debug` says only whether one came.
impl std::fmt::Debug for Callback<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("state", &self.state)
            .field("code", &self.code.map(|_| "[redacted]"))
            .field("error", &self.error)
            .field("hostname", &self.hostname)
            .finish()
    }
}

impl LoginService {
    /// Spends a login state: true the first time, on any instance.
    async fn spend_state(&self, nonce: &str) -> bool {
        let fresh_here = self
            .used_nonces
            .entry(nonce.to_string())
            .or_insert(())
            .is_fresh();
        if !fresh_here {
            return false;
        }
        match self
            .deps
            .store
            .put_new(&used_state_key(nonce), vec![1], USED_STATE_TTL)
            .await
        {
            Ok(fresh) => fresh,
            Err(e) => {
                // The state is bound to the browser and the code is single
                // use at the provider; this instance's copy still refuses
                // a replay here.
                self.deps.outage.failed("spending a login state", &e);
                true
            }
        }
    }

    /// `/login`: where to send the browser, with a fresh sealed state.
    pub fn start(&self, name: &str, fetch_token: Option<FetchToken>) -> Result<Start, LoginError> {
        let provider = self.provider(name)?;
        let Some(authorize_url) = provider
            .authorize_url
            .as_ref()
            .filter(|_| !provider.cli_token)
        else {
            return Ok(Start::CliToken {
                provider: provider.id.clone(),
            });
        };
        let verifier = provider.pkce.then(pkce::new_verifier);
        let login_state = LoginState {
            provider: provider.id.clone(),
            fetch_token: fetch_token.map(|t| t.as_str().to_string()),
            verifier: verifier.clone(),
            nonce: random_id(),
            expires_at: self.now() + STATE_LIFETIME,
        };
        let sealed =
            state::seal(&self.deps.keyring.current(), &login_state).map_err(LoginError::Seal)?;
        let mut url = authorize_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &provider.client_id);
            q.append_pair("redirect_uri", &self.deps.redirect_uri);
            if !provider.scope.is_empty() {
                q.append_pair("scope", &provider.scope);
            }
            q.append_pair("state", &sealed);
            if let Some(v) = &verifier {
                q.append_pair("code_challenge", &pkce::challenge(v));
                q.append_pair("code_challenge_method", "S256");
            }
            let extra = provider.extra_url.trim_start_matches(['?', '&']);
            for (k, v) in url::form_urlencoded::parse(extra.as_bytes()) {
                q.append_pair(&k, &v);
            }
        }
        tracing::info!(
            provider = %provider.id,
            login = %fingerprint(login_state.nonce.as_bytes()),
            "login started"
        );
        Ok(Start::Authorize {
            url,
            nonce: Sensitive::new(login_state.nonce),
        })
    }

    /// `/logged-in`: checks the state against the browser's cookie, spends
    /// it, exchanges the code and seals the AuthID.
    pub async fn finish(
        &self,
        callback: Callback<'_>,
        cookie_nonce: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Finished, LoginError> {
        self.count_attempt(client)
            .map_err(|retry_after| LoginError::TooMany { retry_after })?;
        let state_text = callback.state.unwrap_or("");
        let login_state =
            state::open(&self.deps.keyring.current(), state_text).map_err(LoginError::State)?;
        let login = fingerprint(login_state.nonce.as_bytes());
        let fetch_token = login_state
            .fetch_token
            .as_deref()
            .and_then(FetchToken::parse);
        if let Err(e) = self.check_callback(&login_state, cookie_nonce) {
            // A polling client learns it at once rather than waiting out
            // its token; a later successful login with the token still
            // replaces the failure.
            return self.conclude(Err(e), fetch_token, &login).await;
        }
        if !self.spend_state(&login_state.nonce).await {
            // The first callback recorded the outcome, which stays.
            tracing::warn!(login = %login, "login callback replayed");
            return Err(LoginError::Replayed {
                provider: login_state.provider,
            });
        }
        let result = self.exchange(&login_state, state_text, &callback).await;
        self.conclude(result, fetch_token, &login).await
    }

    /// The callback is in time and in the browser that started the login.
    fn check_callback(
        &self,
        login_state: &LoginState,
        cookie_nonce: Option<&str>,
    ) -> Result<(), LoginError> {
        if login_state.expires_at <= self.now() {
            return Err(LoginError::Expired {
                provider: login_state.provider.clone(),
            });
        }
        let same_browser = cookie_nonce.is_some_and(|c| {
            use subtle::ConstantTimeEq;
            bool::from(c.as_bytes().ct_eq(login_state.nonce.as_bytes()))
        });
        if same_browser {
            Ok(())
        } else {
            Err(LoginError::WrongBrowser)
        }
    }

    async fn exchange(
        &self,
        login_state: &LoginState,
        state_text: &str,
        callback: &Callback<'_>,
    ) -> Result<(Arc<Provider>, Sensitive), LoginError> {
        let provider = Arc::clone(self.provider(&login_state.provider)?);
        if let Some(code) = callback.error {
            let code = if is_oauth_error_code(code) {
                code
            } else {
                "unknown"
            };
            return Err(LoginError::Declined {
                provider: provider.id.clone(),
                code: code.to_string(),
            });
        }
        let code = callback
            .code
            .map(str::trim)
            .filter(|c| !c.is_empty() && c.len() <= MAX_CODE_LEN)
            .ok_or_else(|| {
                LoginError::BadInput("The provider sent no usable authorization code".into())
            })?;
        let token_url = self.token_url(&provider, callback.hostname)?;
        let mut form: Vec<FormField> = vec![
            ("grant_type".into(), Sensitive::new("authorization_code")),
            ("code".into(), Sensitive::new(code)),
            (
                "redirect_uri".into(),
                Sensitive::new(self.deps.redirect_uri.as_str()),
            ),
        ];
        provider.push_client_auth(&mut form);
        if let Some(verifier) = &login_state.verifier {
            form.push(("code_verifier".into(), verifier.clone()));
        }
        if !provider.no_state_for_token_request {
            form.push(("state".into(), Sensitive::new(state_text)));
        }
        provider.push_additional(&mut form);
        let admission = self.admit_login(&provider).await?;
        let grant = self
            .token_request(admission, &provider, &token_url, &form)
            .await?;
        self.authid_from(&provider, grant)
            .map(|authid| (provider, authid))
    }

    /// The token endpoint for a code exchange. pCloud names its regional API
    /// host in the callback; only hosts in `allowedHosts` are contacted.
    fn token_url(&self, provider: &Provider, hostname: Option<&str>) -> Result<Url, LoginError> {
        let Some(hostname) = hostname.filter(|_| provider.access_token_only) else {
            return Ok(provider.token_url.clone());
        };
        let refuse = || LoginError::HostNotAllowed("API host named by the provider's callback");
        let (host, port) = hosts::parse_host_port(hostname).ok_or_else(refuse)?;
        if !hosts::is_allowed(&provider.allowed_hosts, &host, port) {
            tracing::warn!(provider = %provider.id, "callback named an API host outside allowedHosts");
            return Err(refuse());
        }
        let mut url = provider.token_url.clone();
        url.set_host(Some(&host)).map_err(|_| refuse())?;
        url.set_port(port).map_err(|_| refuse())?;
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_code_and_the_nonce() {
        let callback = Callback {
            code: Some("secret-code"),
            ..Default::default()
        };
        assert!(!format!("{callback:?}").contains("secret-code"));
        let url = Url::parse("https://p.example/authorize").unwrap();
        let start = Start::Authorize {
            url,
            nonce: Sensitive::new("secret-nonce"),
        };
        assert!(!format!("{start:?}").contains("secret-nonce"));
    }
}
