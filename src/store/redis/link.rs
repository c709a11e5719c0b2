//! How the Redis store reaches its data: one Redis named by URL, the
//! master a group of sentinels names (asked again after a failure and at
//! every health check, so a failover is followed without a restart), or a
//! Redis Cluster through its seed nodes (the `redis` crate's cluster
//! connection follows `MOVED`, `ASK` and resharding).
//!
//! Nothing connects at construction: the first operation (or health
//! check) does, so an instance starts while Redis or the sentinels are
//! down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, Pipeline, RedisFuture, TlsMode, Value};
use secrecy::ExposeSecret;

use crate::config::{HaKind, HaRedis};

/// Least time between two replacements of a connection, or two questions
/// to the sentinels prompted by failures.
pub(super) const RENEW_INTERVAL: Duration = Duration::from_secs(1);
/// Least time between two questions to the sentinels after failures while
/// the master is unknown or failing over.
const ASK_INTERVAL: Duration = Duration::from_millis(250);

/// One connection, whichever way the store reaches Redis.
#[derive(Clone)]
pub(super) enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The master the sentinels named last, and the connection to it.
pub(super) struct Master {
    address: String,
    manager: ConnectionManager,
}

pub(super) enum Link {
    Direct {
        client: redis::Client,
        config: ConnectionManagerConfig,
        manager: ArcSwap<ConnectionManager>,
        renewed_at: Mutex<Instant>,
    },
    Sentinel {
        sentinels: tokio::sync::Mutex<SentinelClient>,
        config: ConnectionManagerConfig,
        master: ArcSwapOption<Master>,
        asked_at: Mutex<Option<Instant>>,
    },
    Cluster {
        client: ClusterClient,
        connection: ArcSwap<ClusterConnection>,
        renewed_at: Mutex<Instant>,
    },
}

/// What a question to the sentinels found.
pub(super) enum Asked {
    /// The master is the one already in use.
    Same,
    /// The sentinels name a master, now in use, where none was known.
    Found,
    /// The sentinels name another master, now in use.
    Switched,
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    // One connection attempt per call: while Redis is down every operation
    // fails at once (refused) or within the timeout, and the next
    // operation or health check tries again.
    ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
        .set_response_timeout(None)
}

fn lazy_manager(
    client: &redis::Client,
    config: &ConnectionManagerConfig,
) -> Result<ConnectionManager, String> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err("the Redis store needs a Tokio runtime".into());
    }
    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
        .map_err(|e| format!("cannot set up the Redis connection: {}", e.category()))
}

