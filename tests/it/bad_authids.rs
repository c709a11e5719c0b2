//! Hostile and broken AuthIDs: each gets a 4xx JSON error whose reason
//! never echoes the input, and none reaches a provider.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::support::broker::{Broker, assert_error_shape};
use crate::support::mock_provider::MockProvider;

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Replaces the protected header of a real AuthID.
fn with_header(authid: &str, header: &str) -> String {
    let mut parts: Vec<String> = authid[3..].split('.').map(str::to_string).collect();
    parts[0] = b64(header);
    format!("v3:{}", parts.join("."))
}

fn flip(authid: &str, part: usize) -> String {
    let mut parts: Vec<String> = authid[3..].split('.').map(str::to_string).collect();
    let mut chars: Vec<char> = parts[part].chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    parts[part] = chars.into_iter().collect();
    format!("v3:{}", parts.join("."))
}

/// The `kid` in the header of a sealed AuthID.
fn kid_of(good: &str) -> String {
    let header = URL_SAFE_NO_PAD
        .decode(good[3..].split('.').next().unwrap())
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// AuthIDs of the wrong shape: prefix, parts, encoding.
fn shape_cases(good: &str) -> Vec<(&'static str, String, StatusCode)> {
    vec![
        ("empty", "".into(), StatusCode::BAD_REQUEST),
        ("blank", "   ".into(), StatusCode::BAD_REQUEST),
        (
            "no prefix",
            "abcdefghijklmnop".into(),
            StatusCode::BAD_REQUEST,
        ),
        ("v1 prefix", "v1:abc:def".into(), StatusCode::BAD_REQUEST),
        ("v4 prefix", "v4:abcdef".into(), StatusCode::BAD_REQUEST),
        ("bare v3", "v3:".into(), StatusCode::BAD_REQUEST),
        ("one part", "v3:abcdef".into(), StatusCode::BAD_REQUEST),
        ("four parts", "v3:a.b.c.d".into(), StatusCode::BAD_REQUEST),
        (
            "six parts",
            format!("{good}.extra"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "JWS shape",
            "v3:eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "non-base64 part",
            "v3:!!!.b.c.d.e".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "header not JSON",
            with_header(good, "not json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "header is an array",
            with_header(good, "[1,2]"),
            StatusCode::BAD_REQUEST,
        ),
    ]
}

/// Well-formed AuthIDs whose JWE header asks for what the broker refuses:
/// algorithms the broker does not use (or none).
fn alg_cases(good: &str, kid: &str) -> Vec<(&'static str, String, StatusCode)> {
    let epk = r#""epk":{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}"#;
    vec![
        (
            "header without kid",
            with_header(
                good,
                &format!(r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM",{epk}}}"#),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "alg none",
            with_header(
                good,
                &format!(r#"{{"alg":"none","enc":"A256GCM","kid":"{kid}",{epk}}}"#),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "alg HS256",
            with_header(
                good,
                &format!(r#"{{"alg":"HS256","enc":"A256GCM","kid":"{kid}",{epk}}}"#),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "alg dir",
            with_header(
                good,
                &format!(r#"{{"alg":"dir","enc":"A256GCM","kid":"{kid}"}}"#),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "alg RSA",
            with_header(
                good,
                &format!(r#"{{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"{kid}"}}"#),
            ),
            StatusCode::UNAUTHORIZED,
        ),
    ]
}

/// Well-formed AuthIDs whose JWE header asks for what the broker refuses:
/// encryption and header features it refuses.
fn enc_cases(good: &str, kid: &str) -> Vec<(&'static str, String, StatusCode)> {
    let epk = r#""epk":{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}"#;
    vec![
        (
            "enc A128GCM",
            with_header(
                good,
                &format!(r#"{{"alg":"ECDH-ES+A256KW","enc":"A128GCM","kid":"{kid}",{epk}}}"#),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "enc CBC",
            with_header(
                good,
                &format!(r#"{{"alg":"ECDH-ES+A256KW","enc":"A256CBC-HS512","kid":"{kid}",{epk}}}"#),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "zip",
            with_header(
                good,
                &format!(
                    r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","zip":"DEF","kid":"{kid}",{epk}}}"#
                ),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "crit",
            with_header(
                good,
                &format!(
                    r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","crit":["x"],"kid":"{kid}",{epk}}}"#
                ),
            ),
            StatusCode::UNAUTHORIZED,
        ),
    ]
}

/// Well-formed AuthIDs whose JWE header asks for what the broker refuses:
/// a key URL, an unknown or odd key id, a bad public point.
fn key_cases(good: &str, kid: &str) -> Vec<(&'static str, String, StatusCode)> {
    let epk = r#""epk":{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}"#;
    vec![
        (
            "jku",
            with_header(
                good,
                &format!(
                    r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","jku":"https://evil.example/k","kid":"{kid}",{epk}}}"#
                ),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "unknown kid",
            with_header(
                good,
                &format!(r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","kid":"nosuchkey",{epk}}}"#),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "path kid",
            with_header(
                good,
                &format!(
                    r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","kid":"../../etc/passwd",{epk}}}"#
                ),
            ),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "invalid epk point",
            with_header(
                good,
                &format!(r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","kid":"{kid}",{epk}}}"#),
            ),
            StatusCode::UNAUTHORIZED,
        ),
    ]
}

/// A sealed AuthID altered, sealed elsewhere, too long, or of the old form.
fn tamper_cases(
    broker: &Broker,
    good: &str,
    foreign: &str,
) -> Vec<(&'static str, String, StatusCode)> {
    vec![
        ("tampered header", flip(good, 0), StatusCode::BAD_REQUEST),
        ("tampered key", flip(good, 1), StatusCode::UNAUTHORIZED),
        (
            "tampered ciphertext",
            flip(good, 3),
            StatusCode::UNAUTHORIZED,
        ),
        ("tampered tag", flip(good, 4), StatusCode::UNAUTHORIZED),
        (
            "short IV",
            {
                let mut p: Vec<&str> = good[3..].split('.').collect();
                p[2] = "AAAA";
                format!("v3:{}", p.join("."))
            },
            StatusCode::BAD_REQUEST,
        ),
        (
            "other server's key",
            foreign.to_string(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "over-long",
            format!("v3:{}", "A".repeat(20_000)),
            StatusCode::BAD_REQUEST,
        ),
        (
            "non-ASCII",
            format!("{good}\u{e9}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "inner space",
            good.replacen('.', " .", 1),
            StatusCode::BAD_REQUEST,
        ),
        (
            "legacy without token",
            "v2:googledrive:".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "legacy bad provider",
            "v2:Google Drive:abc".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "legacy unknown provider",
            "v2:nosuchprovider:abc".into(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "sealed for unknown provider",
            broker.seal("nosuchprovider", "rt-x"),
            StatusCode::BAD_REQUEST,
        ),
    ]
}

#[tokio::test]
async fn thirty_kinds_of_bad_authid_each_get_a_clear_4xx() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let good = broker.seal("googledrive", "rt-bad-authid-test-token");
    let foreign_broker = Broker::new(&mock);
    let foreign = foreign_broker.seal("googledrive", "rt-foreign");
    let kid = kid_of(&good);
    let mut cases = shape_cases(&good);
    cases.extend(alg_cases(&good, &kid));
    cases.extend(enc_cases(&good, &kid));
    cases.extend(key_cases(&good, &kid));
    cases.extend(tamper_cases(&broker, &good, &foreign));
    assert!(cases.len() >= 30);
    for (name, authid, status) in &cases {
        // Header values cannot carry non-ASCII, and a header this long is
        // refused as such (431): send those in a form.
        let reply = if authid.is_ascii() && authid.len() < 8 * 1024 {
            broker.refresh(authid).await
        } else {
            let encoded: String = url::form_urlencoded::byte_serialize(authid.as_bytes()).collect();
            broker
                .post_form("/refresh", &format!("authid={encoded}"))
                .await
        };
        assert_eq!(reply.status, *status, "{name}: {}", reply.body);
        assert_error_shape(&reply);
        let reason = reply.header("x-reason").unwrap();
        let trimmed = authid.trim();
        if trimmed.len() > 3 {
            assert!(
                !reason.contains(trimmed),
                "{name}: the reason echoes the input"
            );
            assert!(
                !reply.body.contains(trimmed),
                "{name}: the body echoes the input"
            );
        }
        if *status == StatusCode::UNAUTHORIZED {
            assert!(reason.contains("create a new AuthID"), "{name}: {reason}");
        }
    }
    assert_eq!(mock.token_calls(), 0, "no bad AuthID reached the provider");
}
