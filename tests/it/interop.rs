//! AuthIDs interoperate with Python jwcrypto in both directions (SPEC 2):
//! a standard JOSE library holding the private JWK file opens what the broker
//! seals, and a system holding only the public key mints AuthIDs the broker
//! opens.
//!
//! Needs `python3` with `jwcrypto` (`pip install jwcrypto`). Without it the
//! tests fail rather than skip: the contract is not checked otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use oauth_broker::authid::keydir::KeyDir;
use oauth_broker::authid::{self, AuthIdText};

const BROKER: &str = env!("CARGO_BIN_EXE_oauth-broker");
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/jwcrypto_interop.py"
);

/// A refresh token of realistic size (~100 characters, Google-like shape).
const REFRESH_TOKEN: &str = "1//0gLq7Xy3kVnA2CgYIARAAGBASNwF-L9IrZc4pQm8sT1uVwXyZ0aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4yZ5aB6cD7eF8gH";

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Fails the test (never skips) when jwcrypto cannot be imported.
fn require_jwcrypto() {
    let status = Command::new(python())
        .args(["-c", "import jwcrypto"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => panic!(
            "the jwcrypto interoperability test needs Python 3 with jwcrypto: \
             run `pip install jwcrypto` (or set PYTHON to an interpreter that has it)"
        ),
    }
}

/// Runs a command with `input` on stdin; returns its output.
fn run(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn stdout_ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 output")
}

fn broker(keys_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BROKER);
    cmd.args(args)
        .arg("--keys-dir")
        .arg(keys_dir)
        .env_remove("KEYS")
        .env_remove("KEYS_DIR");
    cmd
}

fn script(args: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(SCRIPT).args(args);
    cmd
}

/// A fresh key directory with one primary key made by the broker's CLI.
fn key_dir() -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("keys");
    let out = run(&mut broker(&dir, &["keys", "generate", "--activate"]), "");
    let kid = stdout_ok("keys generate", &out).trim().to_string();
    assert!(dir.join(format!("{kid}.json")).is_file());
    (tmp, dir, kid)
}

#[test]
fn jwcrypto_loads_the_key_file_as_written() {
    require_jwcrypto();
    let (_tmp, dir, kid) = key_dir();
    let key_file = dir.join(format!("{kid}.json"));
    let out = run(&mut script(&["check-key", key_file.to_str().unwrap()]), "");
    let report: serde_json::Value =
        serde_json::from_str(&stdout_ok("check-key", &out)).expect("JSON report");
    assert_eq!(report["kid"], kid.as_str());
    assert_eq!(report["has_private"], true);
    // The broker's extra `created` member is accepted and kept.
    let members = report["members"].as_array().unwrap();
    assert!(members.contains(&"created".into()), "{report}");
}

#[test]
fn jwcrypto_opens_an_authid_sealed_by_the_broker() {
    require_jwcrypto();
    let (_tmp, dir, kid) = key_dir();
    let out = run(
        &mut broker(
            &dir,
            &[
                "authid",
                "seal",
                "--service",
                "googledrive",
                "--client-id",
                "gd-client",
            ],
        ),
        REFRESH_TOKEN,
    );
    let authid = stdout_ok("authid seal", &out).trim().to_string();
    assert!(authid.starts_with("v3:"));

    let key_file = dir.join(format!("{kid}.json"));
    let out = run(
        &mut script(&[
            "open",
            "--key",
            key_file.to_str().unwrap(),
            "--svc",
            "googledrive",
            "--rt",
            REFRESH_TOKEN,
        ]),
        &authid,
    );
    let report: serde_json::Value =
        serde_json::from_str(&stdout_ok("jwcrypto open", &out)).expect("JSON report");
    assert_eq!(report["svc"], "googledrive");
    assert_eq!(report["rt_len"], REFRESH_TOKEN.len());
    assert_eq!(report["header"]["kid"], kid.as_str());
    assert_eq!(report["header"]["alg"], "ECDH-ES+A256KW");
    assert_eq!(report["header"]["enc"], "A256GCM");
    assert!(report["iat"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(report["jti"].as_str().unwrap().len(), 22);
}

#[test]
fn broker_opens_an_authid_sealed_by_jwcrypto_with_the_public_key() {
    require_jwcrypto();
    let (tmp, dir, kid) = key_dir();
    let out = run(&mut broker(&dir, &["keys", "public"]), "");
    let jwks = stdout_ok("keys public", &out);
    assert!(
        !jwks.contains("\"d\""),
        "the public set holds a private key"
    );
    let jwks_file = tmp.path().join("public.json");
    std::fs::write(&jwks_file, &jwks).expect("write JWK Set");

    let out = run(
        &mut script(&[
            "seal",
            "--jwks",
            jwks_file.to_str().unwrap(),
            "--svc",
            "onedrive",
        ]),
        REFRESH_TOKEN,
    );
    let authid = stdout_ok("jwcrypto seal", &out).trim().to_string();
    assert!(authid.starts_with("v3:"), "{authid}");

    // The CLI reads the provider and names the key.
    let out = run(&mut broker(&dir, &["authid", "inspect"]), &authid);
    let inspected = stdout_ok("authid inspect", &out);
    assert!(inspected.contains("format: v3"), "{inspected}");
    assert!(inspected.contains("provider: onedrive"), "{inspected}");
    assert!(
        inspected.contains(&format!("kid: {kid} (primary)")),
        "{inspected}"
    );
    assert!(!inspected.contains(REFRESH_TOKEN));

    // The library recovers the refresh token itself.
    let ring = KeyDir::new(&dir).load().expect("load keys");
    let AuthIdText::V3(jwe) = authid::parse(&authid).expect("parse") else {
        panic!("not a v3 AuthID");
    };
    let opened = ring.open(jwe).expect("open");
    assert_eq!(opened.claims.provider, "onedrive");
    assert_eq!(opened.claims.rt.expose(), REFRESH_TOKEN);
    assert_eq!(opened.kid, kid);
    assert!(opened.by_primary);
}
