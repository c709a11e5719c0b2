//! The login flow end to end against the mock provider: authorize URL,
//! sealed state bound to the browser, code exchange, the logged-in page,
//! and every way a callback must be refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use oauth_broker::clock::{Clock, ManualClock, SystemClock};
use url::Url;

use crate::support::broker::{Broker, CLIENT_ID, CLIENT_SECRET, Reply};
use crate::support::logs;
use crate::support::mock_provider::MockProvider;

/// A login begun at `/login`: where the browser goes, and its cookie.
pub struct Started {
    pub authorize: Url,
    pub cookie: String,
}

pub async fn start(broker: &Broker, uri: &str) -> Started {
    let r = broker.get(uri).await;
    assert_eq!(r.status, 302, "{uri}: {}", r.body);
    let authorize = Url::parse(r.header("location").expect("location")).expect("absolute");
    let set_cookie = r.header("set-cookie").expect("login cookie");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/logged-in", "Max-Age=600"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "PUBLIC_URL is http here: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("oauth_login="), "{cookie}");
    Started { authorize, cookie }
}

/// What the browser does at the mock's consent screen: returns the path
/// and query of the callback it is sent to.
pub async fn authorize(url: &Url) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client.get(url.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302, "mock authorize refused");
    let back = Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    format!("{}?{}", back.path(), back.query().unwrap_or(""))
}

pub async fn callback(broker: &Broker, path: &str, cookie: Option<&str>) -> Reply {
    match cookie {
        Some(c) => broker.get_with(path, &[("cookie", c)]).await,
        None => broker.get(path).await,
    }
}

/// The AuthID shown in `id="authid"`, if any.
pub fn authid_in(body: &str) -> Option<String> {
    let start = body.find("id=\"authid\">")? + "id=\"authid\">".len();
    let end = body[start..].find('<')? + start;
    Some(body[start..end].trim().to_string())
}

pub fn query(url: &Url) -> BTreeMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// Login, consent and callback in one go; returns the logged-in reply.
pub async fn full_login(broker: &Broker, uri: &str) -> Reply {
    let started = start(broker, uri).await;
    let back = authorize(&started.authorize).await;
    callback(broker, &back, Some(&started.cookie)).await
}

fn assert_page_headers(r: &Reply) {
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "content type"
    );
    let csp = r.header("content-security-policy").expect("CSP");
    assert!(
        csp.starts_with("default-src 'none'; script-src 'nonce-"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
}

#[tokio::test]
async fn google_login_gives_an_authid_that_refreshes() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.set_require_pkce(true);
    let started = start(&broker, "/login?id=googledrive").await;

    let q = query(&started.authorize);
    assert!(
        started
            .authorize
            .as_str()
            .starts_with(&mock.authorize_url())
    );
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], "http://127.0.0.1:9/logged-in");
    assert_eq!(q["scope"], "https://www.googleapis.com/auth/drive.file");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert!(q["state"].starts_with("ls1."), "{}", q["state"]);
    assert!(!q["state"].contains("googledrive"), "the state is sealed");

    let back = authorize(&started.authorize).await;
    let page = callback(&broker, &back, Some(&started.cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_page_headers(&page);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        page.header("cross-origin-opener-policy").is_none(),
        "COOP would cut window.opener"
    );
    let cleared = page.header("set-cookie").expect("cookie cleared");
    assert!(cleared.starts_with("oauth_login=;") && cleared.contains("Max-Age=0"));
    let authid = authid_in(&page.body).expect("AuthID on the page");
    assert!(authid.starts_with("v3:"), "{authid}");
    assert!(page.body.contains("id=\"copy\""));
    let nonce = page
        .header("content-security-policy")
        .unwrap()
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    assert!(
        page.body.contains(&format!(
            "<script src=\"/static/login.js\" nonce=\"{nonce}\">"
        )),
        "the script carries the response's nonce"
    );
    assert!(page.body.contains("data-origins=\"*\""));

    let sent = mock.last_token_request().unwrap();
    assert_eq!(sent["grant_type"], "authorization_code");
    assert_eq!(sent["redirect_uri"], "http://127.0.0.1:9/logged-in");
    assert_eq!(sent["client_secret"], CLIENT_SECRET);
    assert_eq!(sent["code_verifier"].len(), 43);

    let refreshed = broker.refresh(&authid).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let at = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(mock.is_valid_access_token(&at));

    // Nothing secret in the logs: not the code, the state or the AuthID.
    let code = Url::parse(&format!("http://x{back}"))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let captured = logs::captured();
    for secret in [&authid, &code, &q["state"], &at] {
        assert!(
            !captured.contains(secret.as_str()),
            "a secret reached the logs"
        );
    }
}

