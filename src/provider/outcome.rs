//! What a token-endpoint answer means: a grant, or one of a few error
//! classes each with a clear consequence (log in again, operator must fix
//! the registration, try later, provider broken, provider too slow).

use std::time::Duration;

use serde_json::Value;

use super::client::{RawAnswer, TransportError};
use super::retry_after;
use crate::secret::Sensitive;

/// Longest access-token life believed from a provider (a year).
pub const MAX_EXPIRES_IN: u64 = 365 * 24 * 3600;

/// A successful token answer.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: Sensitive,
    /// Lifetime in seconds, when the provider says.
    pub expires_in: Option<u64>,
    /// A new refresh token, when the provider issued one.
    pub refresh_token: Option<Sensitive>,
}

/// Why a token request failed. Texts never include anything the provider
/// sent except a validated OAuth error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The grant is gone (revoked, expired, consent withdrawn).
    #[error("the provider no longer accepts this login ({code})")]
    Reauthorize { code: String },
    /// The broker's registration or request is wrong: an operator problem.
    #[error("the provider refused the broker's registration ({code})")]
    Misconfigured { code: String },
    /// The provider asks us to slow down.
    #[error("the provider is throttling requests")]
    Throttled { retry_after: Option<Duration> },
    /// The provider failed or answered nonsense.
    #[error("the provider failed: {detail}")]
    Unavailable { detail: &'static str },
    /// No answer within the upstream timeout.
    #[error("the provider did not answer in time")]
    Timeout,
}

impl UpstreamError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Reauthorize { .. } => "reauthorize",
            Self::Misconfigured { .. } => "misconfigured",
            Self::Throttled { .. } => "throttled",
            Self::Unavailable { .. } => "error",
            Self::Timeout => "timeout",
        }
    }
}

/// What the user was doing when the provider failed: the same failure is
/// told differently after a refresh (try again) and during a login (start
/// again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Refresh,
    Login,
}

impl UpstreamError {
    /// The failure in words a user can act on: what happened, then what to
    /// do. It holds nothing the provider sent (the OAuth code stays in the
    /// `Display` text, for the log). A refresh the provider refuses for
    /// good needs a new AuthID; the HTTP edge adds where to create one.
    pub fn advice(&self, attempt: Attempt) -> String {
        let login = attempt == Attempt::Login;
        match self {
            Self::Reauthorize { .. } if login => {
                "The provider refused the login (the code was used or has expired); start again"
                    .into()
            }
            Self::Reauthorize { .. } => "The provider no longer accepts this login".into(),
            Self::Misconfigured { .. } => {
                "The provider refused this server's registration; the operator must fix it".into()
            }
            Self::Throttled { .. } => format!(
                "The provider is throttling requests; {}",
                if login {
                    "wait a minute and start again"
                } else {
                    "try again later"
                }
            ),
            Self::Unavailable { detail } => format!(
                "The provider failed ({detail}); {}",
                if login {
                    "start again later"
                } else {
                    "try again later"
                }
            ),
            Self::Timeout => format!(
                "The provider did not answer in time; {}",
                if login {
                    "start again"
                } else {
                    "try again later"
                }
            ),
        }
    }
}

impl From<TransportError> for UpstreamError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Timeout => Self::Timeout,
            TransportError::Connect => Self::Unavailable {
                detail: "cannot connect",
            },
            TransportError::TooLarge => Self::Unavailable {
                detail: "answer too large",
            },
            TransportError::Broken => Self::Unavailable {
                detail: "broken answer",
            },
        }
    }
}

const REAUTHORIZE: &[&str] = &[
    "invalid_grant",
    "interaction_required",
    "consent_required",
    "login_required",
    "access_denied",
    "invalid_token",
    "expired_token",
    "unauthorized",
];
const MISCONFIGURED: &[&str] = &[
    "invalid_client",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_request",
    "unsupported_response_type",
    "redirect_uri_mismatch",
];
const TRY_LATER: &[&str] = &["temporarily_unavailable", "slow_down", "server_error"];

