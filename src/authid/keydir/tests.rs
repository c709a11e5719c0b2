//! A key directory as an operator and a Kubernetes Secret shape it:
//! admin operations, bad files named, and updates noticed.

use super::*;

#[test]
fn generate_list_activate_retire() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path().join("keys"));
    let first = dir.generate(1_700_000_000, false).unwrap();
    assert!(first.starts_with("20231114-"));
    // A lone key becomes primary on its own.
    assert_eq!(dir.load().unwrap().primary().kid(), first);
    let second = dir.generate(1_700_000_100, false).unwrap();
    let rows = dir.list().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().any(|r| r.kid == first && r.primary));
    assert!(rows.iter().any(|r| r.kid == second && !r.primary));

    let mode = fs::metadata(dir.key_path(&second))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    assert!(dir.retire(&first, false).unwrap_err().contains("primary"));
    dir.activate(&second).unwrap();
    assert_eq!(dir.load().unwrap().primary().kid(), second);
    dir.retire(&first, false).unwrap();
    let ring = dir.load().unwrap();
    assert_eq!(ring.len(), 1);
    assert!(ring.get(&first).is_none());
    assert!(dir.activate("nope").is_err());
    assert!(dir.activate("../x").is_err());
}

#[test]
fn retired_key_is_reported_as_retired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path());
    let old = dir.generate(1_700_000_000, true).unwrap();
    let ring = dir.load().unwrap();
    let claims = super::super::Claims::new("dropbox", crate::secret::Sensitive::new("r"), 1);
    let authid = ring.seal(&claims).unwrap();
    dir.generate(1_700_000_100, true).unwrap();
    dir.retire(&old, false).unwrap();
    let ring = dir.load().unwrap();
    let err = ring.open(authid.strip_prefix("v3:").unwrap()).unwrap_err();
    assert_eq!(err, super::super::AuthIdError::RetiredKey);
}

#[test]
fn a_compromised_marker_outlives_the_deleted_key_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path());
    let old = dir.generate(1_700_000_000, true).unwrap();
    let ring = dir.load().unwrap();
    let claims = super::super::Claims::new("dropbox", crate::secret::Sensitive::new("r"), 1);
    let authid = ring.seal(&claims).unwrap();
    let new = dir.generate(1_700_000_100, true).unwrap();
    assert!(dir.retire(&new, true).unwrap_err().contains("primary"));
    dir.retire(&old, false).unwrap();
    assert!(!dir.load().unwrap().is_compromised(&old));
    fs::remove_file(tmp.path().join("retired").join(format!("{old}.json"))).unwrap();
    let ring = dir.load().unwrap();
    assert!(!ring.is_retired(&old), "a deleted key is simply unknown");
    // Found compromised after it was retired and deleted: still marked.
    dir.retire(&old, true).unwrap();
    let ring = dir.load().unwrap();
    assert!(ring.is_compromised(&old) && ring.is_retired(&old));
    let err = ring.open(authid.strip_prefix("v3:").unwrap()).unwrap_err();
    assert_eq!(err, super::super::AuthIdError::CompromisedKey);
    assert!(dir.retire("../x", true).is_err());
}

#[test]
fn a_compromised_marker_beside_the_keys_counts_as_in_a_flat_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path());
    dir.generate(1_700_000_000, true).unwrap();
    fs::write(tmp.path().join("20250101-aa.compromised"), "").unwrap();
    fs::write(tmp.path().join("..data.compromised"), "").unwrap();
    let ring = dir.load().unwrap();
    assert!(ring.is_compromised("20250101-aa"));
    assert_eq!(ring.compromised().len(), 1, "only valid kids");
}

#[test]
fn every_bad_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path());
    fs::write(tmp.path().join("a.json"), "not json").unwrap();
    fs::write(
        tmp.path().join("b.json"),
        "{\"kty\":\"oct\",\"k\":\"AAAA\",\"kid\":\"b\"}",
    )
    .unwrap();
    fs::write(tmp.path().join("README.md"), "ignored").unwrap();
    let problems = dir.load().unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("a.json"));
    assert!(problems[1].contains("b.json"));
}

#[test]
fn misnamed_file_and_dangling_primary_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = KeyDir::new(tmp.path());
    let kid = dir.generate(1_700_000_000, true).unwrap();
    fs::rename(dir.key_path(&kid), tmp.path().join("other.json")).unwrap();
    assert!(dir.load().unwrap_err()[0].contains("name it"));
    fs::rename(tmp.path().join("other.json"), dir.key_path(&kid)).unwrap();
    fs::write(tmp.path().join("primary"), "missing\n").unwrap();
    assert!(dir.load().unwrap_err()[0].contains("missing"));
}

#[test]
fn empty_or_missing_dir_explains_how_to_make_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let err = KeyDir::new(tmp.path()).load().unwrap_err();
    assert!(err[0].contains("keys generate"));
    let err = KeyDir::new(tmp.path().join("absent")).load().unwrap_err();
    assert!(err[0].contains("keys generate"));
}

/// Lays `files` out as the kubelet mounts a Secret: a timestamped
/// folder, `..data` linking to it, and top-level links into `..data`.
fn kubernetes_secret(dir: &Path, stamp: &str, files: &[(String, String)]) {
    use std::os::unix::fs::symlink;
    let folder = dir.join(format!("..{stamp}"));
    fs::create_dir_all(&folder).unwrap();
    for (name, text) in files {
        fs::write(folder.join(name), text).unwrap();
        fs::set_permissions(folder.join(name), fs::Permissions::from_mode(0o644)).unwrap();
        if !dir.join(name).is_symlink() {
            symlink(format!("{KUBERNETES_DATA_LINK}/{name}"), dir.join(name)).unwrap();
        }
    }
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{stamp}"), &tmp).unwrap();
    fs::rename(&tmp, dir.join(KUBERNETES_DATA_LINK)).unwrap();
}

#[test]
fn a_kubernetes_secret_layout_loads_and_its_update_is_noticed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, a) = ServerKey::generate("20261129-aaaa0001", 1).unwrap();
    let (_, b) = ServerKey::generate("20261129-bbbb0002", 2).unwrap();
    let a_file = ("20261129-aaaa0001.json".to_string(), a.to_string());
    let b_file = ("20261129-bbbb0002.json".to_string(), b.to_string());
    let primary = |kid: &str| (PRIMARY_FILE.to_string(), format!("{kid}\n"));
    kubernetes_secret(
        tmp.path(),
        "2026_11_29_12_00_00.000000001",
        &[a_file.clone(), primary("20261129-aaaa0001")],
    );
    let dir = KeyDir::new(tmp.path());
    let ring = dir.load().unwrap();
    assert_eq!(ring.len(), 1, "the ..data folder is not read as keys");
    assert_eq!(ring.primary().kid(), "20261129-aaaa0001");
    let before = dir.fingerprint();

    kubernetes_secret(
        tmp.path(),
        "2026_11_29_12_05_00.000000002",
        &[a_file, b_file, primary("20261129-bbbb0002")],
    );
    assert_ne!(dir.fingerprint(), before, "the watch sees the swap");
    let ring = dir.load().unwrap();
    assert_eq!(ring.len(), 2);
    assert_eq!(ring.primary().kid(), "20261129-bbbb0002");
}