impl Link {
    /// One Redis at `url`.
    pub(super) fn direct(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("STORE is not a usable Redis URL: {}", e.category()))?;
        let config = manager_config(timeout);
        let manager = lazy_manager(&client, &config)?;
        Ok(Self::Direct {
            client,
            config,
            manager: ArcSwap::from_pointee(manager),
            renewed_at: Mutex::new(Instant::now()),
        })
    }

    /// The sentinels or cluster `ha` names.
    pub(super) fn ha(ha: &HaRedis, timeout: Duration) -> Result<Self, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the Redis store needs a Tokio runtime".into());
        }
        match ha.kind {
            HaKind::Sentinel => Self::sentinel(ha, timeout),
            HaKind::Cluster => {
                let client = cluster_client(ha, timeout)?;
                let connection = pending_cluster(&client, timeout);
                Ok(Self::Cluster {
                    client,
                    connection: ArcSwap::from_pointee(connection),
                    renewed_at: Mutex::new(Instant::now()),
                })
            }
        }
    }

    fn sentinel(ha: &HaRedis, timeout: Duration) -> Result<Self, String> {
        let addresses = ha.nodes.iter().map(|(host, port)| {
            if ha.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut builder =
            SentinelClientBuilder::new(addresses, &ha.master, SentinelServerType::Master)
                .map_err(|e| format!("STORE: the sentinels are not usable: {}", e.category()))?
                .set_client_to_redis_db(ha.db);
        if ha.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        }
        if let Some(user) = &ha.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &ha.password {
            builder = builder.set_client_to_redis_password(password.expose_secret());
        }
        if let Some(password) = &ha.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password.expose_secret());
        }
        let sentinels = builder
            .build()
            .map_err(|e| format!("STORE: the sentinels are not usable: {}", e.category()))?;
        Ok(Self::Sentinel {
            sentinels: tokio::sync::Mutex::new(sentinels),
            config: manager_config(timeout),
            master: ArcSwapOption::empty(),
            asked_at: Mutex::new(None),
        })
    }

    /// `direct`, `sentinel` or `cluster`, for `/ready` and logs.
    pub(super) fn topology(&self) -> &'static str {
        match self {
            Self::Direct { .. } => "direct",
            Self::Sentinel { .. } => "sentinel",
            Self::Cluster { .. } => "cluster",
        }
    }

    /// The connection to use now. Behind sentinels, asks them first when
    /// no master is known yet.
    pub(super) async fn connection(&self) -> Result<Conn, redis::RedisError> {
        match self {
            Self::Direct { manager, .. } => {
                Ok(Conn::Node(ConnectionManager::clone(&manager.load())))
            }
            Self::Cluster { connection, .. } => {
                Ok(Conn::Cluster(ClusterConnection::clone(&connection.load())))
            }
            Self::Sentinel { master, .. } => {
                if let Some(current) = master.load_full() {
                    return Ok(Conn::Node(current.manager.clone()));
                }
                self.ask_sentinels(false).await?;
                master.load_full().map_or_else(
                    || {
                        Err(redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "the sentinels name no master",
                        )))
                    },
                    |current| Ok(Conn::Node(current.manager.clone())),
                )
            }
        }
    }

    /// Asks the sentinels which node is the master (at most once per
    /// `ASK_INTERVAL` unless `always`), and moves to it if it changed.
    /// A no-op on the other links.
    pub(super) async fn ask_sentinels(&self, always: bool) -> Result<Asked, redis::RedisError> {
        let Self::Sentinel {
            sentinels,
            config,
            master,
            asked_at,
        } = self
        else {
            return Ok(Asked::Same);
        };
        // One question at a time: callers that queue behind it take its
        // answer instead of asking again.
        let mut sentinels = sentinels.lock().await;
        {
            let mut at = asked_at.lock().unwrap_or_else(|e| e.into_inner());
            // Without a master every caller asks: the answer is needed.
            let known = master.load().is_some();
            if !always && known && at.is_some_and(|t| t.elapsed() < ASK_INTERVAL) {
                return Ok(Asked::Same);
            }
            *at = Some(Instant::now());
        }
        // The sentinels check that the node they name calls itself master.
        // The lock is held until the answer is in place.
        let client = sentinels.async_get_client().await?;
        let address = client.get_connection_info().addr().to_string();
        if master
            .load()
            .as_ref()
            .is_some_and(|current| current.address == address)
        {
            return Ok(Asked::Same);
        }
        let manager = lazy_manager(&client, config)
            .map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "connection", e)))?;
        let previous = master.swap(Some(Arc::new(Master { address, manager })));
        Ok(if previous.is_some() {
            Asked::Switched
        } else {
            Asked::Found
        })
    }

    /// Replaces the connection (at most once per `RENEW_INTERVAL`): after
    /// a refused authentication, which the manager does not retry by
    /// itself, and after stalls. Behind sentinels, the next operation
    /// asks them again. Returns whether it did.
    pub(super) fn renew(&self, timeout: Duration) -> bool {
        let due = |renewed_at: &Mutex<Instant>| {
            let mut at = renewed_at.lock().unwrap_or_else(|e| e.into_inner());
            let due = at.elapsed() >= RENEW_INTERVAL;
            if due {
                *at = Instant::now();
            }
            due
        };
        match self {
            Self::Direct {
                client,
                config,
                manager,
                renewed_at,
            } => {
                if !due(renewed_at) {
                    return false;
                }
                lazy_manager(client, config).is_ok_and(|m| {
                    manager.store(Arc::new(m));
                    true
                })
            }
            Self::Sentinel { master, .. } => {
                master.store(None);
                true
            }
            Self::Cluster {
                client,
                connection,
                renewed_at,
            } => {
                if !due(renewed_at) {
                    return false;
                }
                connection.store(Arc::new(pending_cluster(client, timeout)));
                true
            }
        }
    }
}

fn cluster_client(ha: &HaRedis, timeout: Duration) -> Result<ClusterClient, String> {
    let seeds: Vec<ConnectionAddr> = ha
        .nodes
        .iter()
        .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port))
        .collect();
    let mut builder = ClusterClient::builder(seeds)
        .connection_timeout(timeout.max(Duration::from_secs(1)))
        // MOVED and ASK are followed at once; a slot without a master
        // (a failover in the cluster) is retried briefly, within the
        // store's bound on each call.
        .retries(3)
        .min_retry_wait(10)
        .max_retry_wait(100);
    if ha.tls {
        builder = builder.tls(TlsMode::Secure);
    }
    if let Some(user) = &ha.username {
        builder = builder.username(user);
    }
    if let Some(password) = &ha.password {
        builder = builder.password(password.expose_secret());
    }
    builder
        .build()
        .map_err(|e| format!("STORE: the cluster is not usable: {}", e.category()))
}

/// A cluster connection that connects in the background.
fn pending_cluster(client: &ClusterClient, timeout: Duration) -> ClusterConnection {
    let config = ClusterConfig::new().set_connection_timeout(timeout.max(Duration::from_secs(1)));
    client.get_pending_async_connection_with_config(config)
}
