//! Checks that the mock provider behaves like the providers it stands for, so
//! the broker's tests can trust it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::mock_provider::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Decision, Fault, MockProvider, PCLOUD_LOCATION_ID,
    RedirectRule, Rotation,
};

const REDIRECT_URI: &str = "http://127.0.0.1:9/logged-in";

/// One client per test thread: building a client loads the TLS trust store,
/// which is slow, and each test has its own runtime and thread.
fn http() -> reqwest::Client {
    thread_local! {
        static CLIENT: reqwest::Client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
    }
    CLIENT.with(Clone::clone)
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = http().post(url).form(form).send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn refresh(mock: &MockProvider, rt: &str) -> (StatusCode, Value) {
    post_form(
        &mock.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ],
    )
    .await
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

fn new_refresh_token(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .expect("answer carries a refresh_token")
        .to_owned()
}

/// Follows `/authorize` and returns the query of the redirect it answers.
async fn authorize(mock: &MockProvider, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", DEFAULT_CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("state", "st-123"),
        ("scope", "files offline_access"),
    ];
    query.extend_from_slice(extra);
    let resp = http()
        .get(mock.authorize_url())
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap();
    let url = url::Url::parse(location).unwrap();
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    url.query_pairs().into_owned().collect()
}

async fn exchange(mock: &MockProvider, code: &str, verifier: Option<&str>) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    post_form(&mock.token_url(), &form).await
}

#[tokio::test]
async fn rotation_none_answers_without_refresh_token() {
    let mock = MockProvider::start().await;
    let rt = mock.issue_refresh_token();
    assert!(rt.starts_with("rt-"));

    for _ in 0..2 {
        let (status, body) = refresh(&mock, &rt).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let at = body["access_token"].as_str().unwrap();
        assert!(at.starts_with("at-"));
        assert!(mock.is_valid_access_token(at));
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert!(body.get("refresh_token").is_none());
    }
    assert_eq!(mock.token_calls(), 2);
    assert_eq!(mock.refresh_tokens_received(), vec![rt.clone(), rt]);
    assert_eq!(mock.spent_token_presentations(), 0);
    assert!(!mock.is_valid_access_token("at-unknown"));
}

#[tokio::test]
async fn rotating_keeps_old_tokens_valid() {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::Rotating);
    let rt1 = mock.issue_refresh_token();

    let (status, body) = refresh(&mock, &rt1).await;
    assert_eq!(status, StatusCode::OK);
    let rt2 = new_refresh_token(&body);
    assert_ne!(rt1, rt2);

    // The superseded token still works, and its use is counted.
    let (status, body) = refresh(&mock, &rt1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(mock.spent_token_presentations(), 1);
    let (status, _) = refresh(&mock, &rt2).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.spent_token_presentations(), 1);
}

#[tokio::test]
async fn single_use_refuses_a_spent_token() {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUse);
    let rt1 = mock.issue_refresh_token();

    let (status, body) = refresh(&mock, &rt1).await;
    assert_eq!(status, StatusCode::OK);
    let rt2 = new_refresh_token(&body);

    let (status, body) = refresh(&mock, &rt1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body), "invalid_grant");
    assert!(body["error_description"].is_string());
    assert_eq!(mock.spent_token_presentations(), 1);

    // Box keeps the grant: the newest token still works.
    let (status, body) = refresh(&mock, &rt2).await;
    assert_eq!(status, StatusCode::OK);
    let rt3 = new_refresh_token(&body);
    assert!(mock.is_valid_refresh_token(&rt3));
    assert!(!mock.is_valid_refresh_token(&rt2));
    assert_eq!(mock.refresh_tokens_received(), vec![rt1.clone(), rt1, rt2]);
}

