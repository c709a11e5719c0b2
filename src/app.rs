//! The application core shared by every request: keys, clock and settings.
//! Free of HTTP types; handlers call into it.

use std::sync::Arc;

use crate::authid::KeyringHandle;
use crate::authid::keydir::KeySource;
use crate::clock::SharedClock;

pub struct App {
    pub keyring: KeyringHandle,
    /// Where keys are reloaded from; `None` for an ephemeral keyring.
    pub key_source: Option<KeySource>,
    pub clock: SharedClock,
}

impl App {
    /// Reloads keys from their source. A failed reload keeps the current
    /// keyring and returns why.
    pub fn reload_keys(&self) -> Result<(), Vec<String>> {
        let Some(source) = &self.key_source else {
            return Ok(());
        };
        let keyring = source.load()?;
        let primary = keyring.primary().kid().to_string();
        let count = keyring.len();
        self.keyring.replace(keyring);
        tracing::info!(primary = %primary, keys = count, "keys reloaded");
        Ok(())
    }
}

pub type SharedApp = Arc<App>;
