//! The seed corpus of the fuzz targets (`fuzz/corpus/<target>/`): how it is
//! made, and a check that its sealed samples still open with the fuzz key,
//! so a change of format cannot leave the fuzzer starting from inputs that
//! fail at the first step.
//!
//! Regenerate with `cargo test --test it write_fuzz_seeds -- --ignored`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oauth_broker::authid::{AuthIdText, Claims, Keyring, ServerKey};
use oauth_broker::login::state::{self, LoginState};
use oauth_broker::provider::retry_after::http_date;
use oauth_broker::secret::Sensitive;
use serde_json::json;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn fuzz_keyring() -> Keyring {
    let jwk = std::fs::read(fuzz_dir().join("fuzz-key.jwk")).unwrap();
    Keyring::new(
        [ServerKey::from_json(&jwk).unwrap()],
        "fuzz",
        HashSet::new(),
    )
    .unwrap()
}

const NOW: i64 = 1_700_000_000;

fn authids(ring: &Keyring) -> Vec<(&'static str, String)> {
    let seal = |provider: &str, rt: &str| {
        ring.seal(&Claims::new(provider, Sensitive::new(rt), NOW))
            .unwrap()
    };
    let valid = seal("googledrive", "1//0gFuzzRefreshToken");
    let foreign = Keyring::ephemeral()
        .unwrap()
        .seal(&Claims::new("dropbox", Sensitive::new("rt-foreign"), NOW))
        .unwrap();
    let mut tampered = valid.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    vec![
        ("valid-googledrive", valid.clone()),
        ("valid-box", seal("box.com", "rt-box-single-use")),
        ("foreign-key", foreign),
        ("tampered", String::from_utf8(tampered).unwrap()),
        ("truncated", valid[..valid.len() / 2].to_string()),
        ("trailing-newline", format!("{valid}\n")),
        ("legacy-v2", "v2:googledrive:1//0gLegacyToken".into()),
        ("legacy-no-token", "v2:box.com:".into()),
        ("empty-parts", "v3:....".into()),
        ("unknown-prefix", "v1:abc".into()),
    ]
}

fn login_states(ring: &Keyring) -> Vec<(&'static str, String)> {
    let full = state::seal(
        ring,
        &LoginState {
            provider: "googledrive".into(),
            fetch_token: Some("fetch-token-0123456789".into()),
            verifier: Some(Sensitive::new("pkce-verifier-0123456789abcdef")),
            nonce: oauth_broker::secret::random_id(),
            expires_at: NOW + 600,
        },
    )
    .unwrap();
    let minimal = state::seal(
        ring,
        &LoginState {
            provider: "box.com".into(),
            fetch_token: None,
            verifier: None,
            nonce: oauth_broker::secret::random_id(),
            expires_at: NOW + 600,
        },
    )
    .unwrap();
    let foreign = state::seal(
        &Keyring::ephemeral().unwrap(),
        &LoginState {
            provider: "dropbox".into(),
            fetch_token: None,
            verifier: None,
            nonce: oauth_broker::secret::random_id(),
            expires_at: NOW,
        },
    )
    .unwrap();
    vec![
        ("valid-full", full.clone()),
        ("valid-minimal", minimal),
        ("foreign-key", foreign),
        ("truncated", full[..full.len() / 2].to_string()),
        ("prefix-only", "ls1.".into()),
        ("no-prefix", "xyz".into()),
    ]
}