/// Microsoft's "too many requests for this login" loop detection.
const MS_LOOP: &str = "AADSTS50196";

/// Interprets a token-endpoint answer. `now` resolves HTTP-date
/// `Retry-After` values.
pub fn classify(answer: &RawAnswer, now: i64) -> Result<TokenGrant, UpstreamError> {
    let retry_after = answer
        .retry_after
        .as_deref()
        .and_then(|v| retry_after::parse(v, now));
    // 429 and 503 are throttling; so is any server error that says when
    // to come back.
    if answer.status == 429
        || answer.status == 503
        || (answer.status >= 500 && retry_after.is_some())
    {
        return Err(UpstreamError::Throttled { retry_after });
    }
    let json: Option<serde_json::Map<String, Value>> = serde_json::from_slice(&answer.body).ok();
    let Some(json) = json else {
        return Err(unavailable(answer.status, "answer is not JSON"));
    };
    let description = json
        .get("error_description")
        .and_then(Value::as_str)
        .unwrap_or("");
    if description.contains(MS_LOOP) {
        return Err(UpstreamError::Throttled { retry_after });
    }
    if let Some(result) = json
        .get("result")
        .and_then(Value::as_u64)
        .filter(|r| *r != 0)
    {
        return Err(classify_pcloud(result, retry_after));
    }
    if let Some(error) = json.get("error") {
        return Err(classify_oauth_error(error, answer.status, retry_after));
    }
    if !(200..300).contains(&answer.status) {
        return Err(unavailable(answer.status, "unexpected status"));
    }
    let access_token = json
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(UpstreamError::Unavailable {
            detail: "no access token in the answer",
        })?;
    // A provider's figure is believed up to a year: past that it is a bug,
    // and unbounded it would overflow the expiry arithmetic.
    let expires_in = match json.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .map(|seconds: u64| seconds.min(MAX_EXPIRES_IN));
    let refresh_token = json
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(Sensitive::new);
    Ok(TokenGrant {
        access_token: Sensitive::new(access_token),
        expires_in,
        refresh_token,
    })
}

/// A failed answer without an OAuth error: a server error, or `detail`.
fn unavailable(status: u16, detail: &'static str) -> UpstreamError {
    UpstreamError::Unavailable {
        detail: if status >= 500 {
            "server error"
        } else {
            detail
        },
    }
}

fn classify_oauth_error(
    error: &Value,
    status: u16,
    retry_after: Option<Duration>,
) -> UpstreamError {
    // Some providers nest the code: {"error": {"code": "..."}}.
    let code = match error {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o
            .get("code")
            .or_else(|| o.get(".tag"))
            .and_then(Value::as_str)
            .unwrap_or(""),
        _ => "",
    };
    let safe = safe_code(code);
    if REAUTHORIZE.contains(&code) {
        UpstreamError::Reauthorize { code: safe }
    } else if MISCONFIGURED.contains(&code) {
        UpstreamError::Misconfigured { code: safe }
    } else if TRY_LATER.contains(&code) {
        if code == "server_error" {
            UpstreamError::Unavailable {
                detail: "server error",
            }
        } else {
            UpstreamError::Throttled { retry_after }
        }
    } else if status >= 500 {
        UpstreamError::Unavailable {
            detail: "server error",
        }
    } else if status == 401 {
        UpstreamError::Misconfigured { code: safe }
    } else {
        UpstreamError::Unavailable {
            detail: "unexpected error",
        }
    }
}

/// pCloud answers 200 with `{"result": N, "error": "..."}`.
fn classify_pcloud(result: u64, retry_after: Option<Duration>) -> UpstreamError {
    match result {
        4000..=4999 => UpstreamError::Throttled { retry_after },
        1000..=1999 => UpstreamError::Misconfigured {
            code: format!("result {result}"),
        },
        2000..=2999 => UpstreamError::Reauthorize {
            code: format!("result {result}"),
        },
        _ => UpstreamError::Unavailable {
            detail: "server error",
        },
    }
}

/// Longest OAuth error code repeated to a user; the registered ones are
/// under 30 characters.
const MAX_ERROR_CODE_LEN: usize = 64;

