//! One catalogue entry checked and turned into a provider, in phases: its
//! `%NAME%` references resolved (a missing credential disables the
//! provider), its endpoints and options checked (every problem is
//! collected), its previous clients read, and the provider assembled.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::endpoint::check_url;
use super::entry::Entry;
use super::model::{PreviousClient, Provider, RateLimit, Rotation, is_provider_id};
use super::previous::{CurrentClient, Lookup, previous_clients};
use crate::provider::hosts::{host_port, parse_host_port};
use crate::provider::secrets::substitute_choosing;
use crate::secret::Sensitive;

/// Seconds a provider's `refreshTokenLifetime` may be.
const REFRESH_TOKEN_LIFETIME_RANGE: std::ops::RangeInclusive<u64> = 3600..=10 * 365 * 24 * 3600;

/// Why an entry did not become a provider.
pub(super) enum BuildError {
    /// A credential it references is not set: the provider is off.
    NoCredentials(Vec<String>),
    /// The entry is wrong: every problem found.
    Invalid(Vec<String>),
}

/// The entry's `%NAME%` references, resolved.
struct Credentials {
    client_id: String,
    client_secret: Sensitive,
    auth_url: Option<Sensitive>,
    login_url: Option<Sensitive>,
    revoke_url: Option<Sensitive>,
}

/// The provider's endpoints, each checked.
struct Endpoints {
    token_url: Option<Url>,
    authorize_url: Option<Url>,
    revoke_url: Option<Url>,
}

/// Everything else the entry sets, checked.
struct Options {
    rotation: Rotation,
    rate_limit: RateLimit,
    allowed_hosts: Vec<String>,
    aliases: Vec<String>,
    group: Option<String>,
    additional_elements: BTreeMap<String, String>,
}

pub(super) fn build_provider(entry: Entry, lookup: Lookup<'_>) -> Result<Provider, BuildError> {
    let id = entry.id.clone().unwrap_or_default();
    let cli_token = entry.cli_token.unwrap_or(false);
    let credentials = resolve_credentials(&entry, lookup, &id, cli_token)?;
    let prefix = format!("provider {id}");
    let mut problems = Vec::new();
    let endpoints = check_endpoints(&entry, &credentials, cli_token, &prefix, &mut problems);
    let options = check_options(&entry, &prefix, &mut problems);
    let previous_clients = endpoints
        .token_url
        .as_ref()
        .map(|token_url| {
            let current = CurrentClient {
                client_id: &credentials.client_id,
                token_url,
                revoke_url: endpoints.revoke_url.as_ref(),
            };
            previous_clients(&entry, &current, lookup, &prefix, &mut problems)
        })
        .unwrap_or_default();
    if !problems.is_empty() {
        return Err(BuildError::Invalid(problems));
    }
    let Some(token_url) = endpoints.token_url.clone() else {
        return Err(BuildError::Invalid(vec![format!(
            "{prefix}: authUrl is invalid"
        )]));
    };
    let checked = Checked {
        credentials,
        endpoints,
        token_url,
        options,
        previous_clients,
    };
    Ok(assemble(entry, id, cli_token, checked))
}

/// Resolves the client and the endpoints' references. A `%NAME%` without
/// a value disables the provider and names what to set.
fn resolve_credentials(
    entry: &Entry,
    lookup: Lookup<'_>,
    id: &str,
    cli_token: bool,
) -> Result<Credentials, BuildError> {
    let mut missing = Vec::new();
    // `%A|B%` takes the first that is set; the client secret then comes
    // from the same family of names as the client id.
    let mut choose = |value: Option<&str>, choice: Option<usize>| {
        substitute_choosing(value?, lookup.secrets, lookup.env, choice)
            .map_err(|mut names| missing.append(&mut names))
            .ok()
    };
    let client_id = choose(entry.client_id.as_deref(), None);
    let chosen = client_id.as_ref().and_then(|(_, c)| *c);
    let client_id = client_id.map(|(v, _)| v);
    let client_secret = match entry.client_secret.as_ref().map(Sensitive::expose) {
        // The login-token flow's client is public (Jottacloud's `jottacli`):
        // a secret reference without a value, as the C# service's file has
        // it, means no secret.
        Some(text) if cli_token => substitute_choosing(text, lookup.secrets, lookup.env, chosen)
            .ok()
            .map(|(v, _)| v),
        text => choose(text, chosen).map(|(v, _)| v),
    };
    let mut field = |value: Option<&str>| choose(value, None).map(|(v, _)| v);
    let auth_url = field(entry.auth_url.as_deref());
    let login_url = field(entry.login_url.as_deref());
    let revoke_url = field(entry.revoke_url.as_deref());
    let credential_gap = !missing.is_empty();
    let client_id = client_id
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    if credential_gap || client_id.is_empty() {
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            missing.push(format!("clientId of {id}"));
        }
        return Err(BuildError::NoCredentials(missing));
    }
    Ok(Credentials {
        client_id,
        client_secret: client_secret.unwrap_or_else(|| Sensitive::new("")),
        auth_url,
        login_url,
        revoke_url,
    })
}

