//! The provider catalogue: built-in registrations, overridden or extended by
//! `CONFIGFILE` entries that use the field names of the C# service's
//! `config.json`, with `%NAME%` secrets filled in and `SERVICES` applied.
//! Every problem is collected, so an operator sees them all at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use super::client::FormField;
use super::secrets::{EnvLookup, Secrets, read_file_or_inline, substitute};
use crate::authid::is_service_id;
use crate::secret::Sensitive;

const BUILTIN: &str = include_str!("builtin.json");

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
    fn parse(s: &str) -> Option<Self> {
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

/// A provider entry as written in JSON; every field optional so an entry
/// can override only what it names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    id: Option<String>,
    service_id: Option<String>,
    name: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    auth_url: Option<String>,
    login_url: Option<String>,
    scope: Option<String>,
    extra_url: Option<String>,
    service_link: Option<String>,
    de_auth_link: Option<String>,
    brand_image: Option<String>,
    notes: Option<String>,
    hidden: Option<bool>,
    no_state_for_token_request: Option<bool>,
    no_redirect_uri_for_refresh_request: Option<bool>,
    cli_token: Option<bool>,
    access_token_only: Option<bool>,
    additional_elements: Option<Map<String, Value>>,
    revoke_url: Option<String>,
    pkce: Option<bool>,
    rotation: Option<String>,
    allowed_hosts: Option<Vec<String>>,
    rate_limit: Option<RateLimit>,
    aliases: Option<Vec<String>>,
    refresh_token_lifetime: Option<u64>,
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

macro_rules! merge_fields {
    ($base:ident, $over:ident, $($f:ident),*) => {
        $( if $over.$f.is_some() { $base.$f = $over.$f; } )*
    };
}

impl Entry {
    fn merge(&mut self, over: Entry) {
        merge_fields!(
            self,
            over,
            service_id,
            name,
            client_id,
            client_secret,
            auth_url,
            login_url,
            scope,
            extra_url,
            service_link,
            de_auth_link,
            brand_image,
            notes,
            hidden,
            no_state_for_token_request,
            no_redirect_uri_for_refresh_request,
            cli_token,
            access_token_only,
            additional_elements,
            revoke_url,
            pkce,
            rotation,
            allowed_hosts,
            rate_limit,
            aliases,
            refresh_token_lifetime
        );
    }
}

/// Inputs to the catalogue besides the environment.
#[derive(Debug, Default)]
pub struct CatalogueSource<'a> {
    /// `CONFIGFILE`: a path, `base64:...`, or inline JSON.
    pub configfile: Option<&'a str>,
    /// `SECRETS`: a path, `base64:...`, or inline JSON.
    pub secrets: Option<&'a str>,
    /// `SERVICES`: comma-separated ids; empty means all with credentials.
    pub services: Option<&'a str>,
}

/// The enabled providers, looked up by id or alias.
#[derive(Debug, Default)]
pub struct Catalogue {
    providers: Vec<Arc<Provider>>,
    by_name: HashMap<String, Arc<Provider>>,
    disabled: Vec<(String, String)>,
}

impl Catalogue {
    /// Builds the catalogue or returns every problem found.
    pub fn load(source: &CatalogueSource<'_>, env: EnvLookup<'_>) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let secrets = Secrets::load(source.secrets).unwrap_or_else(|e| {
            problems.push(e);
            Secrets::default()
        });
        let mut entries = parse_entries(BUILTIN, "built-in catalogue")?;
        if let Some(spec) = source.configfile.map(str::trim).filter(|s| !s.is_empty()) {
            match read_file_or_inline(spec) {
                Ok(bytes) => match std::str::from_utf8(&bytes) {
                    Ok(text) => match parse_entries(text, "CONFIGFILE") {
                        Ok(overrides) => merge_entries(&mut entries, overrides),
                        Err(mut e) => problems.append(&mut e),
                    },
                    Err(_) => problems.push("CONFIGFILE: not UTF-8 text".into()),
                },
                Err(e) => problems.push(format!("CONFIGFILE: {e}")),
            }
        }
        let wanted: Vec<String> = source
            .services
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();

