//! Revocation: the user gives up an AuthID; the broker asks the provider to
//! end the grant where the provider has an endpoint for it, and forgets
//! every cached answer for the login.

use std::sync::Arc;

use serde_json::Value;

use super::LoginService;
use crate::provider::client::FormField;
use crate::provider::{Provider, RawAnswer, UpstreamError, classify};
use crate::refresh::RefreshError;
use crate::secret::Sensitive;

#[derive(Debug)]
pub enum RevokeOutcome {
    /// The provider ended the grant (or had already ended it).
    Revoked { provider: Arc<Provider> },
    /// The provider offers no revocation endpoint: the user must remove
    /// the application's access on the provider's site.
    NoEndpoint { provider: Arc<Provider> },
}

#[derive(Debug)]
pub enum RevokeError {
    /// The AuthID cannot be opened or names an unknown provider.
    AuthId(RefreshError),
    /// The provider refused or failed.
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

impl LoginService {
    /// Revokes the grant behind an AuthID.
    pub async fn revoke(&self, text: &str) -> Result<RevokeOutcome, RevokeError> {
        let refresher = &self.deps.refresher;
        let login = refresher.open(text).map_err(RevokeError::AuthId)?;
        let provider = Arc::clone(&login.provider);
        let fingerprint = login.claims.login_fingerprint();
        let Some(url) = provider.revoke_url.clone() else {
            refresher.forget(text, &login).await;
            return Ok(RevokeOutcome::NoEndpoint { provider });
        };
        let answer = match style(&provider, &url) {
            Style::Bearer => match refresher.refresh(text, None).await {
                Ok(fresh) => self.call(&url, &[], Some(&fresh.access_token())).await,
                // The grant is gone already: nothing left to revoke.
                Err(RefreshError::Upstream(UpstreamError::Reauthorize { .. })) => Ok(()),
                Err(RefreshError::Upstream(e)) => Err(e),
                Err(e) => return Err(RevokeError::AuthId(e)),
            },
            style => {
                let mut form: Vec<FormField> = vec![("token".into(), login.claims.rt.clone())];
                if style == Style::Rfc7009 {
                    form.push(("token_type_hint".into(), Sensitive::new("refresh_token")));
                    provider.push_client_auth(&mut form);
                }
                self.call(&url, &form, None).await
            }
        };
        refresher.forget(text, &login).await;
        match answer {
            Ok(()) => {
                tracing::info!(provider = %provider.id, login = %fingerprint, "grant revoked");
                Ok(RevokeOutcome::Revoked { provider })
            }
            Err(e) => {
                tracing::warn!(provider = %provider.id, login = %fingerprint, error = %e, "revocation failed");
                Err(RevokeError::Upstream(e))
            }
        }
    }

    async fn call(
        &self,
        url: &url::Url,
        form: &[FormField],
        bearer: Option<&Sensitive>,
    ) -> Result<(), UpstreamError> {
        let raw = self.deps.client.post_form(url, form, bearer).await?;
        interpret(&raw, self.now())
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
