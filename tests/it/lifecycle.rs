//! The process: start-up checks, graceful shutdown, live key reload,
//! readiness and metrics, and the admin command line.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use oauth_broker::authid::Claims;
use oauth_broker::authid::keydir::KeyDir;
use oauth_broker::clock::{Clock, SystemClock};
use oauth_broker::secret::Sensitive;

use crate::support::broker::{Broker, CLIENT_SECRET, config_for};
use crate::support::mock_provider::{Fault, MockProvider};
use crate::support::process::{self, BIN};

pub(crate) fn provider_env(mock: &MockProvider) -> Vec<(&'static str, String)> {
    mock.set_client(crate::support::broker::CLIENT_ID, CLIENT_SECRET);
    // A quota far above the load these tests make.
    let mut config: serde_json::Value =
        serde_json::from_str(&config_for(mock, &["googledrive"])).unwrap();
    config[0]["rateLimit"] = serde_json::json!({"perSecond": 10000, "burst": 10000});
    vec![
        ("CONFIGFILE", config.to_string()),
        (
            "SECRETS",
            format!(r#"{{"TEST_SECRET": "{CLIENT_SECRET}"}}"#),
        ),
        ("SERVICES", "googledrive".into()),
    ]
}

fn seal(dir: &KeyDir, rt: &str) -> String {
    let ring = dir.load().unwrap();
    ring.seal(&Claims::new(
        "googledrive",
        Sensitive::new(rt),
        SystemClock.now(),
    ))
    .unwrap()
}

pub(crate) fn kid_of(authid: &str) -> String {
    use base64::Engine;
    let header = authid[3..].split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    let mock = MockProvider::start().await;
    mock.set_sticky_fault(Some(Fault::Delay(Duration::from_millis(800))));
    let tmp = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(tmp.path().join("keys"));
    keys.generate(SystemClock.now(), true).unwrap();
    let mut server = process::start(&["serve"], &provider_env(&mock), tmp.path());
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let request = client
                .get(format!("{}/refresh", server.base))
                .header("X-AuthID", seal(&keys, &mock.issue_refresh_token()));
            tokio::spawn(request.send())
        })
        .collect();
    while mock.token_calls() < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.signal("TERM");
    for request in requests {
        let response = request.await.unwrap().expect("the request was answered");
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        tokio::task::spawn_blocking(move || server.wait_exit())
            .await
            .unwrap(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_new_primary_key_fails_no_request_under_load() {
    let mock = MockProvider::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(tmp.path().join("keys"));
    let old = keys.generate(SystemClock.now(), true).unwrap();
    let server = process::start(&["serve"], &provider_env(&mock), tmp.path());
    let base = Arc::new(server.base.clone());
    let client = reqwest::Client::new();
    // Half the AuthIDs repeat (cache hits), half are new logins (misses).
    let repeated = Arc::new(seal(&keys, &mock.issue_refresh_token()));
    let fresh: Vec<String> = (0..160)
        .map(|_| seal(&keys, &mock.issue_refresh_token()))
        .collect();
    let fresh = Arc::new(std::sync::Mutex::new(fresh));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, base, repeated, fresh) = (
                client.clone(),
                Arc::clone(&base),
                Arc::clone(&repeated),
                Arc::clone(&fresh),
            );
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..40 {
                    let authid = if i % 2 == 0 {
                        repeated.to_string()
                    } else {
                        fresh.lock().unwrap().pop().unwrap()
                    };
                    let response = client
                        .get(format!("{base}/refresh"))
                        .header("X-AuthID", authid)
                        .send()
                        .await
                        .expect("answered");
                    statuses.push(response.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let new = keys.generate(SystemClock.now(), true).unwrap();
    server.signal("HUP");
    let line = tokio::task::block_in_place(|| server.wait_for_log("keys loaded"));
    assert!(line.contains(&new), "{line}");
    for worker in workers {
        let statuses = worker.await.unwrap();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    // An AuthID of the old key still works and migrates to the new one.
    let reply: serde_json::Value = client
        .get(format!("{base}/refresh"))
        .header("X-AuthID", {
            let ring = oauth_broker::authid::Keyring::new(
                [Arc::clone(keys.load().unwrap().get(&old).unwrap())],
                &old,
                Default::default(),
            )
            .unwrap();
            ring.seal(&Claims::new(
                "googledrive",
                Sensitive::new(mock.issue_refresh_token()),
                1,
            ))
            .unwrap()
        })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kid_of(reply["v2_authid"].as_str().unwrap()), new);
}

#[tokio::test]
async fn every_configuration_problem_is_reported_at_once_and_the_server_does_not_start() {
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("serve")
        .current_dir(tmp.path())
        .env_clear()
        .env("PUBLIC_URL", "not a url")
        .env("KEYS_DIR", tmp.path().join("nokeys"))
        .env("CONFIGFILE", r#"[{"id": "x", "clientId": "c", "authUrl": "http://example.com/t", "loginUrl": "https://x/a", "rotation": "often"}]"#)
        .env("SERVICES", "x,nosuch")
        .env("TRUSTED_PROXIES", "nonsense")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "PUBLIC_URL",
        "keys generate",
        "authUrl must be an https",
        "rotation",
        "nosuch",
        "TRUSTED_PROXIES",
    ] {
        assert!(stderr.contains(needle), "missing {needle}:\n{stderr}");
    }
}

#[tokio::test]
async fn check_config_prints_the_table_with_secrets_masked() {
    let output = Command::new(BIN)
        .arg("check-config")
        .env_clear()
        .env(
            "GD_CLIENT_ID",
            "1234567890-abcdefg.apps.googleusercontent.com",
        )
        .env("GD_CLIENT_SECRET", "GOCSPX-super-secret-value")
        .env("PUBLIC_URL", "https://oauth.example.com")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("redirect URI: https://oauth.example.com/logged-in"));
    assert!(stdout.contains("googledrive"));
    assert!(stdout.contains("********"));
    assert!(
        stdout.contains("disabled"),
        "providers without credentials are listed as such"
    );
    assert!(!stdout.contains("super-secret"));
    assert!(
        !stdout.contains("1234567890-abcdefg"),
        "client ids are shortened"
    );
}

/// Google Drive with its earlier client moved into previousClients and
/// marked as the owner of AuthIDs that name no client.
const UNLABELLED_GD: &str = r#"[{"id": "googledrive", "clientId": "gd-current", "clientSecret": "s",
    "previousClients": [{"clientId": "gd-moved", "clientSecret": "t", "unlabelled": true}]}]"#;

