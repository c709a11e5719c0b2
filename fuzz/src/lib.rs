//! The fuzz targets' bodies, one function per target, so the libFuzzer
//! binaries in `fuzz_targets/` stay one line each and any other driver (a
//! corpus replay, a debugger session on one artifact) can call the same code.
//!
//! Every function takes raw bytes and must return without panicking,
//! whatever they hold: each parser sits on a path a request or an operator's
//! file reaches.

use std::collections::HashSet;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use oauth_broker::authid::{self, AuthIdText, Keyring, ServerKey};
use oauth_broker::login::state;
use oauth_broker::provider::catalogue::CatalogueSource;
use oauth_broker::provider::{Catalogue, RawAnswer, classify, retry_after};

/// A key used only here: the seed AuthIDs and login states in `corpus/` are
/// sealed with it, so the fuzzer starts from inputs that open all the way.
const FUZZ_KEY: &[u8] = include_bytes!("../fuzz-key.jwk");

/// A fixed "now" (2023-11-14) for parsers that take the time.
const NOW: i64 = 1_700_000_000;

static KEYRING: LazyLock<Keyring> = LazyLock::new(|| {
    let key = ServerKey::from_json(FUZZ_KEY).expect("fuzz-key.jwk is a valid private JWK");
    Keyring::new([key], "fuzz", HashSet::new()).expect("a keyring of one key")
});

/// The keyring the targets open with (kid `fuzz`).
pub fn keyring() -> &'static Keyring {
    &KEYRING
}

/// `authid::parse`, then `Keyring::open` for the v3 form: what `/refresh`
/// does with `X-AuthID`.
pub fn authid(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(AuthIdText::V3(compact)) = authid::parse(text) {
        let _ = keyring().open(compact);
    }
}

/// Opening the sealed `state` parameter of a login callback.
pub fn login_state(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = state::open(keyring(), text);
}

/// The whole catalogue build with the input as `CONFIGFILE`. The input is
/// passed as `base64:` so it is never taken for a file path and any bytes
/// (not only UTF-8) reach the parser.
pub fn provider_config(data: &[u8]) {
    let configfile = format!("base64:{}", STANDARD.encode(data));
    let source = CatalogueSource {
        configfile: Some(&configfile),
        secrets: Some(r#"{"FUZZ_SECRET": "fuzz-secret", "FUZZ_ID": "fuzz-client"}"#),
        services: None,
    };
    let env = |name: &str| (name == "FUZZ_ENV").then(|| "from-env".to_string());
    let _ = Catalogue::load(&source, &env);
}

/// `Retry-After` values, against times at both ends of the range.
pub fn retry_after(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    for now in [0, NOW, i64::MIN, i64::MAX] {
        let _ = retry_after::parse(value, now);
    }
}

/// A token-endpoint answer. Input: the status on the first line, the
/// `Retry-After` header on the second (empty: none), the body after.
pub fn token_answer(data: &[u8]) {
    let _ = classify(&raw_answer(data), NOW);
}

/// Splits a `token_answer` input into the answer it describes.
pub fn raw_answer(data: &[u8]) -> RawAnswer {
    let (status_line, rest) = split_line(data);
    let (retry_line, body) = split_line(rest);
    let status = std::str::from_utf8(status_line)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(200);
    let retry_after =
        (!retry_line.is_empty()).then(|| String::from_utf8_lossy(retry_line).into_owned());
    RawAnswer {
        status,
        retry_after,
        body: Bytes::copy_from_slice(body),
    }
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
