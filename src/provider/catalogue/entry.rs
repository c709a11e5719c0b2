//! Provider entries as written in JSON (the built-in list and `CONFIGFILE`,
//! in the field names of the C# service's `config.json`), and how an
//! override entry is merged into the one it names.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::model::{RateLimit, is_provider_id};
use crate::secret::Sensitive;
use crate::secret::read_file_or_inline;

const BUILTIN: &str = include_str!("../builtin.json");

/// A provider entry as written in JSON; every field optional so an entry
/// can override only what it names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Entry {
    pub(super) id: Option<String>,
    pub(super) service_id: Option<String>,
    pub(super) name: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<Sensitive>,
    pub(super) auth_url: Option<String>,
    pub(super) login_url: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) extra_url: Option<String>,
    pub(super) service_link: Option<String>,
    pub(super) de_auth_link: Option<String>,
    pub(super) brand_image: Option<String>,
    pub(super) notes: Option<String>,
    pub(super) hidden: Option<bool>,
    pub(super) no_state_for_token_request: Option<bool>,
    pub(super) no_redirect_uri_for_refresh_request: Option<bool>,
    pub(super) cli_token: Option<bool>,
    pub(super) access_token_only: Option<bool>,
    pub(super) additional_elements: Option<Map<String, Value>>,
    pub(super) revoke_url: Option<String>,
    pub(super) pkce: Option<bool>,
    pub(super) rotation: Option<String>,
    pub(super) allowed_hosts: Option<Vec<String>>,
    pub(super) rate_limit: Option<RateLimit>,
    pub(super) aliases: Option<Vec<String>>,
    pub(super) refresh_token_lifetime: Option<u64>,
    pub(super) previous_clients: Option<Vec<PreviousClientEntry>>,
    #[serde(flatten)]
    unknown: Map<String, Value>,
}

/// An earlier registration of a provider, as written in `previousClients`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PreviousClientEntry {
    pub(super) client_id: String,
    #[serde(default)]
    pub(super) client_secret: Option<Sensitive>,
    pub(super) auth_url: Option<String>,
    pub(super) revoke_url: Option<String>,
    #[serde(default)]
    pub(super) legacy: bool,
    #[serde(default)]
    pub(super) unlabelled: bool,
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
            refresh_token_lifetime,
            previous_clients
        );
    }
}

/// The entries shipped with the broker.
pub(super) fn builtin_entries() -> Result<Vec<Entry>, Vec<String>> {
    parse_entries(BUILTIN, "built-in catalogue")
}

/// `CONFIGFILE`: a path, `base64:...`, or inline JSON.
pub(super) fn read_configfile(spec: &str) -> Result<Vec<Entry>, Vec<String>> {
    let bytes = read_file_or_inline(spec).map_err(|e| vec![format!("CONFIGFILE: {e}")])?;
    let text =
        std::str::from_utf8(&bytes).map_err(|_| vec!["CONFIGFILE: not UTF-8 text".to_string()])?;
    parse_entries(text, "CONFIGFILE")
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
            Ok(entry) if entry.id.as_deref().is_some_and(is_provider_id) => {
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

/// Merges `CONFIGFILE` entries into the built-in ones: an entry with a
/// built-in id overrides the fields it names; a new id starts from the
/// defaults of its `serviceId` group (the group's first built-in entry,
/// e.g. `googledrive` for `GD`), as in the C# service, or from nothing.
pub(super) fn merge_entries(entries: &mut Vec<Entry>, overrides: Vec<Entry>) {
    let builtin = entries.clone();
    for over in overrides {
        if let Some(base) = entries.iter_mut().find(|e| e.id == over.id) {
            base.merge(over);
            continue;
        }
        let group_base = over.service_id.as_deref().and_then(|group| {
            builtin.iter().find(|e| {
                e.service_id
                    .as_deref()
                    .is_some_and(|g| g.eq_ignore_ascii_case(group))
            })
        });
        match group_base {
            Some(base) => {
                let mut entry = base.clone();
                entry.id = over.id.clone();
                // Aliases name one provider; the new entry has its own.
                entry.aliases = None;
                entry.merge(over);
                entries.push(entry);
            }
            None => entries.push(over),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_entries;
    use crate::provider::catalogue::{Catalogue, CatalogueSource, RateLimit};

    fn no_env(_: &str) -> Option<String> {
        None
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
        let cat = Catalogue::load(&source, &no_env).unwrap();
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
    fn a_new_entry_starts_from_its_group_defaults() {
        let config = r#"[
            {"id": "drive2", "serviceId": "gd", "name": "Drive, second", "clientId": "c2", "clientSecret": "s2"},
            {"id": "plain", "serviceId": "NOSUCH", "clientId": "c", "authUrl": "https://p/t", "loginUrl": "https://p/a"}
        ]"#;
        let source = CatalogueSource {
            configfile: Some(config),
            ..Default::default()
        };
        let cat = Catalogue::load(&source, &no_env).unwrap();
        let drive2 = cat.get("drive2").unwrap();
        assert_eq!(
            drive2.token_url.as_str(),
            "https://oauth2.googleapis.com/token"
        );
        assert_eq!(drive2.scope, "https://www.googleapis.com/auth/drive.file");
        assert_eq!(drive2.client_id, "c2");
        assert_eq!(drive2.group.as_deref(), Some("GD"));
        assert!(drive2.aliases.is_empty());
        let plain = cat.get("plain").unwrap();
        assert_eq!(plain.group.as_deref(), Some("NOSUCH"));
        assert_eq!(plain.token_url.as_str(), "https://p/t");
    }

    #[test]
    fn problems_never_quote_secret_values() {
        let source = CatalogueSource {
            configfile: Some(
                r#"[{"id": "x", "clientId": "c", "clientSecret": 12345678, "authUrl": "https://x/t", "loginUrl": "https://x/a"}]"#,
            ),
            ..Default::default()
        };
        let problems = Catalogue::load(&source, &no_env).unwrap_err();
        assert!(!problems.join(" ").contains("12345678"), "{problems:?}");
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let entries = parse_entries(r#"[{"id": "x", "clientSecret": "secret-cs"}]"#, "t").unwrap();
        assert!(!format!("{:?}", entries[0]).contains("secret-cs"));
    }
}
