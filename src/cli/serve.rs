//! `oauth-broker serve`: load everything, bind, serve until SIGTERM/Ctrl-C,
//! reload keys on SIGHUP.

use std::sync::Arc;

use clap::Args;

use super::KeyArgs;
use crate::app::App;
use crate::authid::KeyringHandle;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// External base URL; the OAuth redirect URI is PUBLIC_URL/logged-in.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let source = args.keys.source();
    let keyring = source.load().map_err(|problems| {
        for p in &problems {
            tracing::error!("{p}");
        }
        anyhow::anyhow!("cannot start: {}", problems.join("; "))
    })?;
    let app = Arc::new(App {
        keyring: KeyringHandle::new(keyring),
        key_source: Some(source),
        clock: crate::clock::system(),
    });
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(app, &args.listen))
}

async fn serve(app: Arc<App>, listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    spawn_reload_on_sighup(Arc::clone(&app));
    let router = crate::http::router(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

fn spawn_reload_on_sighup(app: Arc<App>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; keys reload only on restart");
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(problems) = app.reload_keys() {
                tracing::error!(problems = %problems.join("; "), "key reload failed; keeping the current keys");
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// `LOG_FORMAT=json` for machines, text otherwise; `LOG_LEVEL` filters.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format.eq_ignore_ascii_case("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