#[tokio::test]
async fn provider_quirks_reach_the_authorize_url() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let dropbox = start(&broker, "/login?id=dropbox").await;
    let q = query(&dropbox.authorize);
    assert_eq!(q["token_access_type"], "offline");
    assert!(q.contains_key("code_challenge"));
    assert!(!q.contains_key("scope"), "Dropbox's scope is empty");
    // Box: alias, no PKCE.
    let boxcom = start(&broker, "/login?id=box").await;
    let q = query(&boxcom.authorize);
    assert!(!q.contains_key("code_challenge"));
    assert_eq!(q["scope"], "root_readwrite");
    let page = full_login(&broker, "/login?id=box").await;
    let authid = authid_in(&page.body).expect("AuthID");
    assert_eq!(broker.refresh(&authid).await.json()["type"], "box.com");
}

#[tokio::test]
async fn tampered_state_gives_no_authid() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let started = start(&broker, "/login?id=googledrive").await;
    let back = authorize(&started.authorize).await;
    let url = Url::parse(&format!("http://x{back}")).unwrap();
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for (k, v) in &mut pairs {
        if k == "state" {
            let mut bytes = v.clone().into_bytes();
            let i = bytes.len() / 2;
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            *v = String::from_utf8(bytes).unwrap();
        }
    }
    let tampered = format!(
        "/logged-in?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish()
    );
    let page = callback(&broker, &tampered, Some(&started.cookie)).await;
    assert_eq!(page.status, 400);
    assert_page_headers(&page);
    assert!(authid_in(&page.body).is_none());
    assert!(
        page.body.contains("damaged or was altered"),
        "{}",
        page.body
    );
    assert_eq!(mock.token_calls(), 0, "no code exchange");

    let missing = callback(&broker, "/logged-in?code=x", Some(&started.cookie)).await;
    assert_eq!(missing.status, 400);
    assert!(authid_in(&missing.body).is_none());
    let garbage = callback(&broker, "/logged-in?code=x&state=%3Cscript%3E", None).await;
    assert_eq!(garbage.status, 400);
    assert!(!garbage.body.contains("<script>"));
}

#[tokio::test]
async fn expired_state_gives_no_authid_and_offers_a_restart() {
    let mock = MockProvider::start().await;
    let clock = ManualClock::new(SystemClock.now());
    let broker = Broker::with_clock(&mock, Arc::new(clock.clone()));
    let started = start(&broker, "/login?id=googledrive").await;
    let back = authorize(&started.authorize).await;
    clock.advance(601);
    let page = callback(&broker, &back, Some(&started.cookie)).await;
    assert_eq!(page.status, 400);
    assert!(authid_in(&page.body).is_none());
    assert!(page.body.contains("expired"), "{}", page.body);
    assert!(
        page.body.contains("href=\"/login?id=googledrive\""),
        "a start-again link: {}",
        page.body
    );
    assert_eq!(mock.token_calls(), 0);
}

#[tokio::test]
async fn a_callback_in_another_browser_gives_no_authid() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let victim = start(&broker, "/login?id=googledrive").await;
    let attacker = start(&broker, "/login?id=googledrive").await;
    let back = authorize(&attacker.authorize).await;
    // The attacker's callback opened in the victim's browser.
    let page = callback(&broker, &back, Some(&victim.cookie)).await;
    assert_eq!(page.status, 400);
    assert!(authid_in(&page.body).is_none());
    assert!(page.body.contains("another browser"), "{}", page.body);
    assert!(
        page.header("set-cookie").is_none(),
        "the victim's own login stays intact"
    );
    let no_cookie = callback(&broker, &back, None).await;
    assert_eq!(no_cookie.status, 400);
    assert!(authid_in(&no_cookie.body).is_none());
    assert_eq!(mock.token_calls(), 0, "nothing was exchanged");
    // The rightful browser can still finish it.
    let page = callback(&broker, &back, Some(&attacker.cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
}

#[tokio::test]
async fn a_replayed_callback_is_refused() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let started = start(&broker, "/login?id=googledrive").await;
    let back = authorize(&started.authorize).await;
    let first = callback(&broker, &back, Some(&started.cookie)).await;
    assert!(authid_in(&first.body).is_some());
    let again = callback(&broker, &back, Some(&started.cookie)).await;
    assert_eq!(again.status, 400);
    assert!(authid_in(&again.body).is_none());
    assert!(again.body.contains("already finished"), "{}", again.body);
    assert_eq!(mock.token_calls(), 1, "the code was exchanged once");
}

#[tokio::test]
async fn pkce_is_checked_by_the_provider() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.set_require_pkce(true);
    let started = start(&broker, "/login?id=onedrivev2").await;
    let back = authorize(&started.authorize).await;
    // The mock holds the challenge; only the sealed verifier matches it.
    let page = callback(&broker, &back, Some(&started.cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let sent = mock.last_token_request().unwrap();
    let q = query(&started.authorize);
    use base64::Engine;
    use sha2::Digest;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(sent["code_verifier"].as_bytes()));
    assert_eq!(challenge, q["code_challenge"]);
}

