//! The provider catalogue: the enabled registrations, looked up by id or
//! alias. The built-in entries, overridden or extended by `CONFIGFILE`
//! entries in the field names of the C# service's `config.json`, are read in
//! `entry`; `build` loads them all and applies `SERVICES`, `check` turns one
//! entry into a provider (its `previousClients` in `previous`, the endpoint
//! rule in `endpoint`); `model` holds what the rest of the broker sees of a
//! provider.

mod build;
mod check;
mod endpoint;
mod entry;
mod model;
mod previous;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

pub use build::CatalogueSource;
pub use model::{
    PreviousClient, Provider, RateLimit, Registration, Rotation, is_provider_id, push_client_auth,
};

/// The enabled providers, looked up by id or alias.
#[derive(Debug, Default)]
pub struct Catalogue {
    providers: Vec<Arc<Provider>>,
    by_name: HashMap<String, Arc<Provider>>,
    disabled: Vec<(String, String)>,
}

impl Catalogue {
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