#[test]
fn check_config_shows_the_owner_of_unlabelled_authids_and_refuses_two() {
    let check = |config: &str| {
        Command::new(BIN)
            .arg("check-config")
            .env_clear()
            .env("CONFIGFILE", config)
            .env("SERVICES", "googledrive")
            .output()
            .unwrap()
    };
    let out = check(UNLABELLED_GD);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("AuthIDs that name no client"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("previous client"), "{line}");
    assert!(stdout.contains("(unlabelled: owns AuthIDs that name no client)"));

    let two = UNLABELLED_GD.replace(
        r#""unlabelled": true}]"#,
        r#""unlabelled": true}, {"clientId": "gd-older", "unlabelled": true}]"#,
    );
    let out = check(&two);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("marked unlabelled"), "{stderr}");
}

#[test]
fn authid_seal_asks_for_the_client_of_a_provider_it_is_not_configured_for() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = Command::new(BIN)
        .args(["authid", "seal", "--service", "dropbox"])
        .current_dir(tmp.path())
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--client-id"), "{stderr}");
}

#[tokio::test]
async fn keys_generate_then_seal_and_inspect_never_print_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(tmp.path())
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (kid, _) = run(&["keys", "generate", "--activate"], "");
    let kid = kid.trim();
    // Without --client-id the AuthID names the client that owns AuthIDs
    // naming none: the previous client marked unlabelled, here.
    std::fs::write(tmp.path().join("providers.json"), UNLABELLED_GD).unwrap();
    let seal = [
        "authid",
        "seal",
        "--service",
        "googledrive",
        "--configfile",
        "providers.json",
    ];
    let (authid, _) = run(&seal, "1//TOKEN-never-shown");
    assert!(authid.starts_with("v3:"));
    let (inspected, err) = run(&["authid", "inspect"], &authid);
    assert!(inspected.contains(&format!("kid: {kid}")), "{inspected}");
    assert!(inspected.contains("provider: googledrive"));
    assert!(!inspected.contains("TOKEN-never-shown") && !err.contains("TOKEN-never-shown"));
    assert!(inspected.contains("client: gd-moved"), "{inspected}");
    let (previous, _) = run(
        &[
            "authid",
            "seal",
            "--service",
            "onedrivev2",
            "--client-id",
            "old-registration-id",
        ],
        "M.R3-TOKEN-never-shown",
    );
    let (inspected, _) = run(&["authid", "inspect"], &previous);
    assert!(
        inspected.contains("client: old-registration-id"),
        "{inspected}"
    );
    let (list, _) = run(&["keys", "list"], "");
    assert!(list.contains(kid) && list.contains("yes"));
    // Retiring asks first and defaults to no.
    let (second, _) = run(&["keys", "generate"], "");
    let out = Command::new(BIN)
        .args(["keys", "retire", second.trim()])
        .current_dir(tmp.path())
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        tmp.path()
            .join("keys")
            .join(format!("{}.json", second.trim()))
            .exists()
    );
}

