//! The shared-store scenarios (two broker instances on one store behave as
//! one broker) on a Redis found through sentinels and on a three-master
//! Redis Cluster, as they run on one Redis: the same guarantees on every
//! topology. "Store down" stops the data nodes (SIGTERM, so the
//! append-only files are complete); "back" starts them on their data.

use std::sync::{Arc, Mutex};

use oauth_broker::config::{StoreDefault, parse_store};
use oauth_broker::metrics::Metrics;
use oauth_broker::store::instrumented::InstrumentedStore;
use oauth_broker::store::{RedisStore, Store};

use crate::shared_store::{self, Backend};
use crate::support::mock_provider::Rotation;
use crate::support::redis_ha::{Cluster, Node, SentinelSet};

const PREFIX: &str = "oauth-broker-test:";

enum Deployment {
    Sentinel(Box<SentinelSet>),
    Cluster(Cluster),
}

struct Ha {
    deployment: Mutex<Deployment>,
    url: String,
    password: String,
}

fn sentinel() -> Ha {
    let set = SentinelSet::start(false, 1);
    Ha {
        url: set.url(),
        password: set.password.clone(),
        deployment: Mutex::new(Deployment::Sentinel(Box::new(set))),
    }
}

fn cluster() -> Ha {
    let cluster = Cluster::start(3);
    Ha {
        url: cluster.url(),
        password: cluster.password.clone(),
        deployment: Mutex::new(Deployment::Cluster(cluster)),
    }
}

impl Ha {
    fn data_nodes<T>(&self, each: impl Fn(&mut Node) -> T) -> Vec<T> {
        let mut deployment = self.deployment.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *deployment {
            Deployment::Sentinel(set) => vec![each(&mut set.master)],
            Deployment::Cluster(cluster) => cluster.nodes.iter_mut().map(each).collect(),
        }
    }
}

impl Backend for Ha {
    fn open(&self) -> Arc<dyn Store> {
        let settings = parse_store(
            Some(&self.url),
            StoreDefault::Embedded,
            std::path::Path::new("."),
            PREFIX,
            oauth_broker::config::defaults::STORE_TIMEOUT_MS,
        )
        .expect("a valid STORE");
        let redis = RedisStore::open(&settings, None).expect("store");
        Arc::new(InstrumentedStore::new(
            Arc::new(redis),
            settings.timeout,
            &Metrics::new(),
        ))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn set_down(&self, down: bool) {
        if down {
            self.data_nodes(Node::stop);
        } else {
            self.data_nodes(Node::restart);
            self.data_nodes(|n| {
                n.wait_until(
                    |n| {
                        let state = n.info("cluster", "cluster_enabled");
                        state.as_deref() != Some("1")
                            || n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
                    },
                    "serves again",
                );
            });
        }
    }

    fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let ports = self.data_nodes(|n| n.port);
        let mut all = Vec::new();
        for port in ports {
            let client =
                redis::Client::open(format!("redis://:{}@127.0.0.1:{port}/0", self.password))
                    .unwrap();
            let mut connection = client.get_connection().expect("connect to a data node");
            let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut connection).unwrap();
            for key in keys {
                assert!(
                    key.starts_with(PREFIX),
                    "every key carries the prefix: {key}"
                );
                let value: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut connection).unwrap();
                all.push((key, value));
            }
        }
        all
    }
}

macro_rules! scenarios {
    ($($topology:ident),*) => {$(
        mod $topology {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn box_runs_from_the_pasted_authid_across_instances_and_a_rolling_restart() {
                shared_store::six_runs_over_two_instances(&super::$topology(), "box.com", Rotation::SingleUse).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn jottacloud_runs_from_the_pasted_authid_across_instances_and_a_rolling_restart() {
                shared_store::six_runs_over_two_instances(
                    &super::$topology(),
                    "jottacloud",
                    Rotation::SingleUseReuseDetection,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn forty_concurrent_refreshes_over_two_instances_make_one_provider_call() {
                shared_store::forty_concurrent_refreshes_over_two_instances_make_one_provider_call(&super::$topology()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_retry_after_seen_by_one_instance_holds_the_other() {
                shared_store::a_retry_after_seen_by_one_instance_holds_the_other(&super::$topology()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_login_finished_on_one_instance_is_fetched_once_on_the_other() {
                shared_store::a_login_finished_on_one_instance_is_fetched_once_on_the_other(&super::$topology()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn while_the_store_is_down_google_is_served_and_box_waits_then_goes_on() {
                shared_store::while_the_store_is_down_google_is_served_and_box_waits_then_goes_on(&super::$topology()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn revoking_the_pasted_box_authid_after_rotations_ends_the_login_on_every_instance() {
                shared_store::revoking_the_pasted_box_authid_after_rotations_ends_the_login_on_every_instance(&super::$topology()).await;
            }
        }
    )*};
}

scenarios!(sentinel, cluster);
