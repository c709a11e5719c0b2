//! Building the catalogue: the built-in entries merged with `CONFIGFILE`,
//! `%NAME%` secrets filled in, each entry checked and turned into a
//! provider, and `SERVICES` applied. Every problem is collected, so an
//! operator sees them all at once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::Catalogue;
use super::entry::{Entry, builtin_entries, merge_entries, read_configfile};
use super::model::{PreviousClient, Provider, RateLimit, Rotation, is_provider_id};
use crate::provider::hosts::{host_port, is_loopback, parse_host_port};
use crate::provider::secrets::{EnvLookup, Secrets, substitute_choosing};
use crate::secret::Sensitive;

/// Inputs to the catalogue besides the environment.
#[derive(Default)]
pub struct CatalogueSource<'a> {
    /// `CONFIGFILE`: a path, `base64:...`, or inline JSON.
    pub configfile: Option<&'a str>,
    /// `SECRETS`: a path, `base64:...`, or inline JSON.
    pub secrets: Option<&'a str>,
    /// `SERVICES`: comma-separated ids; empty means all with credentials.
    pub services: Option<&'a str>,
}

/// `SECRETS`, and a `CONFIGFILE` given inline, may hold client secrets:
/// `Debug` says only whether each is given.
impl std::fmt::Debug for CatalogueSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let given = |v: Option<&str>| v.map(|_| "[given]");
        f.debug_struct("CatalogueSource")
            .field("configfile", &given(self.configfile))
            .field("secrets", &given(self.secrets))
            .field("services", &self.services)
            .finish()
    }
}

impl Catalogue {
    /// Builds the catalogue or returns every problem found.
    pub fn load(source: &CatalogueSource<'_>, env: EnvLookup<'_>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let secrets = Secrets::load(source.secrets).unwrap_or_else(|e| {
            problems.push(e);
            Secrets::default()
        });
        let mut entries = builtin_entries()?;
        if let Some(spec) = source.configfile.map(str::trim).filter(|s| !s.is_empty()) {
            match read_configfile(spec) {
                Ok(overrides) => merge_entries(&mut entries, overrides),
                Err(mut e) => problems.append(&mut e),
            }
        }
        // SERVICES names ids, aliases or serviceId groups, in any case.
        let wanted: Vec<String> = source
            .services
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        let mut matched = vec![false; wanted.len()];

        let mut catalogue = Catalogue::default();
        for entry in entries {
            let id = entry.id.clone().unwrap_or_default();
            let names: Vec<String> = std::iter::once(&id)
                .chain(entry.aliases.iter().flatten())
                .chain(entry.service_id.iter())
                .map(|n| n.to_ascii_lowercase())
                .collect();
            let mut selected_by = None;
            for (i, w) in wanted.iter().enumerate() {
                if names.contains(w) {
                    matched[i] = true;
                    selected_by.get_or_insert_with(|| w.clone());
                }
            }
            let selected = wanted.is_empty() || selected_by.is_some();
            if let Some(reason) = entry.service_id.as_deref().and_then(retired_group) {
                // Accepted as the C# service's file has it, never started.
                catalogue.disabled.push((id, reason.to_string()));
                continue;
            }
            match build_provider(entry, &secrets, env) {
                Ok(provider) if selected => catalogue.add(provider, &mut problems),
                Ok(_) => catalogue
                    .disabled
                    .push((id, "not listed in SERVICES".into())),
                Err(BuildError::NoCredentials(names)) => {
                    let reason = format!("no credentials (set {})", names.join(", "));
                    if let Some(by) = &selected_by {
                        problems.push(format!("SERVICES names {by}, but {id} has {reason}"));
                    }
                    catalogue.disabled.push((id, reason));
                }
                Err(BuildError::Invalid(mut e)) => problems.append(&mut e),
            }
        }
        for (w, found) in wanted.iter().zip(&matched) {
            if !found {
                problems.push(format!(
                    "SERVICES names {w}, which is not a known provider or serviceId group"
                ));
            }
        }
        if problems.is_empty() {
            Ok(catalogue)
        } else {
            Err(problems)
        }
    }
}