/// OAuth error codes (RFC 6749 section 5.2) are short ASCII words; anything
/// else may carry what a provider or an attacker put there, and is not
/// repeated.
pub fn is_oauth_error_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_ERROR_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn safe_code(code: &str) -> String {
    if is_oauth_error_code(code) {
        code.to_string()
    } else {
        "error".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> RawAnswer {
        RawAnswer {
            status,
            retry_after: None,
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn success_with_and_without_refresh_token() {
        let g = classify(
            &answer(
                200,
                r#"{"access_token":"at","expires_in":3599,"refresh_token":"rt2"}"#,
            ),
            0,
        )
        .unwrap();
        assert_eq!(g.access_token.expose(), "at");
        assert_eq!(g.expires_in, Some(3599));
        assert_eq!(g.refresh_token.unwrap().expose(), "rt2");
        let g = classify(
            &answer(200, r#"{"access_token":"at","expires_in":"3600"}"#),
            0,
        )
        .unwrap();
        assert_eq!(g.expires_in, Some(3600));
        let g = classify(
            &answer(
                200,
                r#"{"access_token":"at","expires_in":18446744073709551615}"#,
            ),
            0,
        )
        .unwrap();
        assert_eq!(
            g.expires_in,
            Some(MAX_EXPIRES_IN),
            "a huge expires_in is capped"
        );
        assert!(g.refresh_token.is_none());
    }

    #[test]
    fn error_classes() {
        let cases = [
            (400, r#"{"error":"invalid_grant"}"#, "reauthorize"),
            (
                400,
                r#"{"error":"interaction_required","error_description":"AADSTS50076"}"#,
                "reauthorize",
            ),
            (401, r#"{"error":"invalid_client"}"#, "misconfigured"),
            (
                400,
                r#"{"error":"unsupported_grant_type"}"#,
                "misconfigured",
            ),
            (400, r#"{"error":"invalid_scope"}"#, "misconfigured"),
            (400, r#"{"error":"temporarily_unavailable"}"#, "throttled"),
            (
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS50196: loop detected"}"#,
                "throttled",
            ),
            (429, "", "throttled"),
            (503, "<html>", "throttled"),
            (500, "<html>oops</html>", "error"),
            (502, r#"{"error":"server_error"}"#, "error"),
            (
                200,
                r#"{"result":4000,"error":"Too many login tries"}"#,
                "throttled",
            ),
            (
                200,
                r#"{"result":2094,"error":"Invalid access_token"}"#,
                "reauthorize",
            ),
            (200, r#"{"access_token":""}"#, "error"),
            (200, r#"{"access_token":"at""#, "error"),
            (200, "[]", "error"),
            (302, "", "error"),
        ];
        for (status, body, label) in cases {
            let err = classify(&answer(status, body), 0).unwrap_err();
            assert_eq!(err.label(), label, "{status} {body}");
        }
    }

    #[test]
    fn retry_after_is_carried() {
        let mut a = answer(429, "");
        a.retry_after = Some("30".into());
        assert_eq!(
            classify(&a, 0).unwrap_err(),
            UpstreamError::Throttled {
                retry_after: Some(Duration::from_secs(30))
            }
        );
    }

    #[test]
    fn error_codes_are_short_ascii_words() {
        assert!(is_oauth_error_code("temporarily_unavailable"));
        assert!(is_oauth_error_code(&"a".repeat(MAX_ERROR_CODE_LEN)));
        for bad in ["", "a b", "<b>", "a\nb"] {
            assert!(!is_oauth_error_code(bad), "{bad:?}");
        }
        assert!(!is_oauth_error_code(&"a".repeat(MAX_ERROR_CODE_LEN + 1)));
    }

    #[test]
    fn codes_are_sanitized() {
        let err = classify(&answer(400, r#"{"error":"invalid_grant"}"#), 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the provider no longer accepts this login (invalid_grant)"
        );
        let err = classify(
            &answer(401, r#"{"error":"<script>secret-token</script>"}"#),
            0,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
