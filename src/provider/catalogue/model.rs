//! What the broker knows of one provider: its registration, endpoints and
//! quirks, validated, and the token-request forms they imply.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::provider::client::FormField;
use crate::secret::Sensitive;

/// Provider ids are short lowercase names such as `googledrive` or
/// `box.com`: what AuthIDs, catalogue entries and `?type=` name.
pub fn is_provider_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// How a provider treats refresh tokens when it answers a refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The refresh token stays the same (Google, Dropbox).
    None,
    /// A new refresh token may come back; the old one keeps working for a
    /// while (Microsoft).
    Rotating,
    /// Every refresh spends the token and returns a new one (Box,
    /// Jottacloud).
    SingleUse,
}

impl Rotation {
    /// Reads the `rotation` field of a catalogue entry.
    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "rotating" => Some(Self::Rotating),
            "single-use" => Some(Self::SingleUse),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Rotating => "rotating",
            Self::SingleUse => "single-use",
        }
    }
}

/// The broker's own quota on calls to one provider's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// One enabled provider registration, validated.
pub struct Provider {
    pub id: String,
    /// The `serviceId` group (upper case, e.g. `GD` or `MSGRAPH`): the
    /// defaults the entry started from, and a name `SERVICES` accepts.
    pub group: Option<String>,
    pub name: String,
    pub client_id: String,
    pub client_secret: Sensitive,
    /// The token endpoint (`authUrl`).
    pub token_url: Url,
    /// The authorize endpoint (`loginUrl`); none for the login-token flow.
    pub authorize_url: Option<Url>,
    pub revoke_url: Option<Url>,
    pub scope: String,
    /// Extra query parameters for the authorize URL (`extraUrl`).
    pub extra_url: String,
    pub service_link: Option<String>,
    pub deauth_link: Option<String>,
    pub brand_image: Option<String>,
    pub notes: Option<String>,
    pub hidden: bool,
    pub no_state_for_token_request: bool,
    pub no_redirect_uri_for_refresh: bool,
    pub cli_token: bool,
    pub access_token_only: bool,
    /// Extra form fields sent with every token request.
    pub additional_elements: BTreeMap<String, String>,
    pub pkce: bool,
    pub rotation: Rotation,
    pub allowed_hosts: Vec<String>,
    pub rate_limit: RateLimit,
    pub aliases: Vec<String>,
    /// How long an unused refresh token stays valid at the provider.
    pub refresh_token_lifetime: Duration,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("id", &self.id)
            .field("token_url", &self.token_url.as_str())
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The form of a `refresh_token` grant, with this provider's quirks.
    pub fn refresh_form(&self, refresh_token: &Sensitive, redirect_uri: &str) -> Vec<FormField> {
        let mut form: Vec<FormField> = vec![
            ("grant_type".into(), Sensitive::new("refresh_token")),
            ("refresh_token".into(), refresh_token.clone()),
        ];
        self.push_client_auth(&mut form);
        if !self.no_redirect_uri_for_refresh && !self.cli_token {
            form.push(("redirect_uri".into(), Sensitive::new(redirect_uri)));
        }
        self.push_additional(&mut form);
        form
    }

    /// Client credentials in the form body (`client_secret_post`), which
    /// every built-in provider accepts; public clients send no secret.
    pub fn push_client_auth(&self, form: &mut Vec<FormField>) {
        form.push(("client_id".into(), Sensitive::new(self.client_id.as_str())));
        if !self.client_secret.is_empty() {
            form.push(("client_secret".into(), self.client_secret.clone()));
        }
    }

    pub fn push_additional(&self, form: &mut Vec<FormField>) {
        for (k, v) in &self.additional_elements {
            form.push((k.clone().into(), Sensitive::new(v.as_str())));
        }
    }
}
