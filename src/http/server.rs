//! The connection loop: accepts client connections up to a cap, serves
//! HTTP/1.1 with a header-read timeout (which also ends idle keep-alive
//! connections), and shuts down gracefully. A client that opens
//! connections and never finishes a request can hold one only for that
//! timeout, and never enough of them to exhaust the process's files. A
//! response the client does not read ends its connection after the write
//! timeout, and one address holds at most a few connections (see
//! `slow_clients.rs`).

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
use super::slow_clients::{PerAddress, WriteTimeout};
use crate::config::Limits;
use crate::metrics::Metrics;

/// Limits of client connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for a request's headers: from the connection's start,
    /// and from the end of the previous response on a kept-alive
    /// connection (so it is also the idle keep-alive timeout).
    pub header_read_timeout: Duration,
    /// Client connections open at once; further ones wait in the listen
    /// queue until one closes.
    pub max_connections: usize,
    /// Connections one address may hold; more are closed at once.
    pub max_connections_per_address: usize,
    /// Addresses not counted per address (trusted proxies).
    pub exempt: Vec<ipnet::IpNet>,
    /// Leading bits of an IPv6 address that count as one address.
    pub ipv6_prefix_length: u8,
    /// Longest a response may make no progress.
    pub write_timeout: Duration,
}

impl ConnectionLimits {
    pub fn from_settings(limits: &Limits) -> Self {
        Self {
            header_read_timeout: limits.header_read_timeout,
            max_connections: limits.max_connections,
            max_connections_per_address: limits.max_connections_per_address,
            exempt: limits.trusted_proxies.clone(),
            ipv6_prefix_length: limits.ipv6_prefix_length,
            write_timeout: limits.write_timeout,
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
    let per_address = PerAddress::new(
        limits.max_connections_per_address,
        limits.exempt.clone(),
        limits.ipv6_prefix_length,
    );
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut make_service =
        axum::ServiceExt::into_make_service_with_connect_info::<SocketAddr>(router);
    let mut warned_full: Option<Instant> = None;
    let mut warned_address: Option<Instant> = None;
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
        // Over its address's cap: closed at once, so the client learns it
        // and the slot is free for another address.
        let Some(counted) = per_address.admit(peer.ip()) else {
            refused_over_cap(&mut warned_address);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteTimeout::new(stream, limits.write_timeout);
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
            drop(counted);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A connection refused for its address's cap, logged at most once a
/// minute (the address is not logged: it is the client's).
fn refused_over_cap(warned: &mut Option<Instant>) {
    if warned.is_none_or(|at| at.elapsed() >= FULL_WARNING_EVERY) {
        *warned = Some(Instant::now());
        tracing::warn!(
            "an address reached its connection cap; its further connections are closed (MAX_CONNECTIONS_PER_ADDRESS)"
        );
    }
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
