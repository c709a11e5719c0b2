//! Running the server: logging, the runtime, the listener, key reloads
//! (SIGHUP, or the key directory changing) and a bounded graceful stop on
//! SIGTERM or Ctrl-C.

use std::sync::Arc;

use super::serve::ServeArgs;
use crate::app::App;
use crate::http::server::ConnectionLimits;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.server.log_format);
    let loaded = args.load().map_err(|problems| {
        for p in &problems {
            tracing::error!("{p}");
        }
        anyhow::anyhow!(
            "cannot start: {} problem(s) in the configuration",
            problems.len()
        )
    })?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        // The store is opened before the server listens: an embedded store
        // whose DATA_DIR another process holds stops the start here. It
        // stays open (and DATA_DIR locked) until the server stops.
        let app = loaded.open().await.map_err(|e| {
            tracing::error!("{e}");
            anyhow::anyhow!("cannot start: {e}")
        })?;
        serve(Arc::new(app)).await
    })
}

pub async fn serve(app: Arc<App>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&app.settings().listen).await?;
    serve_on(listener, app).await
}

pub async fn serve_on(listener: tokio::net::TcpListener, app: Arc<App>) -> anyhow::Result<()> {
    let connections = ConnectionLimits::from_settings(&app.settings().limits);
    tracing::info!(
        address = %listener.local_addr()?,
        public_url = %app.settings().public_base(),
        providers = app.catalogue().providers().len(),
        max_connections = connections.max_connections,
        "listening"
    );
    spawn_reload_on_sighup(Arc::clone(&app));
    spawn_key_dir_watch(Arc::clone(&app));
    let (stopping, mut stopping_rx) = tokio::sync::watch::channel(false);
    spawn_metrics_listener(&app, connections.clone(), stopping_rx.clone()).await?;
    let metrics = Arc::clone(app.metrics());
    let router = crate::http::router(app);
    let server = crate::http::server::serve(listener, router, connections, metrics, async move {
        shutdown_signal().await;
        let _ = stopping.send(true);
    });
    // In-flight requests get a bounded time to finish (each is itself
    // bounded by the request timeout); then the process exits anyway.
    let grace = async move {
        let _ = stopping_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => {},
        () = grace => tracing::warn!("shutdown grace period over; closing the remaining connections"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves `/metrics` on `METRICS_LISTEN`, when set, until the server stops.
/// A listener that cannot be bound stops the start, like `LISTEN`.
async fn spawn_metrics_listener(
    app: &Arc<App>,
    connections: ConnectionLimits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(address) = app.settings().metrics_listen.clone() else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("METRICS_LISTEN {address}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics");
    let metrics = Arc::clone(app.metrics());
    let router = crate::http::metrics_router(Arc::clone(app));
    tokio::spawn(crate::http::server::serve(
        listener,
        router,
        connections,
        metrics,
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        },
    ));
    Ok(())
}

/// Longest wait for in-flight requests after SIGTERM: above the request
/// timeout, so no request that can still succeed is cut. Orchestrators
/// should allow this long before they kill (Docker `stop_grace_period`,
/// Kubernetes `terminationGracePeriodSeconds`).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(35);

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

/// Reloads keys when the key directory changes (a mounted secret updated,
/// `keys activate` run on the host), so SIGHUP is not required; looked at
/// every `KEYS_RELOAD_INTERVAL`.
fn spawn_key_dir_watch(app: Arc<App>) {
    let Some(crate::authid::keysource::KeySource::Dir(dir)) = app.key_source().cloned() else {
        return;
    };
    let dir = crate::authid::keydir::KeyDir::new(dir);
    tokio::spawn(async move {
        let mut seen = dir.fingerprint();
        let mut tick = tokio::time::interval(app.settings().keys_reload_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = dir.fingerprint();
            if now != seen {
                seen = now;
                if let Err(problems) = app.reload_keys() {
                    tracing::error!(problems = %problems.join("; "), "key directory changed but does not load; keeping the current keys");
                }
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format.eq_ignore_ascii_case("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
