//! The key-rotation runbook of the README through a real `serve`: a new
//! key is activated, the old key's AuthIDs Duplicati keeps pasting are
//! carried over, the old key is retired and deleted while Box goes on
//! rotating, across a restart; an AuthID of the old key never presented
//! gets the 401; `keys retire --compromised` ends the carry-overs. On the
//! embedded store and on Redis.

use std::path::Path;
use std::process::Command;

use oauth_broker::authid::Claims;
use oauth_broker::authid::keydir::KeyDir;
use oauth_broker::clock::{Clock, SystemClock};
use oauth_broker::secret::Sensitive;
use serde_json::Value;

use crate::support::broker::{CLIENT_ID, CLIENT_SECRET, entries_for};
use crate::support::mock_provider::{MockProvider, Rotation};
use crate::support::process::{self, BIN};
use crate::support::redis::{RedisServer, Reply};
use crate::support::store::assert_holds_none_of;

/// Where the broker keeps its state in one run of the story.
enum Backend {
    Embedded,
    Redis(RedisServer),
}

impl Backend {
    fn env(&self) -> Option<(&'static str, String)> {
        match self {
            Self::Embedded => None,
            Self::Redis(server) => Some(("STORE", server.url())),
        }
    }

    /// Every key and value the store holds.
    fn dump(&self, dir: &Path) -> Vec<(String, Vec<u8>)> {
        match self {
            Self::Embedded => std::fs::read_dir(dir.join("data"))
                .unwrap()
                .map(|e| {
                    let path = e.unwrap().path();
                    (path.display().to_string(), std::fs::read(&path).unwrap())
                })
                .collect(),
            Self::Redis(server) => server
                .keys("*")
                .into_iter()
                .filter_map(|key| match server.command(&["GET", &key]) {
                    Reply::Bulk(Some(value)) => Some((key, value)),
                    _ => None,
                })
                .collect(),
        }
    }
}

struct Story {
    boxcom: MockProvider,
    env: Vec<(&'static str, String)>,
    tmp: tempfile::TempDir,
    old: String,
    client: reqwest::Client,
}

impl Story {
    async fn new(backend: &Backend) -> Self {
        let boxcom = MockProvider::start().await;
        boxcom.set_rotation(Rotation::SingleUse);
        // Too short-lived to be cached: every run calls the provider.
        boxcom.set_access_token_lifetime(60);
        boxcom.set_client(CLIENT_ID, CLIENT_SECRET);
        let mut env = vec![
            (
                "CONFIGFILE",
                Value::Array(entries_for(&boxcom, &["box.com"])).to_string(),
            ),
            (
                "SECRETS",
                format!(r#"{{"TEST_SECRET": "{CLIENT_SECRET}"}}"#),
            ),
            ("SERVICES", "box.com".into()),
        ];
        env.extend(backend.env());
        let tmp = tempfile::tempdir().unwrap();
        let old = KeyDir::new(tmp.path().join("keys"))
            .generate(SystemClock.now() - 86_400, true)
            .unwrap();
        Self {
            boxcom,
            env,
            tmp,
            old,
            client: reqwest::Client::new(),
        }
    }

    /// An AuthID of a Box login sealed with the current primary key, as a
    /// login of the time made it (naming no client).
    fn pasted(&self) -> String {
        let ring = KeyDir::new(self.tmp.path().join("keys")).load().unwrap();
        let rt = Sensitive::new(self.boxcom.issue_refresh_token());
        ring.seal(&Claims::new("box.com", rt, 1)).unwrap()
    }

    fn serve(&self) -> process::Server {
        process::start(&["serve"], &self.env, self.tmp.path())
    }

    /// `oauth-broker keys ...` in the story's directory; must succeed.
    fn keys(&self, args: &[&str]) {
        let out = Command::new(BIN)
            .arg("keys")
            .args(args)
            .current_dir(self.tmp.path())
            .env_clear()
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `GET /refresh` with the AuthID: the status and, on 200, the body.
    async fn refresh(&self, server: &process::Server, authid: &str) -> (u16, Value) {
        let reply = self
            .client
            .get(format!("{}/refresh", server.base))
            .header("X-AuthID", authid)
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    /// A run of Duplicati with the pasted AuthID: it gets a token.
    async fn run_ok(&self, server: &process::Server, authid: &str, at: &str) -> String {
        let (status, json) = self.refresh(server, authid).await;
        assert_eq!(status, 200, "{at}: {json}");
        let token = json["access_token"].as_str().unwrap();
        assert!(self.boxcom.is_valid_access_token(token), "{at}");
        json["v2_authid"].as_str().expect("re-sealed").to_string()
    }

    async fn metric(&self, server: &process::Server, series: &str) -> String {
        let text = reqwest::get(format!("{}/metrics", server.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .to_string()
    }
}

/// Reloads the keys of a running server and waits until it has.
fn reload(server: &process::Server) {
    server.signal("HUP");
    server.wait_for_log("keys loaded");
}

async fn stop(mut server: process::Server) {
    server.signal("TERM");
    let code = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

async fn retirement_story(backend: Backend) {
    let story = Story::new(&backend).await;
    let pasted = story.pasted();
    let never_seen = story.pasted();
    story.keys(&["generate", "--activate"]);
    let server = story.serve();
    let mut seen = vec![pasted.clone(), never_seen.clone()];
    seen.push(
        story
            .run_ok(&server, &pasted, "before the retirement")
            .await,
    );
    let first = format!("oauth_broker_authids_first_opened{{kid=\"{}\"}}", story.old);
    assert!(story.metric(&server, &first).await.ends_with(" 1"));

    story.keys(&["retire", &story.old, "--yes"]);
    reload(&server);
    seen.push(story.run_ok(&server, &pasted, "after the retirement").await);
    let carried = format!("oauth_broker_authids_carried_over{{kid=\"{}\"}}", story.old);
    assert!(story.metric(&server, &carried).await.ends_with(" 1"));
    assert_eq!(story.refresh(&server, &never_seen).await.0, 401);
    stop(server).await;

    // A restart, then the retired private key deleted.
    let server = story.serve();
    seen.push(story.run_ok(&server, &pasted, "after a restart").await);
    let retired = story.tmp.path().join("keys/retired");
    std::fs::remove_file(retired.join(format!("{}.json", story.old))).unwrap();
    reload(&server);
    seen.push(
        story
            .run_ok(&server, &pasted, "after the key was deleted")
            .await,
    );
    assert_eq!(story.refresh(&server, &never_seen).await.0, 401);

    story.keys(&["retire", &story.old, "--compromised", "--yes"]);
    reload(&server);
    let (status, json) = story.refresh(&server, &pasted).await;
    assert_eq!(status, 401, "{json}");
    assert!(json.to_string().contains("exposed"), "{json}");
    stop(server).await;

    assert_eq!(story.boxcom.token_calls(), 4, "one refresh per run");
    assert_eq!(
        story.boxcom.spent_token_presentations(),
        0,
        "a spent token reached the provider"
    );
    seen.extend(story.boxcom.issued_tokens());
    assert_holds_none_of(&backend.dump(story.tmp.path()), &seen);
}

#[tokio::test]
async fn a_retired_and_deleted_key_keeps_carried_over_box_logins_on_the_embedded_store() {
    retirement_story(Backend::Embedded).await;
}

#[tokio::test]
async fn a_retired_and_deleted_key_keeps_carried_over_box_logins_on_redis() {
    retirement_story(Backend::Redis(RedisServer::start())).await;
}
