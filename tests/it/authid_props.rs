//! Hostile input never panics the AuthID parser or the keyring: every input
//! ends in `Ok` or a typed `AuthIdError`. Cases range from arbitrary bytes to
//! compact JWEs that pass every structural check and reach the key agreement.

use std::collections::HashSet;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth_broker::authid::{self, AuthIdError, AuthIdText, Claims, Keyring, ServerKey};
use oauth_broker::secret::Sensitive;
use proptest::prelude::*;
use serde_json::{Value, json};

const KID: &str = "prop-key";

static RING: LazyLock<Keyring> = LazyLock::new(|| {
    let (key, _json) = ServerKey::generate(KID, 1_700_000_000).expect("generate");
    Keyring::new([key], KID, HashSet::from(["retired-key".to_string()])).expect("keyring")
});

/// The five parts of a genuine AuthID sealed with [`RING`].
static GENUINE: LazyLock<Vec<String>> = LazyLock::new(|| {
    let claims = Claims::new("googledrive", Sensitive::new("1//token"), 1_700_000_000);
    let authid = RING.seal(&claims).expect("seal");
    authid
        .strip_prefix("v3:")
        .expect("v3 prefix")
        .split('.')
        .map(str::to_string)
        .collect()
});

fn config() -> ProptestConfig {
    // Cases that reach the decrypter cost a P-256 key agreement each; these
    // counts keep the whole module to a few seconds in a debug build.
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Runs input through both entry points the server uses.
fn exercise(text: &str) {
    let _ = RING.open(text);
    if let Ok(AuthIdText::V3(jwe)) = authid::parse(text) {
        let _ = RING.open(jwe);
    }
    let _ = RING.open(text.strip_prefix("v3:").unwrap_or(text));
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A part in the base64url alphabet, of any length or of one of the lengths
/// A256GCM and A256KW parts really have (so the structural checks pass).
fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{0,64}",
        "[A-Za-z0-9_-]{16}",
        "[A-Za-z0-9_-]{22}",
        "[A-Za-z0-9_-]{54}",
        "[A-Za-z0-9_=+/. -]{0,24}",
        Just(String::new()),
    ]
}

fn point_coordinate() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 32).prop_map(|b| Value::from(b64(&b))),
        prop::collection::vec(any::<u8>(), 0..80).prop_map(|b| Value::from(b64(&b))),
        Just(Value::from("!!not base64!!")),
        Just(Value::from(0)),
        Just(Value::Null),
    ]
}

fn epk() -> impl Strategy<Value = Value> {
    let genuine = || {
        let header = URL_SAFE_NO_PAD.decode(&GENUINE[0]).expect("genuine header");
        let header: Value = serde_json::from_slice(&header).expect("genuine header JSON");
        header["epk"].clone()
    };
    prop_oneof![
        (point_coordinate(), point_coordinate())
            .prop_map(|(x, y)| json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})),
        (
            prop::sample::select(vec!["EC", "OKP", "RSA", "oct", ""]),
            prop::sample::select(vec!["P-256", "P-384", "P-521", "X25519", "secp256k1"]),
            point_coordinate(),
            point_coordinate()
        )
            .prop_map(|(kty, crv, x, y)| json!({"kty": kty, "crv": crv, "x": x, "y": y})),
        Just(json!({})),
        Just(json!("epk")),
        Just(genuine()),
    ]
}

/// A protected header that mostly names our key and algorithms, with a
/// random (often invalid) ephemeral key and the odd extra member.
fn header() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["ECDH-ES+A256KW", "ECDH-ES", "RSA-OAEP", "dir", "none"]),
        prop::sample::select(vec!["A256GCM", "A128GCM", "A256CBC-HS512"]),
        prop::sample::select(vec![KID, "retired-key", "other", ""]),
        epk(),
        prop::option::of(prop::sample::select(vec![
            "typ", "zip", "crit", "jku", "cty",
        ])),
    )
        .prop_map(|(alg, enc, kid, epk, extra)| {
            let mut h = json!({"alg": alg, "enc": enc, "kid": kid, "epk": epk});
            if let Some(name) = extra {
                h[name] = Value::from("DEF");
            }
            b64(&serde_json::to_vec(&h).expect("header JSON"))
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        exercise(&text);
        exercise(&format!("v3:{text}"));
        exercise(&format!("v2:{text}"));
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        exercise(&text);
        exercise(&format!("v3:{text}"));
    }

    #[test]
    fn five_random_parts_never_panic(parts in prop::collection::vec(part(), 5)) {
        let joined = parts.join(".");
        exercise(&joined);
        exercise(&format!("v3:{joined}"));
    }

    #[test]
    fn plausible_header_with_random_parts_never_panics(
        header in header(),
        key in prop_oneof!["[A-Za-z0-9_-]{54}", Just(String::new()), part()],
        iv in prop_oneof!["[A-Za-z0-9_-]{16}", part()],
        ciphertext in "[A-Za-z0-9_-]{1,200}",
        tag in prop_oneof!["[A-Za-z0-9_-]{22}", part()],
    ) {
        let compact = [header, key, iv, ciphertext, tag].join(".");
        exercise(&format!("v3:{compact}"));
    }

    #[test]
    fn genuine_header_with_random_parts_is_refused(
        key in "[A-Za-z0-9_-]{54}",
        iv in "[A-Za-z0-9_-]{16}",
        ciphertext in "[A-Za-z0-9_-]{1,200}",
        tag in "[A-Za-z0-9_-]{22}",
        keep in prop::array::uniform4(any::<bool>()),
    ) {
        // Each part is either the genuine one or random; unless all four are
        // genuine, the AuthID must be refused (without a panic).
        let g = &*GENUINE;
        let pick = |i: usize, random: &str| if keep[i - 1] { g[i].clone() } else { random.to_string() };
        let compact = [
            g[0].clone(),
            pick(1, &key),
            pick(2, &iv),
            pick(3, &ciphertext),
            pick(4, &tag),
        ]
        .join(".");
        let result = RING.open(&compact);
        if keep.iter().all(|k| *k) {
            prop_assert!(result.is_ok());
        } else {
            prop_assert!(result.is_err());
            let err = result.expect_err("refused");
            prop_assert!(
                matches!(err, AuthIdError::Decrypt | AuthIdError::Malformed(_)),
                "unexpected error {err:?}"
            );
        }
    }
}

#[test]
fn genuine_authid_opens() {
    let compact = GENUINE.join(".");
    let opened = RING.open(&compact).expect("open");
    assert_eq!(opened.claims.provider, "googledrive");
    assert_eq!(opened.claims.rt.expose(), "1//token");
}