#[tokio::test]
async fn reuse_detection_revokes_the_whole_family() {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::SingleUseReuseDetection);
    let other_family = mock.issue_refresh_token();
    let rt1 = mock.issue_refresh_token();

    let (status, body) = refresh(&mock, &rt1).await;
    assert_eq!(status, StatusCode::OK);
    let at = body["access_token"].as_str().unwrap().to_owned();
    let rt2 = new_refresh_token(&body);

    let (status, body) = refresh(&mock, &rt1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body), "invalid_grant");
    assert_eq!(mock.spent_token_presentations(), 1);

    // The newest token and the family's access token died with it.
    let (status, body) = refresh(&mock, &rt2).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body), "invalid_grant");
    assert!(!mock.is_valid_access_token(&at));

    // Other grants are untouched.
    let (status, _) = refresh(&mock, &other_family).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn client_authentication() {
    let mock = MockProvider::start().await;
    let rt = mock.issue_refresh_token();
    let url = mock.token_url();

    let (status, body) = post_form(
        &url,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&body), "invalid_client");

    let (status, body) = post_form(
        &url,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&body), "invalid_client");

    // HTTP Basic works, and is recorded.
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}"))
    );
    let resp = http()
        .post(&url)
        .header(reqwest::header::AUTHORIZATION, &basic)
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let last = mock.last_token_request().unwrap();
    assert_eq!(last.get("authorization"), Some(&basic));
    assert_eq!(last.get("refresh_token"), Some(&rt));
    assert!(!last.contains_key("client_secret"));

    let resp = http()
        .post(&url)
        .basic_auth(DEFAULT_CLIENT_ID, Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()
            .contains_key(reqwest::header::WWW_AUTHENTICATE)
    );

    // Tokens are bound to the client they were issued to.
    mock.set_client("other-client", "other-secret");
    let (status, _) = refresh(&mock, &rt).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(mock.token_calls(), 5);
}

#[tokio::test]
async fn grant_errors() {
    let mock = MockProvider::start().await;
    let (status, body) = refresh(&mock, "rt-unknown").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body), "invalid_grant");

    let (status, body) = post_form(
        &mock.token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body), "unsupported_grant_type");

    let resp = http()
        .post(mock.token_url())
        .json(&serde_json::json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(mock.token_calls(), 3);
}

#[tokio::test]
async fn authorization_code_with_pkce() {
    let mock = MockProvider::start().await;
    mock.set_require_pkce(true);
    let verifier = "a-verifier-of-sufficient-length-0123456789-abcdefghijklmnop";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));

    // Without a challenge the provider refuses at the consent step.
    let cb = authorize(&mock, &[]).await;
    assert_eq!(cb.get("error").map(String::as_str), Some("invalid_request"));
    assert_eq!(cb.get("state").map(String::as_str), Some("st-123"));

    let cb = authorize(
        &mock,
        &[
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let q = mock.last_authorize_query().unwrap();
    assert_eq!(q.get("code_challenge"), Some(&challenge));
    assert_eq!(cb.get("state").map(String::as_str), Some("st-123"));
    let code = cb.get("code").unwrap().clone();
    assert!(code.starts_with("code-"));

    let (status, body) = exchange(&mock, &code, None).await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let (status, body) = exchange(&mock, &code, Some("wrong-verifier")).await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );

    let (status, body) = exchange(&mock, &code, Some(verifier)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rt = new_refresh_token(&body);
    assert_eq!(body["scope"], "files offline_access");
    assert!(mock.is_valid_refresh_token(&rt));

    // A replayed code fails and takes the grant it produced with it.
    let (status, body) = exchange(&mock, &code, Some(verifier)).await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert!(!mock.is_valid_refresh_token(&rt));
}

#[tokio::test]
async fn authorization_code_is_bound_to_redirect_uri_and_consent_can_be_denied() {
    let mock = MockProvider::start().await;
    let code = authorize(&mock, &[]).await.get("code").unwrap().clone();
    let (status, body) = post_form(
        &mock.token_url(),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/elsewhere"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let (status, _) = exchange(&mock, &code, None).await;
    assert_eq!(status, StatusCode::OK);

    mock.set_authorize_decision(Decision::Deny);
    let cb = authorize(&mock, &[]).await;
    assert_eq!(cb.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(cb.get("state").map(String::as_str), Some("st-123"));
    assert!(!cb.contains_key("code"));

    // An unknown client is told so at the provider, not redirected.
    let resp = http()
        .get(mock.authorize_url())
        .query(&[
            ("response_type", "code"),
            ("client_id", "nobody"),
            ("redirect_uri", REDIRECT_URI),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(mock.authorize_calls(), 3);
}

#[tokio::test]
async fn dropbox_rejects_redirect_uri_on_refresh() {
    let mock = MockProvider::start().await;
    mock.set_redirect_uri_on_refresh(RedirectRule::Forbidden);
    let rt = mock.issue_refresh_token();
    let with_redirect = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ];
    let (status, body) = post_form(&mock.token_url(), &with_redirect).await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let (status, _) = refresh(&mock, &rt).await;
    assert_eq!(status, StatusCode::OK);

    mock.set_redirect_uri_on_refresh(RedirectRule::Required);
    let (status, _) = refresh(&mock, &rt).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post_form(&mock.token_url(), &with_redirect).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn fault_queue_answers_in_order_then_recovers() {
    let mock = MockProvider::start().await;
    let rt = mock.issue_refresh_token();
    push_one_fault_of_each_kind(&mock);
    assert_eq!(mock.pending_faults(), 8);

    let send = || {
        http()
            .post(mock.token_url())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
            ])
            .send()
    };

    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[reqwest::header::RETRY_AFTER], "7");
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_of(&body), "temporarily_unavailable");

    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(error_of(&body), "invalid_grant");
    assert_eq!(
        body["error_description"],
        "Token has been expired or revoked."
    );

    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.headers()[reqwest::header::RETRY_AFTER],
        "Wed, 21 Oct 2037 07:28:00 GMT"
    );
    assert_eq!(r.text().await.unwrap(), "down");

    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());

    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(
        r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("<html>"));

    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().len(), 100_000);

    let r = send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"], 2094);
    assert!(body.get("access_token").is_none());

    // Delay answers normally, then the queue is empty and normal service
    // resumes.
    for _ in 0..2 {
        let r = send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        assert!(mock.is_valid_access_token(body["access_token"].as_str().unwrap()));
    }
    assert_eq!(mock.pending_faults(), 0);
    assert_eq!(mock.token_calls(), 9);
    assert_eq!(mock.refresh_tokens_received().len(), 9);
}