fn provider_configs() -> Vec<(&'static str, String)> {
    let entry = json!({
        "id": "googledrive",
        "clientId": "%FUZZ_ID%",
        "clientSecret": "%FUZZ_SECRET%",
        "authUrl": "http://127.0.0.1:9/token",
        "loginUrl": "http://127.0.0.1:9/authorize",
        "revokeUrl": "http://127.0.0.1:9/revoke",
    });
    let full = json!({
        "id": "example",
        "serviceId": "example",
        "name": "Example Cloud",
        "clientId": "fuzz-client",
        "clientSecret": "%FUZZ_ENV%",
        "authUrl": "https://auth.example.com/token",
        "loginUrl": "https://auth.example.com/authorize",
        "revokeUrl": "https://auth.example.com/revoke",
        "scope": "files offline_access",
        "extraUrl": "&access_type=offline&prompt=consent",
        "serviceLink": "https://example.com",
        "deAuthLink": "https://example.com/apps",
        "brandImage": "/static/example.png",
        "notes": "<p>notes</p>",
        "hidden": false,
        "noStateForTokenRequest": true,
        "noRedirectUriForRefreshRequest": true,
        "cliToken": false,
        "accessTokenOnly": false,
        "additionalElements": {"resource": "https://example.com"},
        "pkce": true,
        "rotation": "single-use",
        "allowedHosts": ["api.example.com", "eu.example.com:8443"],
        "rateLimit": {"perSecond": 5, "burst": 10},
        "aliases": ["ex"],
        "refreshTokenLifetime": 7776000,
        "comment": "ignored"
    });
    let pascal = json!({"Id": "box.com", "ClientId": "fuzz-client", "ClientSecret": "s"});
    let bad = json!([
        {"id": "Bad Id"},
        {"id": "plain", "clientId": "c", "authUrl": "http://example.com/token", "loginUrl": "ftp://x"},
        {"id": "rot", "clientId": "c", "authUrl": "https://x/token", "rotation": "sometimes",
         "rateLimit": {"perSecond": 0, "burst": 0}, "allowedHosts": ["a b"]},
        {"id": "dup", "clientId": "c", "authUrl": "https://x/token", "loginUrl": "https://x/a", "aliases": ["googledrive"]},
        {"id": "types", "hidden": "yes"},
        3
    ]);
    vec![
        ("override-builtin.json", json!([entry]).to_string()),
        ("new-provider.json", json!([full]).to_string()),
        (
            "object-form.json",
            json!({"providers": [entry, full]}).to_string(),
        ),
        (
            "pascal-case.json",
            json!({"Services": [pascal]}).to_string(),
        ),
        ("problems.json", bad.to_string()),
        (
            "missing-secret.json",
            r#"[{"id":"dropbox","clientId":"%NOPE%"}]"#.into(),
        ),
        ("not-an-array.json", r#"{"id":"googledrive"}"#.into()),
        (
            "truncated.json",
            r#"[{"id":"googledrive","clientId":"#.into(),
        ),
        ("empty.json", "[]".into()),
    ]
}

fn retry_afters() -> Vec<(&'static str, String)> {
    vec![
        ("seconds", "120".into()),
        ("zero", "0".into()),
        ("http-date", http_date(NOW + 90)),
        ("past-date", http_date(NOW - 90)),
        ("rfc850-date", "Sunday, 06-Nov-94 08:49:37 GMT".into()),
        ("asctime-date", "Sun Nov  6 08:49:37 1994".into()),
        ("negative", "-5".into()),
        ("overflow", "99999999999999999999999".into()),
        ("word", "soon".into()),
    ]
}

/// `token_answer` inputs as (name, status, `Retry-After`, body).
const TOKEN_ANSWERS: &[(&str, u16, &str, &str)] = &[
    (
        "google",
        200,
        "",
        r#"{"access_token":"ya29.a0Fuzz","expires_in":3599,"scope":"https://www.googleapis.com/auth/drive.file","token_type":"Bearer"}"#,
    ),
    (
        "microsoft-rotating",
        200,
        "",
        r#"{"token_type":"Bearer","scope":"Files.ReadWrite offline_access","expires_in":3600,"ext_expires_in":3600,"access_token":"EwB4Fuzz","refresh_token":"M.C105_Fuzz"}"#,
    ),
    (
        "box-single-use",
        200,
        "",
        r#"{"access_token":"box-at","expires_in":3600,"restricted_to":[],"refresh_token":"box-rt-next","token_type":"bearer"}"#,
    ),
    (
        "dropbox",
        200,
        "",
        r#"{"access_token":"sl.Fuzz","expires_in":14400,"token_type":"bearer"}"#,
    ),
    (
        "jottacloud",
        200,
        "",
        r#"{"access_token":"jwt.at","expires_in":"3600","refresh_expires_in":0,"refresh_token":"jwt.rt","token_type":"Bearer","not-before-policy":0,"session_state":"s","scope":"openid offline_access"}"#,
    ),
    (
        "pcloud",
        200,
        "",
        r#"{"result":0,"access_token":"pcloud-at","token_type":"bearer","uid":4242424,"locationid":2}"#,
    ),
    (
        "pcloud-error",
        200,
        "",
        r#"{"result":2000,"error":"Log in failed."}"#,
    ),
    (
        "invalid-grant",
        400,
        "",
        r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
    ),
    ("invalid-client", 401, "", r#"{"error":"invalid_client"}"#),
    (
        "dropbox-nested-error",
        400,
        "",
        r#"{"error":{".tag":"invalid_access_token"},"error_summary":"invalid_access_token/"}"#,
    ),
    (
        "nested-code",
        400,
        "",
        r#"{"error":{"code":"invalid_grant","message":"x"}}"#,
    ),
    (
        "microsoft-loop",
        400,
        "",
        r#"{"error":"invalid_grant","error_description":"AADSTS50196: The server terminated an operation because it encountered a client request loop."}"#,
    ),
    ("throttled-seconds", 429, "30", r#"{"error":"slow_down"}"#),
    ("server-error-retry", 500, "5", "oops"),
    (
        "html-500",
        500,
        "",
        "<html><body>Internal Server Error</body></html>",
    ),
    ("broken-json", 200, "", r#"{"access_token":"at-cut"#),
    ("no-access-token", 200, "", r#"{"token_type":"Bearer"}"#),
    ("redirect", 302, "", ""),
];

/// `token_answer` inputs: status line, `Retry-After` line, body.
fn token_answers() -> Vec<(&'static str, String)> {
    let answer = |status: u16, retry: &str, body: &str| format!("{status}\n{retry}\n{body}");
    let mut answers: Vec<_> = TOKEN_ANSWERS
        .iter()
        .map(|&(name, status, retry, body)| (name, answer(status, retry, body)))
        .collect();
    answers.push(("throttled-date", answer(503, &http_date(NOW + 120), "")));
    answers
}

fn all_seeds(ring: &Keyring) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    vec![
        ("authid", authids(ring)),
        ("login_state", login_states(ring)),
        ("provider_config", provider_configs()),
        ("retry_after", retry_afters()),
        ("token_answer", token_answers()),
    ]
}

#[test]
#[ignore = "rewrites fuzz/corpus; run by hand when a format changes"]
fn write_fuzz_seeds() {
    let ring = fuzz_keyring();
    for (target, seeds) in all_seeds(&ring) {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content) in seeds {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }
}

#[test]
fn the_sealed_fuzz_seeds_open_with_the_fuzz_key() {
    let ring = fuzz_keyring();
    let corpus = fuzz_dir().join("corpus");
    for name in ["valid-googledrive", "valid-box"] {
        let text = std::fs::read_to_string(corpus.join("authid").join(name)).unwrap();
        let Ok(AuthIdText::V3(compact)) = oauth_broker::authid::parse(&text) else {
            panic!("authid/{name} is not a v3 AuthID");
        };
        let opened = ring
            .open(compact)
            .unwrap_or_else(|e| panic!("authid/{name}: {e}"));
        assert_eq!(opened.kid, "fuzz");
    }
    for name in ["valid-full", "valid-minimal"] {
        let text = std::fs::read_to_string(corpus.join("login_state").join(name)).unwrap();
        state::open(&ring, &text).unwrap_or_else(|e| panic!("login_state/{name}: {e}"));
    }
}