#[tokio::test]
async fn ready_reports_keys_and_providers() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let reply = broker.get("/ready").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["ready"], true);
    assert_eq!(broker.get("/health").await.status, 200);
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_a_refresh() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let authid = broker.seal("googledrive", &mock.issue_refresh_token());
    broker.refresh(&authid).await;
    broker.refresh(&authid).await;
    let reply = broker.get("/metrics").await;
    assert_eq!(reply.status, 200);
    let text = reply.body;
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels {line}");
        }
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value {line}"));
        samples.insert(series.to_string(), value.to_string());
    }
    assert_eq!(
        samples[r#"oauth_broker_refreshes_total{provider="googledrive",outcome="refreshed"}"#],
        "1"
    );
    assert_eq!(
        samples[r#"oauth_broker_refreshes_total{provider="googledrive",outcome="cache_hit"}"#],
        "1"
    );
    assert!(
        samples.keys().any(
            |k| k.starts_with("oauth_broker_upstream_duration_seconds_bucket{")
                && k.contains("provider=\"googledrive\"")
        ),
        "{text}"
    );
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("oauth_broker_authids_opened{kid="))
    );
    assert!(
        samples.contains_key(r#"oauth_broker_http_requests_total{route="/refresh",status="200"}"#)
    );
    assert!(!text.contains(&authid[3..20]), "no AuthID in labels");
}

#[tokio::test]
async fn keys_list_shows_how_many_authids_the_running_server_opened() {
    let mock = MockProvider::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(tmp.path().join("keys"));
    let kid = keys.generate(SystemClock.now(), true).unwrap();
    let server = process::start(&["serve"], &provider_env(&mock), tmp.path());
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let reply = client
            .get(format!("{}/refresh", server.base))
            .header("X-AuthID", seal(&keys, &mock.issue_refresh_token()))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
    let listen = server.base.trim_start_matches("http://").to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["keys", "list", "--listen", &listen])
            .current_dir(tmp.path())
            .env_clear()
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with(&kid))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        row.split_whitespace()
            .collect::<Vec<_>>()
            .ends_with(&["yes", "2", "0", "0"]),
        "{row}"
    );
}
