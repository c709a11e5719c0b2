//! Keys from a Kubernetes Secret: `KEYS_DIR` laid out exactly as the kubelet
//! mounts a Secret volume, updated the way the kubelet updates it.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use oauth_broker::authid::Claims;
use oauth_broker::authid::keydir::KeyDir;
use oauth_broker::clock::{Clock, SystemClock};
use oauth_broker::secret::Sensitive;

use crate::lifecycle::{kid_of, provider_env};
use crate::support::mock_provider::MockProvider;
use crate::support::process;

/// Writes one version of the Secret as the kubelet does: the files in a new
/// timestamped folder (mode 0644, the default without `defaultMode`), a
/// top-level link `name -> ..data/name` for each, and `..data` pointed at
/// the new folder by renaming a fresh link over it (atomic).
fn write_secret_version(dir: &Path, stamp: &str, files: &[(&str, String)]) {
    let folder_name = format!("..{stamp}");
    let folder = dir.join(&folder_name);
    std::fs::create_dir(&folder).unwrap();
    for (name, text) in files {
        let path = folder.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    symlink(&folder_name, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if !link.is_symlink() {
            symlink(format!("..data/{name}"), link).unwrap();
        }
    }
}

/// A fresh key: its kid and its JWK file text, as `keys generate` writes it.
fn new_key(scratch: &KeyDir) -> (String, String) {
    let kid = scratch.generate(SystemClock.now(), false).unwrap();
    let text = std::fs::read_to_string(scratch.path().join(format!("{kid}.json"))).unwrap();
    (kid, text)
}

async fn refresh(base: &str, authid: &str) -> serde_json::Value {
    let reply = reqwest::Client::new()
        .get(format!("{base}/refresh"))
        .header("X-AuthID", authid)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    reply.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_a_kubernetes_secret_take_a_new_primary_after_the_kubelet_swaps_it() {
    let mock = MockProvider::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let scratch = KeyDir::new(tmp.path().join("generated"));
    let (old, old_text) = new_key(&scratch);
    let (new, new_text) = new_key(&scratch);
    let keys = tmp.path().join("secret");
    std::fs::create_dir(&keys).unwrap();
    let old_file = format!("{old}.json");
    let new_file = format!("{new}.json");
    write_secret_version(
        &keys,
        "2026_11_29_12_00_00.123456789",
        &[
            (&old_file, old_text.clone()),
            ("primary", format!("{old}\n")),
        ],
    );

    let mut env = provider_env(&mock);
    env.push(("KEYS_DIR", keys.display().to_string()));
    let mut server = process::start(&["serve"], &env, tmp.path());
    let log_file = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("../test-logs")
        .join(format!("child-{}.log", server.child.id()));

    // An AuthID of the first primary opens and needs no migration.
    let ring = KeyDir::new(&keys).load().unwrap();
    let authid = ring
        .seal(&Claims::new(
            "googledrive",
            Sensitive::new(mock.issue_refresh_token()),
            SystemClock.now(),
        ))
        .unwrap();
    assert_eq!(kid_of(&authid), old);
    let reply = refresh(&server.base, &authid).await;
    assert!(reply.get("v2_authid").is_none(), "no migration asked");

    // The Secret gains a key that becomes primary: a new timestamped
    // folder, `..data` swapped over, and a new top-level link.
    write_secret_version(
        &keys,
        "2026_11_29_12_05_00.987654321",
        &[
            (&old_file, old_text),
            (&new_file, new_text),
            ("primary", format!("{new}\n")),
        ],
    );
    server.signal("HUP");
    let line = tokio::task::block_in_place(|| server.wait_for_log("keys loaded"));
    assert!(line.contains(&new), "{line}");

    // Another login under the old key (not a cached answer) still opens,
    // and its answer is re-sealed with the new primary.
    let authid = ring
        .seal(&Claims::new(
            "googledrive",
            Sensitive::new(mock.issue_refresh_token()),
            SystemClock.now(),
        ))
        .unwrap();
    let reply = refresh(&server.base, &authid).await;
    let migrated = reply["v2_authid"].as_str().expect("a re-sealed AuthID");
    assert_eq!(kid_of(migrated), new);

    // The layout itself is worth one warning (files readable by others),
    // not one per file or per reload, and nothing else warns.
    server.signal("TERM");
    tokio::task::spawn_blocking(move || server.wait_exit())
        .await
        .unwrap();
    let mut logs = String::new();
    for _ in 0..50 {
        logs = std::fs::read_to_string(&log_file).unwrap_or_default();
        if logs.contains("\"stopped\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("defaultMode: 0400"), "{}", warnings[0]);
}
