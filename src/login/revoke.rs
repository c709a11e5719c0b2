//! Revocation: the user gives up an AuthID; the broker asks the provider to
//! end the grant where the provider has an endpoint for it, and ends every
//! AuthID of the login. For a provider that rotates refresh tokens, the
//! token revoked is the newest one the store knows: the AuthID presented
//! may be the one first pasted, whose token was spent long ago.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use super::LoginService;
use crate::provider::client::FormField;
use crate::provider::protect::gate_name;
use crate::provider::{Provider, RawAnswer, UpstreamError, classify};
use crate::refresh::{Ending, RefreshError};
use crate::secret::Sensitive;

#[derive(Debug)]
pub enum RevokeOutcome {
    /// The provider ended the grant (or had already ended it).
    Revoked { provider: Arc<Provider> },
    /// The provider offers no revocation endpoint: the user must remove
    /// the application's access on the provider's site. The broker no
    /// longer accepts any AuthID of the login.
    NoEndpoint { provider: Arc<Provider> },
}

#[derive(Debug)]
pub enum RevokeError {
    /// The AuthID cannot be opened or names an unknown provider.
    AuthId(RefreshError),
    /// The broker held back and changed nothing: too many requests from
    /// this address, the provider's backoff or quota, the store
    /// unreachable for a login that needs it, a refresh of the login in
    /// progress.
    Held(RefreshError),
    /// The provider refused or failed; nothing was changed.
    Upstream(UpstreamError),
}

/// How a provider's revocation endpoint wants to be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Google: form `token`, no client authentication.
    TokenOnly,
    /// RFC 7009 (Box and most others): form `token` plus client credentials.
    Rfc7009,
    /// Dropbox: POST with a bearer access token and no body.
    Bearer,
}

fn style(provider: &Provider, url: &url::Url) -> Style {
    let host = url.host_str().unwrap_or("");
    if provider.id == "dropbox" || url.path().ends_with("/2/auth/token/revoke") {
        Style::Bearer
    } else if matches!(provider.id.as_str(), "googledrive" | "googledocs" | "gcs")
        || host == "oauth2.googleapis.com"
    {
        Style::TokenOnly
    } else {
        Style::Rfc7009
    }
}

/// The registration a grant is revoked with.
struct Client {
    id: String,
    secret: Sensitive,
    /// Its protection gate.
    gate: String,
}

