//! The connection loop: accepts client connections up to a cap, serves
//! HTTP/1.1 with a header-read timeout (which also ends idle keep-alive
//! connections), and shuts down gracefully. A client that opens
//! connections and never finishes a request can hold one only for that
//! timeout, and never enough of them to exhaust the process's files.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt};

use super::FastRefresh;
use crate::config::Limits;
use crate::metrics::Metrics;

/// Limits of client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a request's headers: from the connection's start,
    /// and from the end of the previous response on a kept-alive
    /// connection (so it is also the idle keep-alive timeout).
    pub header_read_timeout: Duration,
    /// Client connections open at once; further ones wait in the listen
    /// queue until one closes.
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub fn from_settings(limits: &Limits) -> Self {
        Self {
            header_read_timeout: limits.header_read_timeout,
            max_connections: limits.max_connections,
        }
    }
}

/// How often, at most, reaching the connection cap is logged.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting and waits for open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: FastRefresh,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut make_service =
        axum::ServiceExt::into_make_service_with_connect_info::<SocketAddr>(router);
    let mut warned_full: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        if slots.available_permits() == 0
            && warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY)
        {
            warned_full = Some(Instant::now());
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached: new connections wait until one closes (MAX_CONNECTIONS)"
            );
        }
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Ok(service) = make_service.call(peer).await;
        let service = TowerToHyperService::new(
            service.map_request(|request: Request<Incoming>| request.map(Body::new)),
        );
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let open = metrics.open_connections.clone();
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A failed accept: errors of one connection (reset before it was
/// accepted) are skipped; anything else (no files left) is logged and
/// waited out briefly, so the loop does not spin.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
