//! What the mock saw: calls per endpoint, the refresh tokens presented and
//! the last requests, for tests to assert on.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};

use super::MockProvider;

/// Calls and requests seen so far.
#[derive(Debug, Default)]
pub(super) struct Calls {
    pub(super) token_calls: usize,
    pub(super) refresh_tokens_received: Vec<String>,
    pub(super) spent_token_presentations: usize,
    pub(super) last_token_request: Option<BTreeMap<String, String>>,
    pub(super) last_authorize_query: Option<BTreeMap<String, String>>,
    pub(super) authorize_calls: usize,
    pub(super) revoked: Vec<String>,
    pub(super) last_revoke_request: Option<BTreeMap<String, String>>,
    pub(super) revoke_calls: usize,
    pub(super) discovery_calls: usize,
}

impl Calls {
    /// A request at `/token`, fault or not: its form, the refresh token it
    /// presents, and an HTTP Basic header when one was sent.
    pub(super) fn record_token_request(
        &mut self,
        headers: &HeaderMap,
        form: BTreeMap<String, String>,
    ) {
        self.token_calls += 1;
        if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
            if let Some(rt) = form.get("refresh_token") {
                self.refresh_tokens_received.push(rt.clone());
            }
        }
        let mut recorded = form;
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            if let Ok(v) = auth.to_str() {
                if v.len() > 6 && v[..6].eq_ignore_ascii_case("basic ") {
                    recorded.insert("authorization".to_owned(), v.to_owned());
                }
            }
        }
        self.last_token_request = Some(recorded);
    }

    /// A request at `/revoke`: its form, and any Authorization header.
    pub(super) fn record_revoke_request(
        &mut self,
        headers: &HeaderMap,
        form: BTreeMap<String, String>,
    ) {
        self.revoke_calls += 1;
        let mut recorded = form;
        if let Some(v) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            recorded.insert("authorization".to_owned(), v.to_owned());
        }
        self.last_revoke_request = Some(recorded);
    }
}

impl MockProvider {
    /// Requests received at `/token`, all grants, faults and failures
    /// included.
    pub fn token_calls(&self) -> usize {
        self.lock().calls.token_calls
    }

    /// Every `refresh_token` presented at `/token` in order, including
    /// requests answered with a fault.
    pub fn refresh_tokens_received(&self) -> Vec<String> {
        self.lock().calls.refresh_tokens_received.clone()
    }

    /// Times a refresh token that had already been replaced by a newer one
    /// was presented: spent tokens under single-use rotation (refused), and
    /// superseded tokens under [`Rotation::Rotating`] (still accepted).
    pub fn spent_token_presentations(&self) -> usize {
        self.lock().calls.spent_token_presentations
    }

    /// Form fields of the last `/token` request, plus key `authorization`
    /// (the raw header value) when HTTP Basic was used.
    pub fn last_token_request(&self) -> Option<BTreeMap<String, String>> {
        self.lock().calls.last_token_request.clone()
    }

    /// Query parameters of the last `/authorize` request.
    pub fn last_authorize_query(&self) -> Option<BTreeMap<String, String>> {
        self.lock().calls.last_authorize_query.clone()
    }

    /// Requests received at `/authorize`.
    pub fn authorize_calls(&self) -> usize {
        self.lock().calls.authorize_calls
    }

    /// Tokens presented at `/revoke` with valid client authentication, in
    /// order.
    pub fn revoked(&self) -> Vec<String> {
        self.lock().calls.revoked.clone()
    }

    /// Form fields of the last `/revoke` request, plus key `authorization`
    /// when an Authorization header was sent.
    pub fn last_revoke_request(&self) -> Option<BTreeMap<String, String>> {
        self.lock().calls.last_revoke_request.clone()
    }

    /// Requests received at `/revoke`.
    pub fn revoke_calls(&self) -> usize {
        self.lock().calls.revoke_calls
    }

    /// Requests received at `/.well-known/openid-configuration`.
    pub fn discovery_calls(&self) -> usize {
        self.lock().calls.discovery_calls
    }
}
