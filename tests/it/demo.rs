//! `oauth-broker demo` end to end over HTTP, as a newcomer would use it:
//! log in at the built-in provider, get an AuthID, refresh, see the token
//! rotate, use the access token, revoke.

use crate::support::process;

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// A login at the demo provider through the broker's pages, as a browser
/// would: the AuthID the success page shows.
async fn log_in(client: &reqwest::Client, base: &str) -> String {
    let index = client
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(index.contains("Demo provider"), "{index}");

    // The broker sends the browser to the demo provider's consent page.
    let start = client
        .get(format!("{base}/login?id=demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 302);
    let cookie = start.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let authorize = start.headers()["location"].to_str().unwrap().to_string();
    assert!(authorize.starts_with(&format!("{base}/demo/authorize?")));
    let consent = client.get(&authorize).send().await.unwrap();
    assert_eq!(consent.status(), 200);
    assert!(consent.text().await.unwrap().contains("Approve"));

    // Approve.
    let q = query_of(&authorize);
    let decision = client
        .post(format!("{base}/demo/authorize"))
        .form(&[
            ("decision", "approve"),
            ("redirect_uri", q["redirect_uri"].as_str()),
            ("state", q["state"].as_str()),
            ("code_challenge", q["code_challenge"].as_str()),
            ("code_challenge_method", q["code_challenge_method"].as_str()),
        ])
        .send()
        .await
        .unwrap();
    let callback = decision.headers()["location"].to_str().unwrap().to_string();
    assert!(callback.starts_with(&format!("{base}/logged-in?code=")));
    let page = client
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"id="authid""#), "{page}");
    let start = page.find("v3:").expect("an AuthID on the page");
    page[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c))
        .collect()
}

#[tokio::test]
async fn demo_mode_login_refresh_rotation_and_revocation() {
    let tmp = tempfile::tempdir().unwrap();
    let server = process::start(&["demo"], &[], tmp.path());
    let base = &server.base;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let authid = log_in(&client, base).await;

    // Refresh: the demo provider rotates, so a newer AuthID comes back.
    let refreshed: serde_json::Value = client
        .get(format!("{base}/refresh"))
        .header("X-AuthID", &authid)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access_token = refreshed["access_token"].as_str().unwrap();
    assert_eq!(refreshed["type"], "demo");
    let newest = refreshed["v2_authid"]
        .as_str()
        .expect("rotated")
        .to_string();
    assert_ne!(newest, authid);
    let me = client
        .get(format!("{base}/demo/api/me"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    // Revoke, as a program would; afterwards no AuthID of the login works.
    let revoked = client
        .post(format!("{base}/revoke"))
        .header("X-AuthID", &newest)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200, "{:?}", revoked.text().await);
    for text in [&authid, &newest] {
        let after = client
            .get(format!("{base}/refresh"))
            .header("X-AuthID", text)
            .send()
            .await
            .unwrap();
        assert_eq!(after.status(), 401);
        assert!(
            after.headers()["x-reason"]
                .to_str()
                .unwrap()
                .contains("create a new AuthID")
        );
    }
}

/// Behind a proxy that serves the demo under `/oauth`, the consent form
/// posts back under that prefix too.
#[tokio::test]
async fn the_demo_consent_form_keeps_the_path_of_public_url() {
    let tmp = tempfile::tempdir().unwrap();
    let public = "http://127.0.0.1:9/oauth";
    let server = process::start(&["demo"], &[("PUBLIC_URL", public.into())], tmp.path());
    let client = reqwest::Client::new();
    let consent = client
        .get(format!("{}/demo/authorize", server.base))
        .query(&[
            ("client_id", oauth_broker::demo::CLIENT_ID),
            ("redirect_uri", &format!("{public}/logged-in")),
            ("response_type", "code"),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 200);
    let page = consent.text().await.unwrap();
    assert!(page.contains(r#"action="/oauth/demo/authorize""#), "{page}");
}