#[tokio::test]
async fn sticky_fault_lasts_until_cleared_and_queue_goes_first() {
    let mock = MockProvider::start().await;
    let rt = mock.issue_refresh_token();
    mock.set_sticky_fault(Some(Fault::Throttle {
        status: 503,
        retry_after: None,
    }));
    mock.push_fault(Fault::Html(500));

    let (status, _) = refresh(&mock, &rt).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    for _ in 0..2 {
        let resp = http()
            .post(mock.token_url())
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!resp.headers().contains_key(reqwest::header::RETRY_AFTER));
    }
    mock.set_sticky_fault(None);
    let (status, _) = refresh(&mock, &rt).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.token_calls(), 4);
}

#[tokio::test]
async fn hang_does_not_block_other_requests() {
    let mock = MockProvider::start().await;
    let rt = mock.issue_refresh_token();
    mock.push_fault(Fault::Hang);

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let hanging = {
        let url = mock.token_url();
        let rt = rt.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let r = http()
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("client_id", DEFAULT_CLIENT_ID),
                    ("client_secret", DEFAULT_CLIENT_SECRET),
                ])
                .send()
                .await;
            let _ = done.send(("hanging", r.map(|r| r.status()).ok()));
        })
    };
    // The hanging request must have taken the fault before the next one.
    while mock.token_calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let (status, _) = refresh(&mock, &rt).await;
    done_tx.send(("normal", Some(status))).unwrap();

    let (first, first_status) = done_rx.recv().await.unwrap();
    assert_eq!(first, "normal");
    assert_eq!(first_status, Some(StatusCode::OK));
    assert!(!hanging.is_finished());
    assert_eq!(mock.token_calls(), 2);
    hanging.abort();
}

