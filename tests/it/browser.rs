//! A real browser through the popup login: headless Chromium (the system's
//! `/usr/bin/chromium`) driven by `tests/browser/popup.mjs`. It needs
//! Chromium and Node.js; without them the test fails and says how to
//! install them, rather than passing unseen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use crate::support::broker::{BUILTIN, Broker, Setup};
use crate::support::mock_provider::MockProvider;

const INSTALL: &str = "apt-get update && apt-get install -y chromium nodejs npm";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("../screenshots")
}

/// Fails with the install command when a tool is missing.
fn require_tools() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the browser test needs /usr/bin/chromium; install it with: {INSTALL}"
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "the browser test needs node; install it with: {INSTALL}"
    );
    let browser_dir = manifest_dir().join("tests/browser");
    if !browser_dir.join("node_modules/playwright-core").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&browser_dir)
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "npm ci --prefix tests/browser failed; it needs npm ({INSTALL}) and access to the npm registry"
        );
    }
}

/// The page of a backup client's UI: opens the login popup and records
/// the message it gets back.
fn opener_page(broker_url: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backup client</title></head>
<body>
<button id="open" type="button">Connect to Google Drive</button>
<pre id="result"></pre>
<script>
window.received = null;
window.addEventListener('message', function (e) {{
  if (typeof e.data === 'string' && e.data.indexOf('authid:') === 0) {{
    window.received = e.data;
    window.receivedOrigin = e.origin;
    document.getElementById('result').textContent = 'received';
  }}
}});
document.getElementById('open').addEventListener('click', function () {{
  window.open('{broker_url}/?type=googledrive', 'oauth', 'width=600,height=700');
}});
</script>
</body></html>"#
    )
}

/// Serves the opener page on 127.0.0.1:0 and runs `popup.mjs` against it;
/// returns its JSON report.
async fn run_popup(broker_url: &str, mode: Option<&str>) -> serde_json::Value {
    let html = opener_page(broker_url);
    let opener = Router::new().route("/", get(move || async move { Html(html) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let opener_url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, opener).await;
    });

    let mut command = tokio::process::Command::new("node");
    command
        .arg(manifest_dir().join("tests/browser/popup.mjs"))
        .arg(&opener_url)
        .arg(screenshot_dir())
        .current_dir(manifest_dir())
        .kill_on_drop(true);
    if let Some(mode) = mode {
        command.arg(mode);
    }
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("the browser run took over 90 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().expect("a report line")).expect("JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popup_login_in_chromium_posts_the_authid_to_the_opener() {
    require_tools();
    let mock = MockProvider::start().await;
    let (broker, broker_url) = Broker::start(&mock, BUILTIN, oauth_broker::clock::system()).await;
    mock.set_require_pkce(true);
    let report = run_popup(&broker_url, None).await;

    let message = report["message"]
        .as_str()
        .expect("the opener got a message");
    let authid = message.strip_prefix("authid:").expect("authid: prefix");
    assert!(authid.starts_with("v3:"), "{message}");
    assert_eq!(
        report["popupAuthid"], authid,
        "the page shows the same AuthID"
    );
    assert_eq!(report["origin"], broker_url.as_str(), "sent by the broker");
    assert_eq!(
        report["errors"],
        serde_json::json!([]),
        "no script or CSP errors"
    );
    assert!(
        report["status"]
            .as_str()
            .unwrap()
            .starts_with("The AuthID was sent to the window that opened this one."),
        "{report}"
    );

    let refreshed = broker.refresh(authid).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.json()["type"], "googledrive");
    for shot in [
        "index-phone",
        "index-desktop",
        "logged-in-phone",
        "logged-in-desktop",
    ] {
        assert!(
            screenshot_dir().join(format!("{shot}.png")).exists(),
            "screenshot {shot}"
        );
    }
}

/// With `OPENER_ORIGINS` set to another origin the browser drops the
/// message; the page must not claim that the opener has the AuthID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_popup_whose_message_the_browser_drops_does_not_claim_a_hand_over() {
    require_tools();
    let mock = MockProvider::start().await;
    let mut setup = Setup::new(&mock, BUILTIN);
    setup.opener_origins = Some(vec!["https://backup.example".into()]);
    let (_broker, broker_url) = Broker::start_with(setup).await;
    let report = run_popup(&broker_url, Some("no-message")).await;

    assert!(report["message"].is_null(), "dropped: {report}");
    assert!(
        report["popupAuthid"].as_str().unwrap().starts_with("v3:"),
        "{report}"
    );
    let status = report["status"].as_str().unwrap();
    for claim in ["was handed", "has received", "You can close this window"] {
        assert!(!status.contains(claim), "{status}");
    }
    assert!(
        status.starts_with("If the window that opened this one shows https://backup.example,"),
        "{status}"
    );
    assert!(status.contains("copy the AuthID below"), "{status}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
}
