//! The default store of `serve` (embedded, in `DATA_DIR`) with the real
//! binary: rotating logins survive restarts, and a second process on the
//! same `DATA_DIR` is refused with a clear error.

use std::process::{Command, Stdio};
use std::time::Duration;

use oauth_broker::authid::Claims;
use oauth_broker::authid::keydir::KeyDir;
use oauth_broker::clock::{Clock, SystemClock};
use oauth_broker::secret::Sensitive;
use serde_json::Value;

use crate::support::broker::{CLIENT_ID, CLIENT_SECRET, entries_for};
use crate::support::mock_provider::{MockProvider, Rotation};
use crate::support::process::{self, BIN};
use crate::support::store::assert_holds_none_of;

fn env_for(boxcom: &MockProvider, jotta: &MockProvider) -> Vec<(&'static str, String)> {
    boxcom.set_client(CLIENT_ID, CLIENT_SECRET);
    jotta.set_client("jottacli", "");
    let mut entries = entries_for(boxcom, &["box.com"]);
    entries.extend(entries_for(jotta, &["jottacloud"]));
    vec![
        ("CONFIGFILE", Value::Array(entries).to_string()),
        (
            "SECRETS",
            format!(r#"{{"TEST_SECRET": "{CLIENT_SECRET}"}}"#),
        ),
        ("SERVICES", "box.com,jottacloud".into()),
    ]
}

/// Stops the server as an operator does (SIGTERM), or kills it (SIGKILL)
/// as a crash would.
async fn stop(mut server: process::Server, crash: bool) {
    server.signal(if crash { "KILL" } else { "TERM" });
    let code = tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap();
    assert_eq!(code, if crash { None } else { Some(0) });
}

#[tokio::test]
async fn box_and_jottacloud_logins_survive_a_restart_and_a_crash_of_one_instance() {
    let boxcom = MockProvider::start().await;
    boxcom.set_rotation(Rotation::SingleUse);
    let jotta = MockProvider::start().await;
    jotta.set_rotation(Rotation::SingleUseReuseDetection);
    // Access tokens too short-lived to be kept: every run calls the
    // provider, with the newest refresh token the store knows.
    boxcom.set_access_token_lifetime(60);
    jotta.set_access_token_lifetime(60);
    let env = env_for(&boxcom, &jotta);
    let tmp = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(tmp.path().join("keys"));
    keys.generate(SystemClock.now(), true).unwrap();
    let keyring = keys.load().unwrap();
    let pasted: Vec<(&MockProvider, String)> = [(&boxcom, "box.com"), (&jotta, "jottacloud")]
        .into_iter()
        .map(|(mock, id)| {
            let claims = Claims::new(id, Sensitive::new(mock.issue_refresh_token()), 1);
            (mock, keyring.seal(&claims).unwrap())
        })
        .collect();
    let client = reqwest::Client::new();
    let mut seen: Vec<String> = pasted.iter().map(|(_, a)| a.clone()).collect();
    for run in 0..3 {
        // The first start and two restarts, on the same DATA_DIR (./data):
        // after a clean stop, then after a crash.
        let server = process::start(&["serve"], &env, tmp.path());
        for (mock, authid) in &pasted {
            let reply = client
                .get(format!("{}/refresh", server.base))
                .header("X-AuthID", authid)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 200, "run {run}");
            let json: Value = reply.json().await.unwrap();
            assert!(mock.is_valid_access_token(json["access_token"].as_str().unwrap()));
            let v2 = json["v2_authid"].as_str().expect("v2_authid").to_string();
            let newest = keyring.open(v2.strip_prefix("v3:").unwrap()).unwrap();
            assert!(mock.is_valid_refresh_token(newest.claims.rt.expose()));
            seen.push(v2);
        }
        stop(server, run == 1).await;
    }
    for mock in [&boxcom, &jotta] {
        assert_eq!(mock.token_calls(), 3, "one refresh per run");
        assert_eq!(
            mock.spent_token_presentations(),
            0,
            "a spent token reached the provider"
        );
    }
    // The store's file holds no token and no AuthID.
    let mut dump = Vec::new();
    for entry in std::fs::read_dir(tmp.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        dump.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    let mut secrets = seen;
    secrets.extend(boxcom.issued_tokens());
    secrets.extend(jotta.issued_tokens());
    assert_holds_none_of(&dump, &secrets);
}

#[tokio::test]
async fn a_second_serve_on_the_same_data_dir_exits_with_a_clear_error() {
    let boxcom = MockProvider::start().await;
    let jotta = MockProvider::start().await;
    let env = env_for(&boxcom, &jotta);
    let tmp = tempfile::tempdir().unwrap();
    KeyDir::new(tmp.path().join("keys"))
        .generate(SystemClock.now(), true)
        .unwrap();
    let first = process::start(&["serve"], &env, tmp.path());
    let mut second = Command::new(BIN);
    second
        .arg("serve")
        .current_dir(tmp.path())
        .env_clear()
        .env("LISTEN", "127.0.0.1:0")
        .env("LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in &env {
        second.env(k, v);
    }
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || second.output().expect("run oauth-broker")),
    )
    .await
    .expect("the second process exits")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("DATA_DIR"), "{stderr}");
    assert!(
        stderr.contains("in use by another oauth-broker process"),
        "{stderr}"
    );
    assert!(stderr.contains("STORE=redis://"), "{stderr}");
    // The first one serves on.
    let ready: Value = reqwest::get(format!("{}/ready", first.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["store"],
        serde_json::json!({"kind": "embedded", "up": true})
    );
    stop(first, false).await;
}