#[tokio::test]
async fn consent_denied_explains_and_offers_a_restart() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.set_authorize_decision(crate::support::mock_provider::Decision::Deny);
    let page = full_login(&broker, "/login?id=googledrive").await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("did not grant access"), "{}", page.body);
    assert!(page.body.contains("Start again"));
    assert_eq!(mock.token_calls(), 0);
}

#[tokio::test]
async fn no_refresh_token_explains_where_to_remove_access() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.push_fault(crate::support::mock_provider::Fault::Status {
        status: 200,
        body: r#"{"access_token":"at-only","expires_in":3600}"#.into(),
        retry_after: None,
    });
    let page = full_login(&broker, "/login?id=googledrive").await;
    assert_eq!(page.status, 409);
    assert!(authid_in(&page.body).is_none());
    assert!(
        page.body
            .contains("href=\"https://myaccount.google.com/permissions\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("log in again"));
}

#[tokio::test]
async fn why_the_provider_refused_a_login_is_logged_once_and_never_shown() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.push_fault(crate::support::mock_provider::Fault::OAuthError {
        status: 400,
        error: "redirect_uri_mismatch".into(),
        description: None,
    });
    let page = full_login(&broker, "/login?id=googledrive").await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(
        page.body.contains("the operator must fix it"),
        "{}",
        page.body
    );
    let cause = "the provider refused the broker's registration (redirect_uri_mismatch)";
    assert!(
        !page.body.contains("redirect_uri_mismatch"),
        "{}",
        page.body
    );
    assert!(
        page.headers
            .iter()
            .all(|(_, v)| !v.to_str().unwrap_or("").contains("redirect_uri_mismatch")),
        "{:?}",
        page.headers
    );
    let captured = logs::captured();
    assert_eq!(captured.matches(cause).count(), 1, "{captured}");
    let line = captured.lines().find(|l| l.contains(cause)).unwrap();
    assert!(
        line.contains("status=502"),
        "logged with the answer: {line}"
    );
}

#[tokio::test]
async fn pcloud_uses_the_allowed_regional_host_and_shows_the_access_token() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.set_access_token_only(true);
    let page = full_login(&broker, "/login?id=pcloud").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let token = authid_in(&page.body).expect("access token shown");
    assert!(token.starts_with("at-"), "{token}");
    assert!(mock.is_valid_access_token(&token));
}

#[tokio::test]
async fn pcloud_host_outside_allowed_hosts_is_refused_without_a_request() {
    let mock = MockProvider::start().await;
    let broker = Broker::build_with(
        &mock,
        &["pcloud"],
        oauth_broker::clock::system(),
        "http://127.0.0.1:9",
        |entries| {
            entries[0]["allowedHosts"] = serde_json::json!(["api.pcloud.com", "eapi.pcloud.com"])
        },
    );
    mock.set_access_token_only(true);
    let page = full_login(&broker, "/login?id=pcloud").await;
    assert_eq!(page.status, 400);
    assert!(authid_in(&page.body).is_none());
    assert!(
        page.body.contains("not one this server is allowed"),
        "{}",
        page.body
    );
    assert_eq!(mock.token_calls(), 0, "no request left the broker");

    // A hostname that is no host at all.
    let started = start(&broker, "/login?id=pcloud").await;
    let back = authorize(&started.authorize).await;
    let evil = back.replace(
        &format!("hostname={}", mock.host().replace(':', "%3A")),
        "hostname=evil.example%2F%40x",
    );
    assert_ne!(evil, back);
    let page = callback(&broker, &evil, Some(&started.cookie)).await;
    assert_eq!(page.status, 400);
    assert_eq!(mock.token_calls(), 0);
}

