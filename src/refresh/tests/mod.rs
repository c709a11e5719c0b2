//! Refresher behaviour against a scripted token client, by topic; the
//! fixture every topic shares.

mod carry_over;
mod embedded;
mod ending;
mod limits;
mod refreshing;
mod shared_store;

use std::sync::Arc;

use super::records::{LoginRecords, SharedToken};
use super::*;
use crate::authid::{Claims, Keyring, ServerKey};
use crate::clock::{Clock, ManualClock};
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::outage::StoreOutage;
use crate::provider::{Protection, Refusal, UpstreamError};
use crate::secret::Sensitive;
use crate::store::Store;
use crate::testing::ScriptedClient;

impl Refresher {
    async fn refresh_for(&self, text: &str) -> Result<RefreshAnswer, RefreshError> {
        self.refresh(text, None).await
    }
}

pub(super) struct Fixture {
    refresher: Refresher,
    store: Arc<dyn Store>,
    client: Arc<ScriptedClient>,
    keyring: Arc<KeyringHandle>,
    clock: ManualClock,
}

pub(super) fn fixture() -> Fixture {
    fixture_on(Arc::new(crate::store::MemoryStore::default()))
}

/// The fixture on a store of the test's choosing.
pub(super) fn fixture_on(store: Arc<dyn Store>) -> Fixture {
    let catalogue = Catalogue::load(
        &crate::provider::catalogue::CatalogueSource {
            configfile: Some(
                r#"[{"id": "googledrive", "authUrl": "http://127.0.0.1:9/token", "loginUrl": "http://127.0.0.1:9/auth"},
                    {"id": "box.com", "authUrl": "http://127.0.0.1:9/token", "loginUrl": "http://127.0.0.1:9/auth"},
                    {"id": "pcloud", "authUrl": "http://127.0.0.1:9/token", "loginUrl": "http://127.0.0.1:9/auth"}]"#,
            ),
            ..Default::default()
        },
        &|name| name.ends_with("_CLIENT_ID").then(|| "id".to_string()).or_else(|| name.ends_with("_SECRET").then(|| "s".to_string())),
    )
    .unwrap();
    let keyring = Arc::new(KeyringHandle::new(Keyring::ephemeral().unwrap()));
    let client = Arc::new(ScriptedClient::default());
    let clock = ManualClock::new(1_800_000_000);
    let outage = Arc::new(StoreOutage::new());
    let protection = Arc::new(Protection::new(
        &catalogue,
        crate::provider::ProtectionSettings {
            max_backoff: std::time::Duration::from_secs(3600),
            concurrency: 16,
            queue_wait: std::time::Duration::from_secs(2),
        },
        Arc::clone(&store),
        Arc::clone(&outage),
    ));
    let metrics = Arc::new(Metrics::new());
    let migrator = crate::migrate::Migrator::new(crate::migrate::MigrateDeps {
        service: None,
        store: Arc::clone(&store),
        outage: Arc::clone(&outage),
        metrics: Arc::clone(&metrics),
        exports_per_minute: 1000,
        export_concurrency: 100,
    });
    let refresher = Refresher::new(RefreshDeps {
        keyring: Arc::clone(&keyring),
        catalogue: Arc::new(catalogue),
        client: client.clone(),
        store: Arc::clone(&store),
        outage,
        protection,
        metrics,
        migrator,
        clock: Arc::new(clock.clone()),
        redirect_uri: "http://127.0.0.1/logged-in".into(),
        cache_capacity: 1000,
        limits: Limits::default(),
        upstream_timeout: std::time::Duration::from_secs(2),
    });
    Fixture {
        refresher,
        store,
        client,
        keyring,
        clock,
    }
}

impl Fixture {
    fn authid(&self, provider: &str, rt: &str) -> String {
        self.keyring
            .seal(&Claims::new(provider, Sensitive::new(rt), self.clock.now()))
            .unwrap()
    }
}