impl LoginService {
    /// Revokes the grant behind an AuthID and ends every AuthID of its
    /// login. `client` is the caller's address, for the per-address limit.
    pub async fn revoke(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<RevokeOutcome, RevokeError> {
        self.count_attempt(client).map_err(|retry_after| {
            RevokeError::Held(RefreshError::TooMany {
                what: "Too many logins and revocations from this address",
                retry_after,
            })
        })?;
        let refresher = &self.deps.refresher;
        let login = refresher
            .open_any(text)
            .await
            .map_err(RevokeError::AuthId)?;
        let provider = Arc::clone(&login.provider);
        let fingerprint = login.claims.login_fingerprint();
        // The registration the grant was issued to (checked on opening):
        // its revocation endpoint, credentials and protection gate.
        let Some(registration) = provider.registration(login.claims.client_id()) else {
            return Err(RevokeError::AuthId(RefreshError::UnknownClient(
                provider.name.clone(),
            )));
        };
        let client = Client {
            id: registration.client_id.to_string(),
            secret: registration.client_secret.clone(),
            gate: gate_name(&provider, &registration),
        };
        let Some(url) = registration.revoke_url.cloned() else {
            let ending = refresher
                .begin_ending(text, login)
                .await
                .map_err(RevokeError::Held)?;
            ending.finish().await.map_err(RevokeError::Held)?;
            tracing::info!(provider = %provider.id, login = %fingerprint, "login ended; the provider has no revocation endpoint");
            return Ok(RevokeOutcome::NoEndpoint { provider });
        };
        let style = style(&provider, &url);
        // Dropbox revokes with an access token. A refresh takes the
        // login's lock itself, so the token is obtained first.
        let bearer = match style {
            Style::Bearer => match refresher.refresh(text, None).await {
                Ok(fresh) => Some(fresh.access_token()),
                // The grant is gone already: nothing left to revoke there.
                Err(
                    RefreshError::Upstream(UpstreamError::Reauthorize { .. })
                    | RefreshError::Revoked,
                ) => None,
                Err(RefreshError::Upstream(e)) => return Err(RevokeError::Upstream(e)),
                Err(e) => return Err(RevokeError::Held(e)),
            },
            _ => None,
        };
        let ending = refresher
            .begin_ending(text, login)
            .await
            .map_err(RevokeError::Held)?;
        let calls =
            self.revoke_at_provider(&provider, &client, &url, style, bearer.as_ref(), &ending);
        let answer = tokio::time::timeout_at(ending.deadline(), calls)
            .await
            .unwrap_or(Err(RevokeError::Upstream(UpstreamError::Timeout)));
        match answer {
            Ok(()) => {
                if ending.finish().await.is_err() {
                    // The grant is ended at the provider, which refuses
                    // every token of it: the mark only saves it the calls.
                    tracing::warn!(provider = %provider.id, login = %fingerprint, "grant revoked, but the store did not take the revocation mark");
                }
                tracing::info!(provider = %provider.id, login = %fingerprint, "grant revoked");
                Ok(RevokeOutcome::Revoked { provider })
            }
            Err(e) => {
                ending.abandon().await;
                tracing::warn!(provider = %provider.id, login = %fingerprint, error = ?e, "revocation failed; the login is unchanged");
                Err(e)
            }
        }
    }

    /// Asks the provider to end the grant: with the bearer access token,
    /// or with the newest refresh token and then the AuthID's own if it is
    /// older (a courtesy: ending the newest ends the grant).
    async fn revoke_at_provider(
        &self,
        provider: &Provider,
        client: &Client,
        url: &url::Url,
        style: Style,
        bearer: Option<&Sensitive>,
        ending: &Ending,
    ) -> Result<(), RevokeError> {
        if style == Style::Bearer {
            return match bearer {
                Some(token) => {
                    self.revoke_call(provider, client, url, &[], Some(token))
                        .await
                }
                None => Ok(()),
            };
        }
        for (i, token) in ending.refresh_tokens().iter().enumerate() {
            let mut form: Vec<FormField> = vec![("token".into(), token.clone())];
            if style == Style::Rfc7009 {
                form.push(("token_type_hint".into(), Sensitive::new("refresh_token")));
                form.push(("client_id".into(), Sensitive::new(client.id.as_str())));
                if !client.secret.is_empty() {
                    form.push(("client_secret".into(), client.secret.clone()));
                }
            }
            match self.revoke_call(provider, client, url, &form, None).await {
                Ok(()) => {}
                Err(e) if i == 0 => return Err(e),
                Err(e) => tracing::info!(
                    provider = %provider.id,
                    login = %ending.login().claims.login_fingerprint(),
                    error = ?e,
                    "the AuthID's older refresh token was not revoked; the newest was"
                ),
            }
        }
        Ok(())
    }

    /// One call to the revocation endpoint, admitted like a refresh.
    async fn revoke_call(
        &self,
        provider: &Provider,
        client: &Client,
        url: &url::Url,
        form: &[FormField],
        bearer: Option<&Sensitive>,
    ) -> Result<(), RevokeError> {
        let admission = self
            .admit(provider, &client.gate)
            .await
            .map_err(|refusal| RevokeError::Held(RefreshError::Refused(refusal)))?;
        let now = self.now();
        let result = match self.deps.client.post_form(url, form, bearer).await {
            Ok(raw) => interpret(&raw, now),
            Err(e) => Err(UpstreamError::from(e)),
        };
        admission.settle(&result, now).await;
        result.map_err(RevokeError::Upstream)
    }
}

/// 2xx is success; a token the provider no longer knows counts as revoked.
fn interpret(raw: &RawAnswer, now: i64) -> Result<(), UpstreamError> {
    if (200..300).contains(&raw.status) {
        return Ok(());
    }
    let code = serde_json::from_slice::<Value>(&raw.body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string));
    if matches!(code.as_deref(), Some("invalid_token" | "invalid_grant")) {
        return Ok(());
    }
    match classify(raw, now) {
        Err(e) => Err(e),
        Ok(_) => Err(UpstreamError::Unavailable {
            detail: "unexpected answer to the revocation",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, body: &str) -> RawAnswer {
        RawAnswer {
            status,
            retry_after: None,
            body: body.to_string().into(),
        }
    }

    #[test]
    fn answers() {
        assert!(interpret(&raw(200, ""), 0).is_ok());
        assert!(interpret(&raw(400, r#"{"error":"invalid_token"}"#), 0).is_ok());
        assert!(matches!(
            interpret(&raw(401, r#"{"error":"invalid_client"}"#), 0),
            Err(UpstreamError::Misconfigured { .. })
        ));
        assert!(matches!(
            interpret(&raw(503, ""), 0),
            Err(UpstreamError::Throttled { .. })
        ));
        assert!(interpret(&raw(500, "oops"), 0).is_err());
    }
}
