//! Highly available Redis deployments for the tests, from real processes
//! on loopback ports: a master with a replica watched by sentinels
//! (`redis-server sentinel.conf --sentinel`), and a Redis Cluster of
//! masters joined by `redis-cli --cluster create`. Every node has the same
//! password, its own temporary directory, and is killed when dropped;
//! every wait is bounded.
//!
//! `REDIS_SERVER` names another server binary, `REDIS_CLI` another client.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distributions::Alphanumeric;

/// Longest wait for a node, a sentinel or a cluster to be ready.
const PATIENCE: Duration = Duration::from_secs(30);
/// The sentinels' name of the master group.
pub const MASTER_NAME: &str = "brokermaster";

/// One `redis-server` process (a data node or a sentinel).
pub struct Node {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    password: String,
    args: Vec<String>,
}

fn binary(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.into())
}

/// A free loopback port whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free pair of loopback ports");
}

pub fn password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

impl Node {
    /// A data node with the common settings and `extra` arguments.
    fn data(password: &str, extra: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir for redis");
        let port = free_port();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--dir",
            &dir.path().to_string_lossy(),
            "--requirepass",
            password,
            "--masterauth",
            password,
            "--logfile",
            "redis.log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend_from_slice(extra);
        let mut node = Self {
            child: None,
            port,
            dir,
            password: password.into(),
            args,
        };
        node.spawn();
        node
    }

    /// A sentinel watching the master on `master_port`, requiring
    /// `own_password` when given.
    fn sentinel(password: &str, master_port: u16, own_password: Option<&str>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir for sentinel");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile sentinel.log\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel auth-pass {MASTER_NAME} {password}\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 4000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n{own}",
                dir = dir.path().display(),
                own = own_password
                    .map(|p| format!("requirepass {p}\nsentinel sentinel-pass {p}\n"))
                    .unwrap_or_default(),
            ),
        )
        .expect("write sentinel.conf");
        let args = vec![conf.to_string_lossy().into_owned(), "--sentinel".into()];
        let mut node = Self {
            child: None,
            port,
            dir,
            password: own_password.unwrap_or_default().to_string(),
            args,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let server = binary("REDIS_SERVER", "redis-server");
        let child = Command::new(&server)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {server} ({e}); scripts/setup.sh installs it")
            });
        self.child = Some(child);
        self.wait_until(|n| n.cli(&["PING"]) == "PONG", "answers PING");
    }

    /// Runs `redis-cli` against this node and returns its output, trimmed
    /// (empty when the node does not answer).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new(binary("REDIS_CLI", "redis-cli"));
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if !self.password.is_empty() {
            command.args(["-a", &self.password, "--no-auth-warning"]);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// Waits (bounded) until `ready` holds.
    pub fn wait_until(&self, ready: impl Fn(&Self) -> bool, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "node {} never {what}:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        ["redis.log", "sentinel.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// SIGTERM, as an operator stops it: it writes its append-only file
    /// out and exits. Waits (bounded) until it has.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + PATIENCE;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// Starts the node again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGKILL: the node is gone at once, as a crashed host.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP or SIGCONT: a node that hangs, its connections open.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
        }
    }

    /// The value of `field` in `INFO section`.
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        self.cli(&["INFO", section]).lines().find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{field}:"))
                .map(str::to_string)
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped process must continue to die.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill();
    }
}

/// A master, optionally a replica, and sentinels watching them.
pub struct SentinelSet {
    pub master: Node,
    pub replica: Option<Node>,
    pub sentinels: Vec<Node>,
    pub password: String,
}

impl SentinelSet {
    /// A master, a replica if `replica`, and `sentinels` sentinels (a
    /// quorum of 2 for a failover), once each sentinel knows the others
    /// and the replica.
    pub fn start(replica: bool, sentinels: usize) -> Self {
        Self::start_with(replica, sentinels, None)
    }

    /// Like [`Self::start`], the sentinels requiring `sentinel_password`.
    pub fn start_with(replica: bool, sentinels: usize, sentinel_password: Option<&str>) -> Self {
        let password = password();
        let master = Node::data(&password, &[]);
        let replica = replica.then(|| {
            let of = [
                "--replicaof".to_string(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ];
            let node = Node::data(&password, &of);
            node.wait_until(
                |n| n.info("replication", "master_link_status").as_deref() == Some("up"),
                "synchronised with its master",
            );
            node
        });
        let sentinels: Vec<Node> = (0..sentinels)
            .map(|_| Node::sentinel(&password, master.port, sentinel_password))
            .collect();
        let replicas = usize::from(replica.is_some());
        for sentinel in &sentinels {
            sentinel.wait_until(
                |s| {
                    let known = |what: &str| {
                        s.cli(&["SENTINEL", what, MASTER_NAME])
                            .lines()
                            .filter(|l| *l == "ip")
                            .count()
                    };
                    known("REPLICAS") >= replicas && known("SENTINELS") + 1 >= sentinels.len()
                },
                "knows the replica and the other sentinels",
            );
        }
        Self {
            master,
            replica,
            sentinels,
            password,
        }
    }

    /// `redis+sentinel://:<password>@<sentinels>/<master name>/0`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!(
            "redis+sentinel://:{}@{}/{MASTER_NAME}/0",
            self.password,
            hosts.join(",")
        )
    }

    /// The master's port as the first answering sentinel names it.
    pub fn named_master(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let answer = s.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
            answer.lines().nth(1).and_then(|p| p.trim().parse().ok())
        })
    }
}

/// A Redis Cluster of masters without replicas.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub password: String,
}

impl Cluster {
    /// `masters` nodes joined into one cluster, once every node reports
    /// `cluster_state:ok`.
    pub fn start(masters: usize) -> Self {
        let password = password();
        let extra: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let nodes: Vec<Node> = (0..masters)
            .map(|_| Node::data(&password, &extra))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new(binary("REDIS_CLI", "redis-cli"));
        create
            .args(["-a", &password, "--no-auth-warning", "--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        assert!(
            create
                .status()
                .expect("redis-cli --cluster create")
                .success()
        );
        for node in &nodes {
            node.wait_until(
                |n| {
                    n.info_cluster("cluster_state").as_deref() == Some("ok")
                        && n.info_cluster("cluster_known_nodes") == Some(masters.to_string())
                },
                "sees the cluster ok",
            );
        }
        Self { nodes, password }
    }

    /// `redis+cluster://:<password>@<first node>` (one seed is enough).
    pub fn url(&self) -> String {
        format!(
            "redis+cluster://:{}@127.0.0.1:{}",
            self.password, self.nodes[0].port
        )
    }

    /// Every key name on every node.
    pub fn keys(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.cli(&["KEYS", "*"])
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Node {
    fn info_cluster(&self, field: &str) -> Option<String> {
        self.cli(&["CLUSTER", "INFO"]).lines().find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{field}:"))
                .map(str::to_string)
        })
    }
}
