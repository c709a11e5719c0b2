//! The refresh request to a provider's token endpoint, bounded by a
//! deadline, timed, classified and logged (with a login fingerprint, never
//! a token).

use std::time::Instant;

use crate::metrics::Metrics;
use crate::provider::{Provider, TokenClient, TokenGrant, TransportError, UpstreamError, classify};
use crate::secret::Sensitive;

/// What one refresh request came to.
pub struct Exchange {
    pub result: Result<TokenGrant, UpstreamError>,
    /// The request was sent but no answer came back: the provider may
    /// have spent the refresh token.
    pub answer_lost: bool,
}

pub struct Request<'a> {
    pub client: &'a dyn TokenClient,
    pub metrics: &'a Metrics,
    pub provider: &'a Provider,
    /// The AuthID's `cid`: which of the provider's registrations to use.
    pub client_id: Option<&'a str>,
    pub refresh_token: &'a Sensitive,
    pub redirect_uri: &'a str,
    /// A short fingerprint of the login, for logs.
    pub login: &'a str,
}

impl Request<'_> {
    /// Sends the refresh; gives up at `deadline` at the latest (the
    /// client's own timeout usually ends it first).
    pub async fn send(self, deadline: tokio::time::Instant, now: impl Fn() -> i64) -> Exchange {
        let provider = self.provider;
        // The registration the grant was issued to: its credentials and
        // token endpoint (checked when the AuthID was opened).
        let Some(registration) = provider.registration(self.client_id) else {
            return Exchange {
                result: Err(UpstreamError::Misconfigured {
                    code: "unknown_client".into(),
                }),
                answer_lost: false,
            };
        };
        let form = provider.refresh_form_with(&registration, self.refresh_token, self.redirect_uri);
        let started = Instant::now();
        let sent = tokio::time::timeout_at(
            deadline,
            self.client.post_form(registration.token_url, &form, None),
        )
        .await
        .unwrap_or(Err(TransportError::Timeout));
        self.metrics
            .upstream_latency
            .get_or_create(&Metrics::provider(&provider.id))
            .observe(started.elapsed().as_secs_f64());
        let answer_lost = matches!(sent, Err(TransportError::Timeout | TransportError::Broken));
        let result = sent
            .map_err(UpstreamError::from)
            .and_then(|raw| classify(&raw, now()));
        if let Err(e) = &result {
            log_error(provider, self.login, e);
        }
        Exchange {
            result,
            answer_lost,
        }
    }
}

fn log_error(provider: &Provider, login: &str, e: &UpstreamError) {
    match e {
        UpstreamError::Misconfigured { .. } => tracing::error!(
            provider = %provider.id,
            login = %login,
            error = %e,
            "the provider rejected this broker's registration: check clientId, clientSecret and scope"
        ),
        _ => tracing::warn!(
            provider = %provider.id,
            login = %login,
            error = %e,
            "refresh failed at the provider"
        ),
    }
}
