//! Building the catalogue: the built-in entries merged with `CONFIGFILE`,
//! `%NAME%` secrets filled in, each entry checked and turned into a
//! provider, and `SERVICES` applied. Every problem is collected, so an
//! operator sees them all at once.

use super::Catalogue;
use super::check::{BuildError, build_provider};
use super::entry::{builtin_entries, merge_entries, read_configfile};
use super::previous::Lookup;
use crate::provider::secrets::{EnvLookup, Secrets};

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

        let lookup = Lookup {
            secrets: &secrets,
            env,
        };
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
            match build_provider(entry, lookup) {
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