        let mut catalogue = Catalogue::default();
        for entry in entries {
            let id = entry.id.clone().unwrap_or_default();
            let selected = wanted.is_empty() || wanted.contains(&id);
            match build_provider(entry, &secrets, env) {
                Ok(provider) if selected => catalogue.add(provider, &mut problems),
                Ok(_) => catalogue
                    .disabled
                    .push((id, "not listed in SERVICES".into())),
                Err(BuildError::NoCredentials(names)) => {
                    let reason = format!("no credentials (set {})", names.join(", "));
                    if !wanted.is_empty() && selected {
                        problems.push(format!("SERVICES names {id}, but it has {reason}"));
                    }
                    catalogue.disabled.push((id, reason));
                }
                Err(BuildError::Invalid(mut e)) => problems.append(&mut e),
            }
        }
        for id in &wanted {
            if !catalogue.by_name.contains_key(id)
                && !catalogue.disabled.iter().any(|(d, _)| d == id)
            {
                problems.push(format!(
                    "SERVICES names {id}, which is not a known provider"
                ));
            }
        }
        if problems.is_empty() {
            Ok(catalogue)
        } else {
            Err(problems)
        }
    }

    fn add(&mut self, provider: Provider, problems: &mut Vec<String>) {
        let provider = Arc::new(provider);
        for name in std::iter::once(&provider.id).chain(&provider.aliases) {
            if self.by_name.contains_key(name) {
                problems.push(format!(
                    "provider {}: the id or alias {name} is already used by another provider",
                    provider.id
                ));
            } else {
                self.by_name.insert(name.clone(), Arc::clone(&provider));
            }
        }
        self.providers.push(provider);
    }

    /// A catalogue of given providers (tests, demo mode).
    pub fn from_providers(providers: Vec<Provider>) -> Result<Self, Vec<String>> {
        let mut catalogue = Catalogue::default();
        let mut problems = Vec::new();
        for p in providers {
            catalogue.add(p, &mut problems);
        }
        if problems.is_empty() {
            Ok(catalogue)
        } else {
            Err(problems)
        }
    }

    /// Finds an enabled provider by id or alias.
    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }

    /// Enabled providers, in catalogue order.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// Providers that are known but off, with the reason.
    pub fn disabled(&self) -> &[(String, String)] {
        &self.disabled
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

fn parse_entries(text: &str, what: &str) -> Result<Vec<Entry>, Vec<String>> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| vec![format!("{what}: not valid JSON ({e})")])?;
    // Accept a bare array, or an object holding the array.
    let list = match value {
        Value::Array(list) => list,
        Value::Object(mut map) => {
            match ["providers", "Providers", "services", "Services"]
                .iter()
                .find_map(|k| map.remove(*k))
            {
                Some(Value::Array(list)) => list,
                _ => {
                    return Err(vec![format!(
                        "{what}: expected an array of provider entries"
                    )]);
                }
            }
        }
        _ => {
            return Err(vec![format!(
                "{what}: expected an array of provider entries"
            )]);
        }
    };
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        let Value::Object(map) = item else {
            problems.push(format!("{what}: entry #{i} is not an object"));
            continue;
        };
        // Accept PascalCase field names too (as serialized by .NET).
        let map: Map<String, Value> = map.into_iter().map(|(k, v)| (camel_case(&k), v)).collect();
        match serde_json::from_value::<Entry>(Value::Object(map)) {
            Ok(entry) if entry.id.as_deref().is_some_and(is_service_id) => {
                for name in entry.unknown.keys().filter(|k| !k.starts_with("comment")) {
                    tracing::warn!(
                        provider = entry.id.as_deref().unwrap_or(""),
                        field = %name,
                        "{what}: unknown field ignored"
                    );
                }
                entries.push(entry);
            }
            Ok(_) => problems.push(format!(
                "{what}: entry #{i}: \"id\" is missing or not a lowercase provider id"
            )),
            Err(e) => problems.push(format!("{what}: entry #{i}: {}", redact_serde(&e))),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// serde's messages quote offending values, which may be secrets: keep only
/// the part naming the field or type.
fn redact_serde(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(": ") {
        Some(_) if text.contains("invalid type") => {
            format!(
                "a field has the wrong type ({})",
                text.split(", expected").nth(1).unwrap_or("").trim()
            )
        }
        _ => text.split(" at line").next().unwrap_or(&text).to_string(),
    }
}

fn camel_case(key: &str) -> String {
    let mut chars = key.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn merge_entries(entries: &mut Vec<Entry>, overrides: Vec<Entry>) {
    for over in overrides {
        match entries.iter_mut().find(|e| e.id == over.id) {
            Some(base) => base.merge(over),
            None => entries.push(over),
        }
    }
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
    // A %NAME% without a value disables the provider and names what to set.
    let mut field = |value: Option<&String>| -> Option<Sensitive> {
        substitute(value?, secrets, env)
            .map_err(|mut names| missing.append(&mut names))
            .ok()
    };
    let client_id = field(entry.client_id.as_ref());
    let client_secret = field(entry.client_secret.as_ref());
    let auth_url = field(entry.auth_url.as_ref());
    let login_url = field(entry.login_url.as_ref());
    let revoke_url = field(entry.revoke_url.as_ref());
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
    let cli_token = entry.cli_token.unwrap_or(false);
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
    let allowed_hosts = entry.allowed_hosts.clone().unwrap_or_default();
    for host in &allowed_hosts {
        if !is_host_entry(host) {
            problems.push(format!(
                "{prefix}: allowedHosts entry {host:?} is not a host name (with optional :port)"
            ));
        }
    }
    let aliases = entry
        .aliases
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(entry.service_id.clone().filter(|s| s != &id))
        .collect::<Vec<_>>();
    for alias in &aliases {
        if !is_service_id(alias) {
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

pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn is_host_entry(entry: &str) -> bool {
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (entry, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok())
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
    fn configfile_overrides_only_named_fields_and_adds_providers() {
        let config = r#"[
            {"id": "dropbox", "clientId": "%DB_ID%", "clientSecret": "%DB_SECRET%", "scope": "files.content.write"},
            {"Id": "custom", "Name": "Custom", "ClientId": "c", "ClientSecret": "s",
             "AuthUrl": "http://127.0.0.1:9/token", "LoginUrl": "http://127.0.0.1:9/authorize",
             "rateLimit": {"perSecond": 1, "burst": 2}, "additionalElements": {"audience": "x"}}
        ]"#;
        let source = CatalogueSource {
            configfile: Some(config),
            secrets: Some(r#"{"DB_ID": "dbid", "DB_SECRET": "dbsecret"}"#),
            services: None,
        };
        let cat = Catalogue::load(&source, &env_with(&[])).unwrap();
        let dropbox = cat.get("dropbox").unwrap();
        assert_eq!(dropbox.client_id, "dbid");
        assert_eq!(dropbox.scope, "files.content.write");
        assert!(
            dropbox.no_redirect_uri_for_refresh,
            "kept from the built-in entry"
        );
        assert_eq!(
            dropbox.token_url.as_str(),
            "https://api.dropboxapi.com/oauth2/token"
        );
        let custom = cat.get("custom").unwrap();
        assert_eq!(custom.name, "Custom");
        assert_eq!(
            custom.rate_limit,
            RateLimit {
                per_second: 1,
                burst: 2
            }
        );
        assert_eq!(custom.additional_elements["audience"], "x");
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

    #[test]
    fn problems_never_quote_secret_values() {
        let source = CatalogueSource {
            configfile: Some(
                r#"[{"id": "x", "clientId": "c", "clientSecret": 12345678, "authUrl": "https://x/t", "loginUrl": "https://x/a"}]"#,
            ),
            ..Default::default()
        };
        let problems = Catalogue::load(&source, &env_with(&[])).unwrap_err();
        assert!(!problems.join(" ").contains("12345678"), "{problems:?}");
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
}
