//! `oauth-broker demo`: serve with the built-in demo provider and, unless
//! keys are configured, an ephemeral key, so a newcomer can try a whole
//! login, refresh, rotation and revocation on one machine.

use std::sync::Arc;

use clap::Args;

use super::KeyArgs;
use crate::app::{App, AppParts};
use crate::authid::Keyring;
use crate::authid::keysource::KeySource;
use crate::config::{Settings, StoreDefault, parse_public_url};
use crate::demo::DemoProvider;
use crate::provider::catalogue::CatalogueSource;
use crate::provider::{Catalogue, HttpTokenClient};

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub server: super::args::ListenArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub limits: super::args::LimitArgs,
    #[command(flatten)]
    pub store: super::args::StoreArgs,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    super::run::init_logging(&args.server.log_format);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.server.listen).await?;
        let address = listener.local_addr()?;
        let public = args.server.public_url_or(&address.to_string());
        let public_url = parse_public_url(&public).map_err(anyhow::Error::msg)?;
        let mut settings = Settings::for_url(public_url.as_str()).map_err(anyhow::Error::msg)?;
        settings.listen = address.to_string();
        let mut problems = Vec::new();
        settings.limits = args.limits.limits(&mut problems);
        if let Some(store) = args.store.settings(StoreDefault::Memory, &mut problems) {
            settings.store = store;
        }
        if !problems.is_empty() {
            anyhow::bail!("{}", problems.join("; "));
        }
        let base = settings.public_base().to_string();
        let (keyring, source) = demo_keys(&args.keys)?;
        let demo = Arc::new(DemoProvider::new(settings.redirect_uri()));
        let config = serde_json::Value::Array(vec![demo.catalogue_entry(&base)]).to_string();
        let catalogue = Catalogue::load(
            &CatalogueSource {
                configfile: Some(&config),
                secrets: None,
                services: Some(crate::demo::PROVIDER_ID),
            },
            &|_| None,
        )
        .map_err(|p| anyhow::anyhow!(p.join("; ")))?;
        let client = HttpTokenClient::new(settings.upstream_timeout).map_err(anyhow::Error::msg)?;
        // The store: memory unless STORE says otherwise.
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = crate::store::open(&settings.store, Arc::clone(&metrics))
            .await
            .map_err(anyhow::Error::msg)?;
        let app = App::new(AppParts {
            settings,
            keyring,
            key_source: source,
            catalogue,
            client: Arc::new(client),
            clock: crate::clock::system(),
            store,
            metrics,
            demo: Some(demo),
        });
        println!("{}", instructions(&base));
        super::run::serve_on(listener, Arc::new(app)).await
    })
}

/// Keys from KEYS or a KEYS_DIR that has some; otherwise a fresh key held
/// only in memory (AuthIDs then last as long as the process).
fn demo_keys(keys: &KeyArgs) -> anyhow::Result<(Keyring, Option<KeySource>)> {
    let source = keys.source();
    match &source {
        KeySource::Set(_) => Ok((
            source.load().map_err(|p| anyhow::anyhow!(p.join("; ")))?,
            Some(source),
        )),
        KeySource::Dir(_) => match source.load() {
            Ok(keyring) => Ok((keyring, Some(source))),
            Err(_) => {
                tracing::info!(
                    "no keys in KEYS_DIR: using an ephemeral key; AuthIDs end with this process"
                );
                Ok((Keyring::ephemeral().map_err(anyhow::Error::msg)?, None))
            }
        },
    }
}

fn instructions(base: &str) -> String {
    format!(
        "\noauth-broker demo is running with its built-in demo provider.\n\n  \
         1. Open {base}/ in a browser, choose \"Demo provider\", and approve the consent.\n  \
         2. Copy the AuthID the page shows, then get an access token:\n\n       \
         curl -H \"X-AuthID: <AuthID>\" {base}/refresh\n\n  \
         3. Check the access token at the demo API:\n\n       \
         curl -H \"Authorization: Bearer <access_token>\" {base}/demo/api/me\n\n  \
         Refresh tokens rotate on every refresh (like Box); the answer's v2_authid is the newest AuthID.\n  \
         Revoke at {base}/revoke. Stop with Ctrl-C.\n"
    )
}
