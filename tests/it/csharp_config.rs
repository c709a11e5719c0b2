//! The C# service's `config.json` as it ships (`fixtures/csharp-config.json`,
//! written in its shape: `serviceId` groups, the C# secret names, a retired
//! Live Connect entry) loads unchanged and serves every provider it enables.

use std::process::Command;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::broker::{CLIENT_ID, CLIENT_SECRET, Setup};
use crate::support::mock_provider::MockProvider;
use crate::support::process::BIN;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/fixtures/csharp-config.json"
);

/// Providers the fixture enables once its secrets are set.
const ENABLED: &[&str] = &[
    "googledrive",
    "googledocs",
    "gcs",
    "onedrivev2",
    "sharepoint",
    "msgroup",
    "box.com",
    "dropbox",
    "jottacloud",
    "pcloud",
];

/// Every secret the fixture names, in the C# names; Jottacloud's and the
/// retired Live Connect's are left out, as an operator would.
fn secrets(id: &str, secret: &str) -> Value {
    let mut map = serde_json::Map::new();
    for prefix in ["GD", "GCS", "MSGRAPH", "BOX", "DROPBOX", "PCLOUD"] {
        map.insert(format!("{prefix}_CLIENT_ID"), json!(id));
        map.insert(format!("{prefix}_CLIENT_SECRET"), json!(secret));
    }
    Value::Object(map)
}

fn check_config(services: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command
        .arg("check-config")
        .env_clear()
        .env("CONFIGFILE", FIXTURE)
        .env(
            "SECRETS",
            secrets("1234567890-csharp.apps.example", "csharp-secret-value").to_string(),
        )
        .env("PUBLIC_URL", "https://oauth.example.com");
    if let Some(services) = services {
        command.env("SERVICES", services);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn enabled_ids(table: &str) -> Vec<String> {
    table
        .lines()
        .skip_while(|l| !l.starts_with("ID "))
        .skip(1)
        .filter(|l| !l.starts_with(' '))
        .filter(|l| !l.contains(" disabled: "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_csharp_config_as_shipped_loads() {
    let (ok, stdout, stderr) = check_config(None);
    assert!(ok, "{stderr}\n{stdout}");
    assert_eq!(enabled_ids(&stdout), ENABLED, "{stdout}");
    let live_connect = stdout
        .lines()
        .find(|l| l.starts_with("onedrive "))
        .unwrap_or_else(|| panic!("no onedrive line:\n{stdout}"));
    assert!(
        live_connect.contains("disabled") && live_connect.contains("retired"),
        "{live_connect}"
    );
    let gcs = stdout.lines().find(|l| l.starts_with("gcs ")).unwrap();
    assert!(gcs.contains(" GCS "), "{gcs}");
    let jotta = stdout
        .lines()
        .find(|l| l.starts_with("jottacloud "))
        .unwrap();
    assert!(jotta.contains("(none)"), "public client: {jotta}");
    assert!(!stdout.contains("csharp-secret-value"));
    assert!(!stdout.contains("1234567890-csharp"));
}

#[test]
fn services_takes_csharp_groups_in_any_case() {
    let (ok, stdout, stderr) = check_config(Some("gd,DROPBOX"));
    assert!(ok, "{stderr}");
    assert_eq!(
        enabled_ids(&stdout),
        ["googledrive", "googledocs", "dropbox"]
    );
    let (ok, _, stderr) = check_config(Some("gd,nosuch"));
    assert!(!ok);
    assert!(stderr.contains("nosuch"), "{stderr}");
}

/// The fixture's entries with the endpoints of the mocks (the C# entries
/// name none: they start from their group's defaults).
fn fixture_at(mock: &MockProvider, jotta: &MockProvider) -> Vec<Value> {
    let mut entries: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    for entry in &mut entries {
        match entry["serviceId"].as_str() {
            Some("WL") => {}
            Some("JOTTA") => {
                entry["authUrl"] = json!(jotta.token_url());
                entry["allowedHosts"] = json!([jotta.host()]);
            }
            _ => {
                entry["authUrl"] = json!(mock.token_url());
                entry["loginUrl"] = json!(mock.authorize_url());
                entry["revokeUrl"] = json!(mock.revoke_url());
            }
        }
    }
    entries
}

#[tokio::test]
async fn every_provider_the_csharp_config_enables_serves_a_refresh() {
    let mock = MockProvider::start().await;
    let jotta = MockProvider::start().await;
    let entries = fixture_at(&mock, &jotta);
    let broker = Setup::new(&mock, &[])
        .adjust(move |list| *list = entries)
        .secrets(secrets(CLIENT_ID, CLIENT_SECRET).to_string())
        .build();
    jotta.set_client("jottacli", "");
    let enabled: Vec<&str> = broker
        .app
        .catalogue()
        .providers()
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(enabled, ENABLED);
    for id in ENABLED {
        let provider = broker.app.catalogue().get(id).unwrap();
        if provider.access_token_only {
            continue;
        }
        let issuer = if *id == "jottacloud" { &jotta } else { &mock };
        let authid = broker.seal(id, &issuer.issue_refresh_token());
        let reply = broker.refresh(&authid).await;
        assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.body);
        assert_eq!(reply.json()["type"], *id);
        let sent = issuer.last_token_request().unwrap();
        assert_eq!(sent["client_id"], provider.client_id, "{id}");
    }
}
