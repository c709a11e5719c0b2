//! The real `oauth-broker` binary as a child process, for what only a
//! process shows: signals, start-up, the command line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_oauth-broker");

/// `dir/keys` with one primary key, as `serve` reads it by default from a
/// process started in `dir`.
pub fn key_dir_with_primary(dir: &Path) -> oauth_broker::authid::keydir::KeyDir {
    let keys = oauth_broker::authid::keydir::KeyDir::new(dir.join("keys"));
    keys.generate(
        oauth_broker::clock::Clock::now(&oauth_broker::clock::SystemClock),
        true,
    )
    .expect("a key is generated");
    keys
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// Every log line the child writes, as it comes.
    pub logs: mpsc::Receiver<String>,
}

/// Starts `oauth-broker <args>` with `env`, waits for it to listen, and
/// copies its logs to the captured test logs.
pub fn start(args: &[&str], env: &[(&str, String)], dir: &Path) -> Server {
    let mut command = Command::new(BIN);
    command.args(args);
    spawn(command, env, dir)
}

/// Like [`start`], with the process's open-file limit lowered to
/// `open_files` (through the shell's `ulimit`).
pub fn start_with_open_file_limit(
    open_files: u32,
    args: &[&str],
    env: &[(&str, String)],
    dir: &Path,
) -> Server {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(args);
    spawn(command, env, dir)
}

fn spawn(mut command: Command, env: &[(&str, String)], dir: &Path) -> Server {
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LISTEN", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start oauth-broker");
    let stderr = child.stderr.take().expect("stderr");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let log_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-logs");
    let _ = std::fs::create_dir_all(&log_dir);
    let log_path = log_dir.join(format!("child-{}.log", child.id()));
    std::thread::spawn(move || {
        use std::io::Write;
        let mut file = std::fs::File::create(log_path).ok();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        // Drain stdout (demo instructions) so the child never blocks.
        for _ in BufReader::new(stdout).lines().map_while(Result::ok) {}
    });
    let mut seen = Vec::new();
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the server did not start; it said:\n{}", seen.join("\n")));
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) {
            if json["fields"]["message"] == "listening" {
                break format!(
                    "http://{}",
                    json["fields"]["address"].as_str().expect("address")
                );
            }
        }
        seen.push(line);
    };
    Server {
        child,
        base,
        logs: rx,
    }
}

impl Server {
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for a log line containing `needle` (bounded).
    pub fn wait_for_log(&self, needle: &str) -> String {
        loop {
            let line = self
                .logs
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server did not exit");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