#[tokio::test]
async fn pcloud_access_token_only() {
    let mock = MockProvider::start().await;
    mock.set_access_token_only(true);

    let cb = authorize(&mock, &[]).await;
    assert_eq!(cb.get("hostname"), Some(&mock.host()));
    assert_eq!(cb.get("locationid"), Some(&PCLOUD_LOCATION_ID.to_string()));
    let code = cb.get("code").unwrap();

    let (status, body) = exchange(&mock, code, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at = body["access_token"].as_str().unwrap();
    assert!(mock.is_valid_access_token(at));
    assert_eq!(body["token_type"], "bearer");
    assert!(body["uid"].is_u64());
    assert_eq!(body["locationid"], PCLOUD_LOCATION_ID);
    assert!(body.get("refresh_token").is_none());
    assert!(body.get("expires_in").is_none());
}

async fn jotta_login(mock: &MockProvider, password: &str) -> (StatusCode, Value) {
    post_form(
        &mock.token_url(),
        &[
            ("grant_type", "password"),
            ("client_id", "jottacli"),
            ("username", "alice"),
            ("password", password),
            ("scope", "openid offline_access"),
        ],
    )
    .await
}

#[tokio::test]
async fn jottacloud_login_token_and_discovery() {
    let mock = MockProvider::start().await;
    mock.set_client("jottacli", "");
    mock.set_rotation(Rotation::SingleUseReuseDetection);
    mock.set_password_login("alice", "auth-token-xyz");

    let doc: Value = http()
        .get(mock.well_known_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["token_endpoint"], mock.token_url());

    let (status, body) = jotta_login(&mock, "wrong").await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );

    let (status, body) = jotta_login(&mock, "auth-token-xyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rt = new_refresh_token(&body);
    let (status, body) = post_form(
        &mock.token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", "jottacli"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(new_refresh_token(&body), rt);
}

#[tokio::test]
async fn revocation_and_userinfo() {
    let mock = MockProvider::start().await;
    mock.set_rotation(Rotation::Rotating);
    let rt = mock.issue_refresh_token();
    let (_, body) = refresh(&mock, &rt).await;
    let at = body["access_token"].as_str().unwrap().to_owned();
    let rt2 = new_refresh_token(&body);

    let userinfo = |token: String| http().get(mock.userinfo_url()).bearer_auth(token).send();
    assert_eq!(userinfo(at.clone()).await.unwrap().status(), StatusCode::OK);

    let (status, body) = post_form(
        &mock.revoke_url(),
        &[
            ("token", &rt),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    assert!(mock.revoked().is_empty());

    let (status, _) = post_form(
        &mock.revoke_url(),
        &[
            ("token", &rt),
            ("token_type_hint", "refresh_token"),
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.revoked(), vec![rt.clone()]);
    assert!(!mock.is_valid_access_token(&at));
    assert!(!mock.is_valid_refresh_token(&rt2));
    let (status, body) = refresh(&mock, &rt2).await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(
        userinfo(at).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Revocation is not a token endpoint call.
    assert_eq!(mock.token_calls(), 2);
}

#[tokio::test]
async fn access_token_lifetime_is_configurable() {
    let mock = MockProvider::start().await;
    mock.set_access_token_lifetime(0);
    mock.set_default_scope(Some("drive.file"));
    let rt = mock.issue_refresh_token();
    let (status, body) = refresh(&mock, &rt).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["expires_in"], 0);
    assert_eq!(body["scope"], "drive.file");
    assert!(!mock.is_valid_access_token(body["access_token"].as_str().unwrap()));
}

/// Queues eight faults, one of each kind that answers.
fn push_one_fault_of_each_kind(mock: &MockProvider) {
    mock.push_fault(Fault::Throttle {
        status: 429,
        retry_after: Some("7".into()),
    });
    mock.push_fault(Fault::OAuthError {
        status: 400,
        error: "invalid_grant".into(),
        description: Some("Token has been expired or revoked.".into()),
    });
    mock.push_fault(Fault::Status {
        status: 503,
        body: "down".into(),
        retry_after: Some("Wed, 21 Oct 2037 07:28:00 GMT".into()),
    });
    mock.push_fault(Fault::BrokenJson);
    mock.push_fault(Fault::Html(502));
    mock.push_fault(Fault::HugeBody(100_000));
    mock.push_fault(Fault::PcloudError {
        result: 2094,
        error: "Invalid 'access_token' provided.".into(),
    });
    mock.push_fault(Fault::Delay(Duration::from_millis(1)));
}
