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
    /// Earlier registrations whose AuthIDs still work (`previousClients`).
    pub previous_clients: Vec<PreviousClient>,
}

/// An earlier registration of a provider: AuthIDs issued under it (claim
/// `cid`) are refreshed and revoked with its credentials and endpoints;
/// new logins never use it.
pub struct PreviousClient {
    pub client_id: String,
    pub client_secret: Sensitive,
    /// The token endpoint; the provider's own unless the entry names one.
    pub token_url: Url,
    pub revoke_url: Option<Url>,
    /// This registration owns the tokens migrated from the old App Engine
    /// service.
    pub legacy: bool,
    /// This registration owns AuthIDs that name no client (`cid`): the
    /// entry's own client did before it was moved here.
    pub unlabelled: bool,
}

impl std::fmt::Debug for PreviousClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviousClient")
            .field("client_id", &self.client_id)
            .field("token_url", &self.token_url.as_str())
            .field("legacy", &self.legacy)
            .field("unlabelled", &self.unlabelled)
            .finish_non_exhaustive()
    }
}

fn previous(c: &PreviousClient) -> Registration<'_> {
    Registration {
        client_id: &c.client_id,
        client_secret: &c.client_secret,
        token_url: &c.token_url,
        revoke_url: c.revoke_url.as_ref(),
        previous: true,
    }
}

/// The registration an AuthID is refreshed and revoked with: the entry's
/// own client, or one of its previous clients.
#[derive(Clone, Copy)]
pub struct Registration<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a Sensitive,
    pub token_url: &'a Url,
    pub revoke_url: Option<&'a Url>,
    /// False for the entry's own client.
    pub previous: bool,
}

impl std::fmt::Debug for Registration<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("client_id", &self.client_id)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl Registration<'_> {
    /// `current` or `previous`, for metrics.
    pub fn kind(&self) -> &'static str {
        if self.previous { "previous" } else { "current" }
    }
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
    /// The entry's own client, which every new login uses.
    pub fn current(&self) -> Registration<'_> {
        Registration {
            client_id: &self.client_id,
            client_secret: &self.client_secret,
            token_url: &self.token_url,
            revoke_url: self.revoke_url.as_ref(),
            previous: false,
        }
    }

    /// The registration named by an AuthID's `cid` claim: absent or the
    /// entry's own client id is the entry's own client; `None` when the
    /// broker does not hold the client named.
    pub fn registration(&self, cid: Option<&str>) -> Option<Registration<'_>> {
        match cid {
            None => Some(match self.unlabelled_client() {
                Some(c) => previous(c),
                None => self.current(),
            }),
            Some(id) if id == self.client_id => Some(self.current()),
            Some(id) => self
                .previous_clients
                .iter()
                .find(|c| c.client_id == id)
                .map(previous),
        }
    }

    /// The client that owns AuthIDs naming none: the previous client
    /// marked `unlabelled`, if any (else the entry's own).
    pub fn unlabelled_client(&self) -> Option<&PreviousClient> {
        self.previous_clients.iter().find(|c| c.unlabelled)
    }

    /// The previous client that owns tokens migrated from the old App
    /// Engine service, if the registration changed.
    pub fn app_engine_client(&self) -> Option<&PreviousClient> {
        self.previous_clients.iter().find(|c| c.legacy)
    }

    /// The form of a `refresh_token` grant, with this provider's quirks.
    pub fn refresh_form(&self, refresh_token: &Sensitive, redirect_uri: &str) -> Vec<FormField> {
        self.refresh_form_with(&self.current(), refresh_token, redirect_uri)
    }

    /// The form of a `refresh_token` grant for one registration.
    pub fn refresh_form_with(
        &self,
        registration: &Registration<'_>,
        refresh_token: &Sensitive,
        redirect_uri: &str,
    ) -> Vec<FormField> {
        let mut form: Vec<FormField> = vec![
            ("grant_type".into(), Sensitive::new("refresh_token")),
            ("refresh_token".into(), refresh_token.clone()),
        ];
        push_client_auth(registration, &mut form);
        if !self.no_redirect_uri_for_refresh && !self.cli_token {
            form.push(("redirect_uri".into(), Sensitive::new(redirect_uri)));
        }
        self.push_additional(&mut form);
        form
    }

    /// Client credentials in the form body (`client_secret_post`), which
    /// every built-in provider accepts; public clients send no secret.
    pub fn push_client_auth(&self, form: &mut Vec<FormField>) {
        push_client_auth(&self.current(), form);
    }

    pub fn push_additional(&self, form: &mut Vec<FormField>) {
        for (k, v) in &self.additional_elements {
            form.push((k.clone().into(), Sensitive::new(v.as_str())));
        }
    }
}

/// Client credentials in the form body of a request for `registration`.
pub fn push_client_auth(registration: &Registration<'_>, form: &mut Vec<FormField>) {
    form.push(("client_id".into(), Sensitive::new(registration.client_id)));
    if !registration.client_secret.is_empty() {
        form.push(("client_secret".into(), registration.client_secret.clone()));
    }
}