/// `serviceId` groups of APIs the providers have shut down: entries of
/// these groups load (the C# service's shipped file has one) and stay off.
const RETIRED_GROUPS: &[(&str, &str)] = &[(
    "WL",
    "retired: Live Connect (serviceId WL) was shut down by Microsoft; OneDrive logins use onedrivev2",
)];

/// Seconds a provider's `refreshTokenLifetime` may be.
const REFRESH_TOKEN_LIFETIME_RANGE: std::ops::RangeInclusive<u64> = 3600..=10 * 365 * 24 * 3600;
fn retired_group(group: &str) -> Option<&'static str> {
    RETIRED_GROUPS
        .iter()
        .find(|(g, _)| g.eq_ignore_ascii_case(group))
        .map(|(_, reason)| *reason)
}

enum BuildError {
    NoCredentials(Vec<String>),
    Invalid(Vec<String>),
}

fn build_provider(
    entry: Entry,
    secrets: &Secrets,
    env: EnvLookup<'_>,
) -> Result<Provider, BuildError> {
    let id = entry.id.clone().unwrap_or_default();
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    let cli_token = entry.cli_token.unwrap_or(false);
    // A %NAME% without a value disables the provider and names what to set.
    // `%A|B%` takes the first that is set; the client secret then comes
    // from the same family of names as the client id.
    let mut choose = |value: Option<&str>, choice: Option<usize>| {
        substitute_choosing(value?, secrets, env, choice)
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
        Some(text) if cli_token => substitute_choosing(text, secrets, env, chosen)
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
    let prefix = format!("provider {id}");
    let token_url = match auth_url {
        Some(u) => check_url(&prefix, "authUrl", u.expose(), &mut problems),
        None => {
            problems.push(format!(
                "{prefix}: authUrl (the token endpoint) is required"
            ));
            None
        }
    };
    let authorize_url =
        login_url.and_then(|u| check_url(&prefix, "loginUrl", u.expose(), &mut problems));
    let revoke_url =
        revoke_url.and_then(|u| check_url(&prefix, "revokeUrl", u.expose(), &mut problems));
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
    let mut additional_elements = BTreeMap::new();
    for (k, v) in entry.additional_elements.clone().unwrap_or_default() {
        match v {
            Value::String(s) => {
                additional_elements.insert(k, s);
            }
            Value::Bool(_) | Value::Number(_) => {
                additional_elements.insert(k, v.to_string());
            }
            _ => problems.push(format!("{prefix}: additionalElements.{k} must be a string")),
        }
    }
    let client_secret = client_secret.unwrap_or_else(|| Sensitive::new(""));
    let previous_clients = token_url
        .as_ref()
        .map(|token_url| {
            previous_clients(
                &entry,
                &client_id,
                token_url,
                revoke_url.as_ref(),
                secrets,
                env,
                &prefix,
                &mut problems,
            )
        })
        .unwrap_or_default();
    if !problems.is_empty() {
        return Err(BuildError::Invalid(problems));
    }
    let Some(token_url) = token_url else {
        return Err(BuildError::Invalid(vec![format!(
            "{prefix}: authUrl is invalid"
        )]));
    };
    Ok(Provider {
        name: entry.name.clone().unwrap_or_else(|| id.clone()),
        id,
        group,
        client_id,
        client_secret,
        token_url,
        authorize_url,
        revoke_url,
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
        additional_elements,
        pkce: entry.pkce.unwrap_or(false),
        rotation,
        allowed_hosts,
        rate_limit,
        aliases,
        refresh_token_lifetime: Duration::from_secs(
            entry.refresh_token_lifetime.unwrap_or(90 * 24 * 3600),
        ),
        previous_clients,
    })
}

/// `previousClients`: each needs a client id other than the current one's
/// and every other's, its secrets set (the operator listed it on purpose,
/// so a missing one is a problem, not a reason to disable the provider),
/// and at most one is `legacy`. Endpoints default to the provider's.
#[allow(clippy::too_many_arguments)]
fn previous_clients(
    entry: &Entry,
    current_id: &str,
    token_url: &Url,
    revoke_url: Option<&Url>,
    secrets: &Secrets,
    env: EnvLookup<'_>,
    prefix: &str,
    problems: &mut Vec<String>,
) -> Vec<PreviousClient> {
    let mut out: Vec<PreviousClient> = Vec::new();
    for (i, c) in entry.previous_clients.iter().flatten().enumerate() {
        let at = format!("{prefix}: previousClients[{i}]");
        let mut resolve = |field: &str, text: &str| -> Option<Sensitive> {
            substitute_choosing(text, secrets, env, None)
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
        if client_id == current_id || out.iter().any(|p| p.client_id == client_id) {
            problems.push(format!(
                "{at}: the client id is already the provider's own or another previous client's"
            ));
            continue;
        }
        let token_url = match own_token_url {
            None => token_url.clone(),
            Some(Some(u)) => match check_url(&at, "authUrl", u.expose(), problems) {
                Some(u) => u,
                None => continue,
            },
            Some(None) => continue,
        };
        let revoke_url = match own_revoke_url {
            None => revoke_url.cloned(),
            Some(Some(u)) => check_url(&at, "revokeUrl", u.expose(), problems),
            Some(None) => None,
        };
        out.push(PreviousClient {
            client_id,
            client_secret,
            token_url,
            revoke_url,
            legacy: c.legacy,
        });
    }
    if out.iter().filter(|c| c.legacy).count() > 1 {
        problems.push(format!(
            "{prefix}: only one of previousClients may be marked legacy"
        ));
    }
    out
}

/// Provider endpoints must be https; plain http only on loopback (tests,
/// demo mode).
fn check_url(prefix: &str, field: &str, value: &str, problems: &mut Vec<String>) -> Option<Url> {
    match Url::parse(value) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some() => Some(url),
        Ok(url) if url.scheme() == "http" && is_loopback(&url) => Some(url),
        Ok(_) => {
            problems.push(format!("{prefix}: {field} must be an https URL"));
            None
        }
        Err(_) => {
            problems.push(format!("{prefix}: {field} is not a valid URL"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn builtins_without_credentials_are_disabled_with_a_reason() {
        let cat = Catalogue::load(&CatalogueSource::default(), &env_with(&[])).unwrap();
        // Jottacloud's CLI client needs no secret.
        assert_eq!(
            cat.providers()
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>(),
            ["jottacloud"]
        );
        let (_, reason) = cat
            .disabled()
            .iter()
            .find(|(id, _)| id == "googledrive")
            .unwrap();
        assert!(reason.contains("GD_CLIENT_ID"), "{reason}");
    }

    #[test]
    fn credentials_from_env_enable_builtins_and_aliases_resolve() {
        let env = env_with(&[
            ("GD_CLIENT_ID", "gid"),
            ("GD_CLIENT_SECRET", "gsecret"),
            ("BOX_CLIENT_ID", "bid"),
            ("BOX_CLIENT_SECRET", "bsecret"),
        ]);
        let cat = Catalogue::load(&CatalogueSource::default(), &env).unwrap();
        let drive = cat.get("googledrive").unwrap();
        assert_eq!(drive.client_id, "gid");
        assert_eq!(drive.client_secret.expose(), "gsecret");
        assert!(drive.pkce);
        assert_eq!(cat.get("box").unwrap().id, "box.com");
        assert_eq!(cat.get("box.com").unwrap().rotation, Rotation::SingleUse);
        assert!(cat.get("dropbox").is_none());
    }

    #[test]
    fn services_filters_and_every_problem_is_reported() {
        let source = CatalogueSource {
            configfile: Some(
                r#"[{"id": "a", "clientId": "c", "authUrl": "http://example.com/t", "loginUrl": "ftp://x"},
                    {"id": "b", "clientId": "c", "authUrl": "https://b/t", "loginUrl": "https://b/a", "rotation": "sometimes", "allowedHosts": ["Bad Host"]}]"#,
            ),
            secrets: None,
            services: Some("a,b,nosuch,googledrive"),
        };
        let problems = Catalogue::load(&source, &env_with(&[])).unwrap_err();
        let all = problems.join("\n");
        for needle in [
            "authUrl must be an https",
            "loginUrl must be an https",
            "rotation",
            "allowedHosts",
            "nosuch",
            "googledrive",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }

    #[test]
    fn a_refresh_token_lifetime_outside_its_range_is_a_problem() {
        for (lifetime, ok) in [(0, false), (3599, false), (3600, true), (u64::MAX, false)] {
            let config = format!(
                r#"[{{"id": "a", "clientId": "c", "authUrl": "https://a/t", "loginUrl": "https://a/a", "refreshTokenLifetime": {lifetime}}}]"#
            );
            let source = CatalogueSource {
                configfile: Some(&config),
                secrets: None,
                services: Some("a"),
            };
            let loaded = Catalogue::load(&source, &env_with(&[]));
            assert_eq!(loaded.is_ok(), ok, "{lifetime}");
            if let Err(problems) = loaded {
                assert!(problems[0].contains("refreshTokenLifetime"), "{problems:?}");
            }
        }
    }

    #[test]
    fn services_selects_a_subset() {
        let env = env_with(&[("GD_CLIENT_ID", "g"), ("GD_CLIENT_SECRET", "s")]);
        let source = CatalogueSource {
            services: Some("googledocs"),
            ..Default::default()
        };
        let cat = Catalogue::load(&source, &env).unwrap();
        assert!(cat.get("googledocs").is_some());
        assert!(cat.get("googledrive").is_none());
        assert!(cat.get("jottacloud").is_none());
    }

    fn ids(cat: &Catalogue) -> Vec<&str> {
        cat.providers().iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn services_matches_groups_ids_and_aliases_in_any_case() {
        let env = env_with(&[
            ("GD_CLIENT_ID", "g"),
            ("GD_CLIENT_SECRET", "s"),
            ("DROPBOX_CLIENT_ID", "d"),
            ("DROPBOX_CLIENT_SECRET", "s"),
            ("BOX_CLIENT_ID", "b"),
            ("BOX_CLIENT_SECRET", "s"),
        ]);
        let load = |services: &'static str| {
            Catalogue::load(
                &CatalogueSource {
                    services: Some(services),
                    ..Default::default()
                },
                &env,
            )
        };
        let cat = load("gd,DropBox").unwrap();
        assert_eq!(ids(&cat), ["googledrive", "googledocs", "dropbox"]);
        assert_eq!(cat.get("googledocs").unwrap().group.as_deref(), Some("GD"));
        assert!(cat.get("gd").is_none(), "a group is not an alias");
        assert_eq!(ids(&load("BOX").unwrap()), ["box.com"]);
        assert_eq!(ids(&load("box").unwrap()), ["box.com"]);
        let problems = load("gd,nosuch").unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("nosuch")),
            "{problems:?}"
        );
        let problems = load("msgraph").unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("MSGRAPH_CLIENT_ID")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_csharp_secret_names_are_read_and_todays_still_work() {
        let csharp = env_with(&[
            ("GD_CLIENT_ID", "gd-id"),
            ("GD_CLIENT_SECRET", "gd-s"),
            ("GCS_CLIENT_ID", "gcs-id"),
            ("GCS_CLIENT_SECRET", "gcs-s"),
            ("MSGRAPH_CLIENT_ID", "ms-id"),
            ("MSGRAPH_CLIENT_SECRET", "ms-s"),
            ("MS_CLIENT_ID", "old-ms-id"),
            ("MS_CLIENT_SECRET", "old-ms-s"),
        ]);
        let cat = Catalogue::load(&CatalogueSource::default(), &csharp).unwrap();
        let gcs = cat.get("gcs").unwrap();
        assert_eq!(
            (gcs.client_id.as_str(), gcs.client_secret.expose()),
            ("gcs-id", "gcs-s")
        );
        let ms = cat.get("sharepoint").unwrap();
        assert_eq!(
            (ms.client_id.as_str(), ms.client_secret.expose()),
            ("ms-id", "ms-s")
        );

        let today = env_with(&[
            ("GD_CLIENT_ID", "gd-id"),
            ("GD_CLIENT_SECRET", "gd-s"),
            ("GCS_CLIENT_SECRET", "stray"),
            ("MS_CLIENT_ID", "old-ms-id"),
            ("MS_CLIENT_SECRET", "old-ms-s"),
        ]);
        let cat = Catalogue::load(&CatalogueSource::default(), &today).unwrap();
        let gcs = cat.get("gcs").unwrap();
        assert_eq!(
            (gcs.client_id.as_str(), gcs.client_secret.expose()),
            ("gd-id", "gd-s"),
            "the secret follows the client id's family"
        );
        let ms = cat.get("onedrivev2").unwrap();
        assert_eq!(
            (ms.client_id.as_str(), ms.client_secret.expose()),
            ("old-ms-id", "old-ms-s")
        );
    }

    #[test]
    fn a_retired_group_loads_disabled_with_the_reason() {
        let source = CatalogueSource {
            configfile: Some(
                r#"[{"id": "onedrive", "serviceId": "WL", "name": "Microsoft OneDrive (Live Connect API)",
                     "clientId": "%WL_CLIENT_ID%", "clientSecret": "%WL_CLIENT_SECRET%"},
                    {"id": "jottacloud", "serviceId": "JOTTA", "clientId": "jottacli",
                     "clientSecret": "%JOTTA_CLIENT_SECRET%"}]"#,
            ),
            services: Some("wl,jotta"),
            ..Default::default()
        };
        let cat = Catalogue::load(&source, &env_with(&[])).unwrap();
        let (_, reason) = cat
            .disabled()
            .iter()
            .find(|(id, _)| id == "onedrive")
            .unwrap();
        assert!(
            reason.contains("retired") && reason.contains("WL"),
            "{reason}"
        );
        let jotta = cat.get("jottacloud").unwrap();
        assert!(
            jotta.client_secret.is_empty(),
            "a public client needs no secret"
        );
        assert_eq!(ids(&cat), ["jottacloud"]);
    }

    #[test]
    fn previous_clients_are_registrations_an_authid_can_name() {
        let source = CatalogueSource {
            configfile: Some(
                r#"[{"id": "onedrivev2", "previousClients": [
                        {"clientId": "%OLD_MS_ID%", "clientSecret": "%OLD_MS_SECRET%", "legacy": true},
                        {"clientId": "older", "clientSecret": "s", "authUrl": "https://login.live.com/oauth20_token.srf", "revokeUrl": "https://r.example/revoke"}]}]"#,
            ),
            secrets: Some(r#"{"OLD_MS_ID": "old-id", "OLD_MS_SECRET": "old-secret"}"#),
            services: None,
        };
        let env = env_with(&[
            ("MSGRAPH_CLIENT_ID", "new-id"),
            ("MSGRAPH_CLIENT_SECRET", "new-s"),
        ]);
        let cat = Catalogue::load(&source, &env).unwrap();
        let ms = cat.get("onedrivev2").unwrap();
        let current = ms.registration(None).unwrap();
        assert_eq!((current.client_id, current.previous), ("new-id", false));
        assert_eq!(ms.registration(Some("new-id")).unwrap().client_id, "new-id");
        let old = ms.registration(Some("old-id")).unwrap();
        assert!(old.previous);
        assert_eq!(old.client_secret.expose(), "old-secret");
        assert_eq!(
            old.token_url, &ms.token_url,
            "the provider's endpoint by default"
        );
        let older = ms.registration(Some("older")).unwrap();
        assert_eq!(
            older.token_url.as_str(),
            "https://login.live.com/oauth20_token.srf"
        );
        assert_eq!(
            older.revoke_url.unwrap().as_str(),
            "https://r.example/revoke"
        );
        assert!(ms.registration(Some("unknown")).is_none());
        assert_eq!(ms.legacy_client().unwrap().client_id, "old-id");
        let form = ms.refresh_form_with(&old, &Sensitive::new("rt"), "https://b/logged-in");
        let sent: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_ref(), v.expose())).collect();
        assert!(
            sent.contains(&("client_id", "old-id"))
                && sent.contains(&("client_secret", "old-secret"))
        );
        assert!(!format!("{:?}", ms.previous_clients).contains("old-secret"));
    }

    #[test]
    fn previous_clients_problems_are_reported() {
        let source = CatalogueSource {
            configfile: Some(
                r#"[{"id": "x", "clientId": "c", "authUrl": "https://x/t", "loginUrl": "https://x/a", "previousClients": [
                        {"clientId": "c"},
                        {"clientId": "p1", "legacy": true},
                        {"clientId": "p2", "legacy": true, "clientSecret": "%NOT_SET%"},
                        {"clientId": "p3", "legacy": true, "authUrl": "http://x.example/t"},
                        {"clientId": "p4", "legacy": true}]}]"#,
            ),
            ..Default::default()
        };
        let all = Catalogue::load(&source, &env_with(&[]))
            .unwrap_err()
            .join("\n");
        for needle in [
            "previousClients[0]: the client id is already",
            "previousClients[2]: clientSecret needs NOT_SET",
            "previousClients[3]: authUrl must be an https",
            "only one of previousClients may be marked legacy",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        let typo = CatalogueSource {
            configfile: Some(
                r#"[{"id": "x", "clientId": "c", "authUrl": "https://x/t", "loginUrl": "https://x/a",
                     "previousClients": [{"clientId": "p", "surprise": 1}]}]"#,
            ),
            ..Default::default()
        };
        let problems = Catalogue::load(&typo, &env_with(&[])).unwrap_err();
        assert!(problems[0].contains("surprise"), "{problems:?}");
    }

    #[test]
    fn duplicate_alias_is_a_problem() {
        let source = CatalogueSource {
            configfile: Some(
                r#"[{"id": "x", "clientId": "c", "authUrl": "https://x/t", "loginUrl": "https://x/a", "aliases": ["jottacloud"]}]"#,
            ),
            ..Default::default()
        };
        let problems = Catalogue::load(&source, &env_with(&[])).unwrap_err();
        assert!(problems[0].contains("already used"), "{problems:?}");
    }

    #[test]
    fn debug_hides_inline_secrets_and_config() {
        let source = CatalogueSource {
            configfile: Some(r#"[{"id": "x", "clientSecret": "secret-cs"}]"#),
            secrets: Some(r#"{"X_SECRET": "secret-xs"}"#),
            services: None,
        };
        assert!(!format!("{source:?}").contains("secret-"));
    }

    #[test]
    fn allowed_hosts_are_kept_in_lowercase() {
        let source = CatalogueSource {
            configfile: Some(
                r#"[{"id": "x", "clientId": "c", "authUrl": "https://x/t", "loginUrl": "https://x/a", "allowedHosts": ["API.Example.com", "eu.example.com:8443"]}]"#,
            ),
            ..Default::default()
        };
        let cat = Catalogue::load(&source, &env_with(&[])).unwrap();
        let hosts = &cat.get("x").unwrap().allowed_hosts;
        assert_eq!(hosts, &["api.example.com", "eu.example.com:8443"]);
    }
}
