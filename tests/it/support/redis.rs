//! A real `redis-server` for the tests, one per test or test group: on a
//! free loopback port, with a password, append-only persistence in its own
//! temporary directory and no snapshots, so a test can stop it, restart it
//! with its data, or wipe it. Killed when dropped.
//!
//! [`RedisServer::start_tls`] also listens for TLS on a second port, with a
//! self-signed certificate for 127.0.0.1.
//!
//! `REDIS_SERVER` names another server binary (e.g. `valkey-server`).
//! [`RedisServer::command`] speaks the protocol directly, so tests can look
//! at what a store wrote without going through the store.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distributions::Alphanumeric;

/// Longest wait for the server to start answering or to stop.
const PATIENCE: Duration = Duration::from_secs(20);

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// The TLS port, when started with TLS.
    tls_port: Option<u16>,
    password: String,
    dir: tempfile::TempDir,
}

/// A reply in the Redis protocol (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status or bulk reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Status(s) => Some(s.clone()),
            Self::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    pub fn start() -> Self {
        let mut server = Self::new();
        server.spawn();
        server
    }

    /// Starts a server that also speaks TLS (see [`Self::tls_url`]).
    pub fn start_tls() -> Self {
        let mut server = Self::new();
        write_self_signed_certificate(server.dir.path());
        server.tls_port = Some(free_port());
        server.spawn();
        server
    }

    fn new() -> Self {
        let password: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        Self {
            child: None,
            port: free_port(),
            tls_port: None,
            password,
            dir: tempfile::tempdir().expect("tempdir for redis"),
        }
    }

    /// `rediss://:<password>@127.0.0.1:<tls port>/0`. The certificate is
    /// self-signed: clients must add `#insecure` or refuse it.
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with start_tls");
        format!("rediss://:{}@127.0.0.1:{port}/0", self.password)
    }

    /// `redis://:<password>@127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        self.url_with_password(&self.password)
    }

    /// The URL with another password (to test refusals).
    pub fn url_with_password(&self, password: &str) -> String {
        format!("redis://:{password}@127.0.0.1:{}/0", self.port)
    }

    /// The URL without credentials.
    pub fn url_without_password(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (the append-only files live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Stops the server the way an operator does (SIGTERM): it writes the
    /// append-only file out and exits. Waits until it has.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not stop on SIGTERM:\n{}", self.log());
    }

    /// Kills the server (SIGKILL): what it had not yet written to its
    /// append-only file (at most about a second of writes) is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs and starts it again on the same port
    /// with the same directory, so it loads the same data. Waits until it
    /// answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Removes every key.
    pub fn wipe(&self) {
        let reply = self.command(&["FLUSHALL"]);
        assert_eq!(reply, Reply::Status("OK".into()), "FLUSHALL");
    }

    /// Every key name matching `pattern` (`KEYS`, fine for a test server).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        match self.command(&["KEYS", pattern]) {
            Reply::Array(Some(items)) => items.iter().filter_map(Reply::text).collect(),
            other => panic!("KEYS answered {other:?}"),
        }
    }

    /// Sends one command on a fresh, authenticated connection and returns
    /// the reply. Panics if the server cannot be reached.
    pub fn command(&self, args: &[&str]) -> Reply {
        let mut connection =
            Connection::open(self.port, &self.password).expect("connect to redis-server");
        connection.call(args).expect("redis-server reply")
    }

    /// A handle that pauses every client of the server (`CLIENT PAUSE ..
    /// ALL`: commands are queued, then applied), usable from inside a store.
    pub fn pauser(&self) -> Pauser {
        Pauser {
            port: self.port,
            password: self.password.clone(),
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = self.dir.path().to_string_lossy().into_owned();
        let log = self.log_path().to_string_lossy().into_owned();
        let port = self.port.to_string();
        let mut command = Command::new(&binary);
        if let Some(tls_port) = self.tls_port {
            let file = |name: &str| self.dir.path().join(name).to_string_lossy().into_owned();
            command
                .args(["--tls-port", &tls_port.to_string()])
                .args(["--tls-cert-file", &file("cert.pem")])
                .args(["--tls-key-file", &file("key.pem")])
                .args(["--tls-ca-cert-file", &file("cert.pem")])
                .args(["--tls-auth-clients", "no"]);
        }
        let child = command
            .args(["--port", &port])
            .args(["--bind", "127.0.0.1"])
            .args(["--daemonize", "no"])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--dir", &dir])
            .args(["--requirepass", &self.password])
            .args(["--logfile", &log])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} ({e}); scripts/setup.sh installs redis-server")
            });
        self.child = Some(child);
        self.wait_until_ready();
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if !self.is_running() {
                panic!("redis-server exited at start:\n{}", self.log());
            }
            // PING answers PONG only once the append-only file is loaded.
            let answer = Connection::open(self.port, &self.password)
                .and_then(|mut c| c.call(&["PING"]))
                .ok();
            if answer == Some(Reply::Status("PONG".into())) {
                return;
            }
            if Instant::now() > deadline {
                panic!("redis-server does not answer:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A self-signed certificate for 127.0.0.1 (`cert.pem`, `key.pem`).
fn write_self_signed_certificate(dir: &Path) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509, X509NameBuilder};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&cert.x509v3_context(None, None))
        .unwrap();
    cert.append_extension(san).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = cert.build();
    std::fs::write(dir.join("cert.pem"), cert.to_pem().unwrap()).unwrap();
    std::fs::write(dir.join("key.pem"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
}

/// A port nobody listens on now (the server binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One blocking protocol connection, authenticated.
pub struct Pauser {
    port: u16,
    password: String,
}

impl Pauser {
    pub fn pause(&self, millis: u64) {
        let mut connection =
            Connection::open(self.port, &self.password).expect("connect to redis-server");
        let reply = connection
            .call(&["CLIENT", "PAUSE", &millis.to_string(), "ALL"])
            .expect("redis-server reply");
        assert_eq!(reply, Reply::Status("OK".into()), "CLIENT PAUSE");
    }
}

struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(port: u16, password: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut connection = Self {
            reader: BufReader::new(stream),
        };
        match connection.call(&["AUTH", password])? {
            Reply::Status(_) => Ok(connection),
            other => Err(std::io::Error::other(format!("AUTH answered {other:?}"))),
        }
    }

    fn call(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&request)?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1.min(line.len()));
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| std::io::Error::other(format!("bad reply line {line:?}")))
        };
        match kind {
            "+" => Ok(Reply::Status(rest.to_string())),
            "-" => Ok(Reply::Error(rest.to_string())),
            ":" => Ok(Reply::Integer(number()?)),
            "$" => {
                let Ok(len) = usize::try_from(number()?) else {
                    return Ok(Reply::Bulk(None));
                };
                let mut data = vec![0; len + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(len);
                Ok(Reply::Bulk(Some(data)))
            }
            "*" => {
                let Ok(len) = usize::try_from(number()?) else {
                    return Ok(Reply::Array(None));
                };
                let items = (0..len)
                    .map(|_| self.read_reply())
                    .collect::<std::io::Result<_>>()?;
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(std::io::Error::other(format!("bad reply line {line:?}"))),
        }
    }
}
