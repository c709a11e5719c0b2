//! A provider's `previousClients`: earlier registrations an AuthID may
//! still name, checked against the provider's own client.

use url::Url;

use super::endpoint::check_url;
use super::entry::Entry;
use super::model::PreviousClient;
use crate::provider::secrets::{EnvLookup, Secrets, substitute_choosing};
use crate::secret::Sensitive;

/// Where `%NAME%` references are looked up: `SECRETS`, then the
/// environment.
#[derive(Clone, Copy)]
pub(super) struct Lookup<'a> {
    pub(super) secrets: &'a Secrets,
    pub(super) env: EnvLookup<'a>,
}

/// The provider's own client, which previous clients default to and must
/// differ from.
pub(super) struct CurrentClient<'a> {
    pub(super) client_id: &'a str,
    pub(super) token_url: &'a Url,
    pub(super) revoke_url: Option<&'a Url>,
}

/// `previousClients`: each needs a client id other than the current one's
/// and every other's, its secrets set (the operator listed it on purpose,
/// so a missing one is a problem, not a reason to disable the provider),
/// and at most one is `legacy`, at most one `unlabelled`. Endpoints default to the provider's.
pub(super) fn previous_clients(
    entry: &Entry,
    current: &CurrentClient<'_>,
    lookup: Lookup<'_>,
    prefix: &str,
    problems: &mut Vec<String>,
) -> Vec<PreviousClient> {
    let mut out: Vec<PreviousClient> = Vec::new();
    for (i, c) in entry.previous_clients.iter().flatten().enumerate() {
        let at = format!("{prefix}: previousClients[{i}]");
        let mut resolve = |field: &str, text: &str| -> Option<Sensitive> {
            substitute_choosing(text, lookup.secrets, lookup.env, None)
                .map(|(v, _)| v)
                .map_err(|names| {
                    problems.push(format!("{at}: {field} needs {}", names.join(", ")));
                })
                .ok()
        };
        let client_id = resolve("clientId", &c.client_id);
        let client_secret = match &c.client_secret {
            Some(text) => resolve("clientSecret", text.expose()),
            None => Some(Sensitive::new("")),
        };
        let own_token_url = c.auth_url.as_deref().map(|t| resolve("authUrl", t));
        let own_revoke_url = c.revoke_url.as_deref().map(|t| resolve("revokeUrl", t));
        let (Some(client_id), Some(client_secret)) = (client_id, client_secret) else {
            continue;
        };
        let client_id = client_id.expose().to_string();
        if client_id.is_empty() {
            problems.push(format!("{at}: clientId is empty"));
            continue;
        }
        if client_id == current.client_id || out.iter().any(|p| p.client_id == client_id) {
            problems.push(format!(
                "{at}: the client id is already the provider's own or another previous client's"
            ));
            continue;
        }
        let token_url = match own_token_url {
            None => current.token_url.clone(),
            Some(Some(u)) => match check_url(&at, "authUrl", u.expose(), problems) {
                Some(u) => u,
                None => continue,
            },
            Some(None) => continue,
        };
        let revoke_url = match own_revoke_url {
            None => current.revoke_url.cloned(),
            Some(Some(u)) => check_url(&at, "revokeUrl", u.expose(), problems),
            Some(None) => None,
        };
        out.push(PreviousClient {
            client_id,
            client_secret,
            token_url,
            revoke_url,
            legacy: c.legacy,
            unlabelled: c.unlabelled,
        });
    }
    if out.iter().filter(|c| c.legacy).count() > 1 {
        problems.push(format!(
            "{prefix}: only one of previousClients may be marked legacy"
        ));
    }
    // AuthIDs without `cid` must have one owner, or moving a registration
    // would send them to a client that never issued them.
    if out.iter().filter(|c| c.unlabelled).count() > 1 {
        problems.push(format!(
            "{prefix}: only one of previousClients may be marked unlabelled (it owns the AuthIDs that name no client)"
        ));
    }
    out
}