fn login_token(well_known: &str, user: &str, secret: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        serde_json::json!({
            "username": user,
            "realm": "jottacloud",
            "well_known_link": well_known,
            "auth_token": secret,
        })
        .to_string(),
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn jottacloud_login_token_gives_an_authid() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.set_client("jottacli", "");
    mock.set_password_login("jotta-user", "secret-auth-token-0451");

    let redirect = broker.get("/login?id=jottacloud").await;
    assert_eq!(redirect.status, 302);
    assert_eq!(
        redirect.header("location"),
        Some("/cli-token?id=jottacloud")
    );
    let form_page = broker.get("/cli-token?id=jottacloud").await;
    assert_eq!(form_page.status, 200);
    assert!(form_page.body.contains("action=\"/cli-token-login\""));
    assert!(form_page.body.contains("<label for=\"token\">"));

    let token = login_token(
        &mock.well_known_url(),
        "jotta-user",
        "secret-auth-token-0451",
    );
    let page = broker
        .post_form(
            "/cli-token-login",
            &form(&[("id", "jottacloud"), ("token", &token)]),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let authid = authid_in(&page.body).expect("AuthID");
    assert_eq!(mock.discovery_calls(), 1);
    let sent = mock.last_token_request().unwrap();
    assert_eq!(sent["grant_type"], "password");
    assert_eq!(sent["client_id"], "jottacli");
    assert_eq!(sent["username"], "jotta-user");
    assert_eq!(sent["scope"], "openid offline_access");
    assert!(!sent.contains_key("client_secret"));
    let refreshed = broker.refresh(&authid).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.json()["type"], "jottacloud");

    // A wrong secret: a clear refusal, the token never echoed or logged.
    let bad = login_token(&mock.well_known_url(), "jotta-user", "wrong-secret-77");
    let page = broker
        .post_form(
            "/cli-token-login",
            &form(&[("id", "jottacloud"), ("token", &bad)]),
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(!page.body.contains(&bad) && !page.body.contains("wrong-secret-77"));
    let captured = logs::captured();
    assert!(!captured.contains("secret-auth-token-0451"));
    assert!(!captured.contains(&token));
}

#[tokio::test]
async fn jottacloud_identity_server_outside_allowed_hosts_is_refused() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.set_client("jottacli", "");
    mock.set_password_login("u", "s");
    let port = mock.addr().port();
    for link in [
        format!("http://127.0.0.2:{port}/.well-known/openid-configuration"),
        "https://evil.example/.well-known/openid-configuration".to_string(),
        format!("http://localhost:{port}/.well-known/openid-configuration"),
        format!("ftp://{}/x", mock.host()),
        format!(
            "http://user@{}/.well-known/openid-configuration",
            mock.host()
        ),
    ] {
        let page = broker
            .post_form(
                "/cli-token-login",
                &form(&[
                    ("id", "jottacloud"),
                    ("token", &login_token(&link, "u", "s")),
                ]),
            )
            .await;
        assert_eq!(page.status, 400, "{link}: {}", page.body);
        assert!(authid_in(&page.body).is_none());
    }
    assert_eq!(mock.discovery_calls(), 0, "no request left the broker");
    assert_eq!(mock.token_calls(), 0);

    for garbage in ["", "not-base64!", "e30"] {
        let page = broker
            .post_form(
                "/cli-token-login",
                &form(&[("id", "jottacloud"), ("token", garbage)]),
            )
            .await;
        assert_eq!(page.status, 400, "{garbage:?}");
    }
    // Only token-login providers take a token; cross-site posts are refused.
    let page = broker
        .post_form(
            "/cli-token-login",
            &form(&[("id", "googledrive"), ("token", "x")]),
        )
        .await;
    assert_eq!(page.status, 400);
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/cli-token-login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(axum::body::Body::from("id=jottacloud&token=x"))
        .unwrap();
    assert_eq!(broker.request(request).await.status, 403);
}

#[tokio::test]
async fn state_sealed_before_a_key_rotation_still_finishes() {
    use oauth_broker::authid::{Keyring, ServerKey};
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let started = start(&broker, "/login?id=googledrive").await;
    let back = authorize(&started.authorize).await;
    // A new primary key; the old one stays loaded.
    let old = broker.app.keyring().current();
    let (new_key, _) = ServerKey::generate("rotated-key", 1).unwrap();
    let mut keys: Vec<Arc<ServerKey>> = old.keys().into_iter().cloned().collect();
    keys.push(Arc::new(new_key));
    broker
        .app
        .install_keyring(Keyring::new(keys, "rotated-key", Default::default()).unwrap());
    let page = callback(&broker, &back, Some(&started.cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let authid = authid_in(&page.body).unwrap();
    assert_eq!(broker.refresh(&authid).await.status, 200);
}

#[tokio::test]
async fn a_throttled_provider_gets_no_code_exchange_until_its_retry_after() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.push_fault(crate::support::mock_provider::Fault::Throttle {
        status: 429,
        retry_after: Some("120".into()),
    });
    let first = full_login(&broker, "/login?id=googledrive").await;
    assert_eq!(first.status, 503, "{}", first.body);
    assert_eq!(mock.token_calls(), 1);
    // Another login, and a refresh, for the same registration: nothing sent.
    let second = full_login(&broker, "/login?id=googledocs").await;
    assert_eq!(second.status, 503);
    assert!(authid_in(&second.body).is_none());
    let refresh = broker
        .refresh(&broker.seal("googledrive", &mock.issue_refresh_token()))
        .await;
    assert_eq!(refresh.status, 503);
    assert_eq!(mock.token_calls(), 1);
}