/// Checks the endpoints and the refresh-token lifetime.
fn check_endpoints(
    entry: &Entry,
    credentials: &Credentials,
    cli_token: bool,
    prefix: &str,
    problems: &mut Vec<String>,
) -> Endpoints {
    let token_url = match &credentials.auth_url {
        Some(u) => check_url(prefix, "authUrl", u.expose(), problems),
        None => {
            problems.push(format!(
                "{prefix}: authUrl (the token endpoint) is required"
            ));
            None
        }
    };
    let authorize_url = credentials
        .login_url
        .as_ref()
        .and_then(|u| check_url(prefix, "loginUrl", u.expose(), problems));
    let revoke_url = credentials
        .revoke_url
        .as_ref()
        .and_then(|u| check_url(prefix, "revokeUrl", u.expose(), problems));
    // The store keeps a login's newest refresh token (and its revocation)
    // this long: a tiny value would drop rotations at once.
    if let Some(seconds) = entry.refresh_token_lifetime {
        if !REFRESH_TOKEN_LIFETIME_RANGE.contains(&seconds) {
            problems.push(format!(
                "{prefix}: refreshTokenLifetime must be {} to {} seconds (1 hour to 10 years)",
                REFRESH_TOKEN_LIFETIME_RANGE.start(),
                REFRESH_TOKEN_LIFETIME_RANGE.end()
            ));
        }
    }
    if authorize_url.is_none() && !cli_token && entry.login_url.is_none() {
        problems.push(format!(
            "{prefix}: loginUrl (the authorize endpoint) is required unless cliToken is set"
        ));
    }
    Endpoints {
        token_url,
        authorize_url,
        revoke_url,
    }
}

/// Checks rotation, rate limit, allowed hosts, group, aliases and
/// additional elements.
fn check_options(entry: &Entry, prefix: &str, problems: &mut Vec<String>) -> Options {
    let rotation = match entry.rotation.as_deref() {
        None => Rotation::None,
        Some(r) => Rotation::parse(r).unwrap_or_else(|| {
            problems.push(format!(
                "{prefix}: rotation must be none, rotating or single-use"
            ));
            Rotation::None
        }),
    };
    let rate_limit = entry.rate_limit.unwrap_or(RateLimit {
        per_second: 10,
        burst: 20,
    });
    if rate_limit.per_second == 0 || rate_limit.burst == 0 {
        problems.push(format!(
            "{prefix}: rateLimit perSecond and burst must be above 0"
        ));
    }
    let mut allowed_hosts = Vec::new();
    for entry in entry.allowed_hosts.iter().flatten() {
        match parse_host_port(entry) {
            Some((host, port)) => allowed_hosts.push(host_port(&host, port)),
            None => problems.push(format!(
                "{prefix}: allowedHosts entry {entry:?} is not a host name (with optional :port)"
            )),
        }
    }
    let aliases = entry.aliases.clone().unwrap_or_default();
    let group = entry.service_id.as_deref().map(str::to_ascii_uppercase);
    if let Some(g) = &group {
        if g.is_empty() || !g.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            problems.push(format!(
                "{prefix}: serviceId {g:?} is not a group name such as GD or MSGRAPH"
            ));
        }
    }
    for alias in &aliases {
        if !is_provider_id(alias) {
            problems.push(format!(
                "{prefix}: alias {alias:?} is not a lowercase provider id"
            ));
        }
    }
    let additional_elements = additional_elements(entry, prefix, problems);
    Options {
        rotation,
        rate_limit,
        allowed_hosts,
        aliases,
        group,
        additional_elements,
    }
}

/// `additionalElements`: strings, numbers and booleans, sent as text.
fn additional_elements(
    entry: &Entry,
    prefix: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in entry.additional_elements.clone().unwrap_or_default() {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            Value::Bool(_) | Value::Number(_) => {
                out.insert(k, v.to_string());
            }
            _ => problems.push(format!("{prefix}: additionalElements.{k} must be a string")),
        }
    }
    out
}

/// Everything checked, ready to become a provider.
struct Checked {
    credentials: Credentials,
    endpoints: Endpoints,
    token_url: Url,
    options: Options,
    previous_clients: Vec<PreviousClient>,
}

fn assemble(entry: Entry, id: String, cli_token: bool, checked: Checked) -> Provider {
    let Checked {
        credentials,
        endpoints,
        token_url,
        options,
        previous_clients,
    } = checked;
    Provider {
        name: entry.name.clone().unwrap_or_else(|| id.clone()),
        id,
        group: options.group,
        client_id: credentials.client_id,
        client_secret: credentials.client_secret,
        token_url,
        authorize_url: endpoints.authorize_url,
        revoke_url: endpoints.revoke_url,
        scope: entry.scope.unwrap_or_default(),
        extra_url: entry.extra_url.unwrap_or_default(),
        service_link: entry.service_link,
        deauth_link: entry.de_auth_link,
        brand_image: entry.brand_image,
        notes: entry.notes,
        hidden: entry.hidden.unwrap_or(false),
        no_state_for_token_request: entry.no_state_for_token_request.unwrap_or(false),
        no_redirect_uri_for_refresh: entry.no_redirect_uri_for_refresh_request.unwrap_or(false),
        cli_token,
        access_token_only: entry.access_token_only.unwrap_or(false),
        additional_elements: options.additional_elements,
        pkce: entry.pkce.unwrap_or(false),
        rotation: options.rotation,
        allowed_hosts: options.allowed_hosts,
        rate_limit: options.rate_limit,
        aliases: options.aliases,
        refresh_token_lifetime: Duration::from_secs(
            entry.refresh_token_lifetime.unwrap_or(90 * 24 * 3600),
        ),
        previous_clients,
    }
}
