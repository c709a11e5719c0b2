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
use super::model::{Provider, RateLimit, Rotation, is_provider_id};
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
    })
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
