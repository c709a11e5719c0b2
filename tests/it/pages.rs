//! The pages and JSON routes around a login: provider list, fetch
//! rendezvous (JSON and JSONP), revocation, and no open redirects.

use std::sync::Arc;

use oauth_broker::clock::{Clock, ManualClock, SystemClock};

use crate::login::{authid_in, authorize, callback, full_login, start};
use crate::support::broker::{Broker, CLIENT_SECRET, assert_error_shape};
use crate::support::mock_provider::MockProvider;

const TOKEN: &str = "fetch-token-0123456789abcdef";

#[tokio::test]
async fn index_lists_providers_and_type_shows_one() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let all = broker.get("/").await;
    assert_eq!(all.status, 200);
    assert!(all.body.contains("href=\"/login?id=googledrive\""));
    assert!(all.body.contains("href=\"/cli-token?id=jottacloud\""));
    assert!(all.body.contains("<meta name=\"viewport\""));
    assert!(all.body.contains("href=\"/static/site.css\""));
    assert!(
        !all.body.contains("http://") && !all.body.contains("https://cdn"),
        "no external resources"
    );

    let boxcom = broker.get("/?type=box").await;
    assert_eq!(boxcom.status, 200);
    assert!(boxcom.body.contains("Box.com"));
    assert!(boxcom.body.contains("href=\"/login?id=box.com\""));
    assert!(!boxcom.body.contains("googledrive"));

    let unknown = broker.get("/?type=nosuch").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("no provider by that name"));

    // Some clients open /refresh?type=ID by mistake.
    let r = broker.get("/refresh?type=box").await;
    assert!(r.status.is_redirection());
    assert_eq!(r.header("location"), Some("/?type=box"));

    for (path, kind) in [
        ("/static/site.css", "text/css"),
        ("/static/login.js", "text/javascript"),
    ] {
        let r = broker.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(kind));
    }
    assert_eq!(broker.get("/static/../Cargo.toml").await.status, 404);
    assert_eq!(broker.get("/static/nope.js").await.status, 404);
    let privacy = broker.get("/privacy-policy").await;
    assert_eq!(privacy.status, 200);
    assert!(privacy.body.contains("Privacy policy"));
    assert!(
        privacy.body.contains("cookie (10 minutes)"),
        "{}",
        privacy.body
    );
}

#[tokio::test]
async fn fetch_token_flow_hands_the_authid_to_the_polling_client() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);

    let unknown = broker.get(&format!("/fetch?token={TOKEN}")).await;
    assert_eq!(unknown.status, 404);
    assert_error_shape(&unknown);

    let page = broker
        .get(&format!("/?type=googledrive&token={TOKEN}"))
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains(&format!("href=\"/login?id=googledrive&amp;token={TOKEN}\"")),
        "{}",
        page.body
    );
    let wait = broker.get(&format!("/fetch?token={TOKEN}")).await;
    assert_eq!(wait.status, 200);
    assert_eq!(wait.json(), serde_json::json!({"wait": "Not ready"}));
    let state = broker.get(&format!("/token-state?token={TOKEN}")).await;
    assert_eq!(state.json(), serde_json::json!({"wait": "Not ready"}));

    let logged_in = full_login(&broker, &format!("/login?id=googledrive&token={TOKEN}")).await;
    let authid = authid_in(&logged_in.body).expect("AuthID");
    assert!(logged_in.body.contains(&format!("data-token=\"{TOKEN}\"")));

    let state = broker.get(&format!("/token-state?token={TOKEN}")).await;
    assert_eq!(state.json(), serde_json::json!({"success": false}));
    let fetched = broker.get(&format!("/fetch?token={TOKEN}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.header("cache-control"), Some("no-store"));
    assert_eq!(fetched.json()["authid"], authid.as_str());
    let state = broker.get(&format!("/token-state?token={TOKEN}")).await;
    assert_eq!(state.json(), serde_json::json!({"success": true}));

    for bad in ["short", "has%20space-0123456789", "%3Cscript%3E0123456789"] {
        let r = broker.get(&format!("/fetch?token={bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_error_shape(&r);
        let r = broker.get(&format!("/?token={bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    assert_eq!(broker.get("/fetch").await.status, 400);
}

#[tokio::test]
async fn jsonp_only_for_plain_callback_names() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    broker.get(&format!("/?token={TOKEN}")).await;

    let ok = broker
        .get(&format!(
            "/fetch?token={TOKEN}&callback=angular.callbacks._0"
        ))
        .await;
    assert_eq!(ok.status, 200);
    assert!(
        ok.header("content-type")
            .unwrap()
            .starts_with("application/javascript")
    );
    assert_eq!(
        ok.body,
        "/**/angular.callbacks._0({\"wait\":\"Not ready\"});"
    );

    for evil in ["alert(1);x", "a%3Bb", "x.y(", "%3C%2Fscript%3E", "1abc"] {
        let r = broker
            .get(&format!("/fetch?token={TOKEN}&callback={evil}"))
            .await;
        assert_eq!(r.status, 400, "{evil}");
        assert_error_shape(&r);
        assert!(!r.body.contains("alert"));
    }
    let long = "a".repeat(200);
    assert_eq!(
        broker
            .get(&format!("/fetch?token={TOKEN}&callback={long}"))
            .await
            .status,
        400
    );
    // JSONP errors reach the page (a failed script load would tell it nothing).
    let unknown = broker
        .get("/fetch?token=never-registered-0000&callback=cb")
        .await;
    assert_eq!(unknown.status, 200);
    assert!(
        unknown.body.starts_with("/**/cb({\"error\":"),
        "{}",
        unknown.body
    );
    assert!(unknown.header("x-reason").is_some());
}

async fn revoke_json(broker: &Broker, authid: &str) -> crate::support::broker::Reply {
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/revoke")
        .header("X-AuthID", authid)
        .body(axum::body::Body::empty())
        .unwrap();
    broker.request(request).await
}

#[tokio::test]
async fn revocation_google_style_sends_only_the_token() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    mock.set_revoke_requires_client_auth(false);
    let rt = mock.issue_refresh_token();
    let authid = broker.seal("googledrive", &rt);
    assert_eq!(broker.refresh(&authid).await.status, 200);

    let r = revoke_json(&broker, &authid).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"], "revoked");
    assert_eq!(mock.revoked(), vec![rt.clone()]);
    let sent = mock.last_revoke_request().unwrap();
    assert_eq!(sent["token"], rt);
    assert!(!sent.contains_key("client_secret"));
    // The cached access token is gone too: the next refresh asks the
    // provider, which refuses.
    let after = broker.refresh(&authid).await;
    assert_eq!(after.status, 401, "{}", after.body);
}

#[tokio::test]
async fn revocation_box_style_authenticates_the_client() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let rt = mock.issue_refresh_token();
    let authid = broker.seal("box.com", &rt);
    let page = broker
        .post_form("/revoked", &format!("authid={}", urlencode(&authid)))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("AuthID revoked"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(mock.revoked(), vec![rt.clone()]);
    let sent = mock.last_revoke_request().unwrap();
    assert_eq!(sent["client_secret"], CLIENT_SECRET);
    assert!(!mock.is_valid_refresh_token(&rt));

    let form = broker.get("/revoke").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("action=\"/revoked\""));
    assert!(form.body.contains("<label for=\"authid-input\">"));
}

#[tokio::test]
async fn revocation_without_an_endpoint_points_to_the_provider() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let authid = broker.seal("onedrivev2", &mock.issue_refresh_token());
    let r = revoke_json(&broker, &authid).await;
    assert_eq!(r.status, 422);
    assert_error_shape(&r);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("https://account.live.com/consent/Manage")
    );
    let page = broker
        .post_form("/revoked", &format!("authid={}", urlencode(&authid)))
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("href=\"https://account.live.com/consent/Manage\"")
    );
    assert_eq!(mock.revoke_calls(), 0);

    let missing = revoke_json(&broker, "").await;
    assert_eq!(missing.status, 400);
    assert_error_shape(&missing);
    let bad = revoke_json(&broker, "v3:not.a.real.jwe.x").await;
    assert!(bad.status.is_client_error());
    assert_error_shape(&bad);
    let page = broker.post_form("/revoked", "authid=garbage").await;
    assert_eq!(page.status, 400);
}

#[tokio::test]
async fn no_open_redirect_through_any_parameter() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    for uri in [
        "/login?id=https://evil.example",
        "/login?id=//evil.example",
        "/login?id=%2F%2Fevil.example",
        "/login?id=googledrive&token=//evil.example",
        "/login?id=jottacloud&token=https://evil.example",
        "/refresh?type=//evil.example",
        "/refresh?type=https://evil.example",
        "/?type=https://evil.example",
        "/cli-token?id=//evil.example",
        "/logged-in?state=x&redirect_uri=https://evil.example",
        "/login?id=googledrive&redirect_uri=https://evil.example&next=https://evil.example",
    ] {
        let r = broker.get(uri).await;
        match r.header("location") {
            None => assert!(r.status.is_client_error(), "{uri}: {}", r.status),
            Some(location) => {
                let local = location.starts_with('/') && !location.starts_with("//");
                assert!(
                    local || location.starts_with(&mock.authorize_url()),
                    "{uri} -> {location}"
                );
                assert!(!location.contains("evil"), "{uri} -> {location}");
            }
        }
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `PUBLIC_URL` with a path: a proxy serves the broker under `/oauth` and
/// strips the prefix, so every URL the broker builds must carry it.
#[tokio::test]
async fn a_path_in_public_url_is_kept_in_every_url_the_broker_builds() {
    let mock = MockProvider::start().await;
    let clock = oauth_broker::clock::system();
    let broker = Broker::build(
        &mock,
        crate::support::broker::BUILTIN,
        clock,
        "https://broker.example/oauth",
    );

    let r = broker.get("/refresh?type=box").await;
    assert!(r.status.is_redirection());
    assert_eq!(r.header("location"), Some("/oauth/?type=box"));

    let index = broker.get(&format!("/?token={TOKEN}")).await;
    for link in [
        "href=\"/oauth/static/site.css\"",
        "href=\"/oauth/\"",
        "href=\"/oauth/revoke\"",
        "href=\"/oauth/privacy-policy\"",
        &format!("href=\"/oauth/login?id=googledrive&amp;token={TOKEN}\""),
        &format!("href=\"/oauth/cli-token?id=jottacloud&amp;token={TOKEN}\""),
    ] {
        assert!(index.body.contains(link), "{link} in {}", index.body);
    }
    let cli = broker.get("/cli-token?id=jottacloud").await;
    assert!(cli.body.contains("action=\"/oauth/cli-token-login\""));
    let revoke = broker.get("/revoke").await;
    assert!(revoke.body.contains("action=\"/oauth/revoked\""));
    let error = broker.get("/?type=nosuch").await;
    assert!(error.body.contains("href=\"/oauth/\""), "{}", error.body);

    // The login: redirect URI and cookie path carry the prefix.
    let start = broker.get("/login?id=googledrive").await;
    assert_eq!(start.status, 302);
    let authorize = url::Url::parse(start.header("location").unwrap()).unwrap();
    let redirect_uri = authorize
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        redirect_uri.as_deref(),
        Some("https://broker.example/oauth/logged-in")
    );
    let set_cookie = start.header("set-cookie").unwrap();
    assert!(set_cookie.contains("Path=/oauth/logged-in"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();

    // The browser comes back through the proxy, which strips the prefix.
    let back = crate::login::authorize(&authorize).await;
    let back = back
        .strip_prefix("/oauth")
        .expect("callback under the prefix");
    let page = broker.get_with(back, &[("cookie", &cookie)]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for link in [
        "src=\"/oauth/static/login.js\"",
        "data-base=\"/oauth\"",
        "href=\"/oauth/revoke\"",
    ] {
        assert!(page.body.contains(link), "{link} in {}", page.body);
    }

    // Error answers send users to PUBLIC_URL with its path.
    let foreign = Broker::new(&mock).seal("googledrive", "rt-foreign");
    let refused = broker.refresh(&foreign).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("https://broker.example/oauth"),
        "{}",
        refused.body
    );
}

/// A login that hands its AuthID to a polling program says so on the page
/// the user sees before going to the provider.
#[tokio::test]
async fn a_login_with_a_fetch_token_says_where_the_authid_goes() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    let notice = "The AuthID will be handed to the program that opened this window.";

    let with = broker
        .get(&format!("/?type=googledrive&token={TOKEN}"))
        .await;
    assert!(with.body.contains(notice), "{}", with.body);
    let all = broker.get(&format!("/?token={TOKEN}")).await;
    assert!(all.body.contains(notice));
    let without = broker.get("/?type=googledrive").await;
    assert!(!without.body.contains(notice));
    let cli = broker
        .get(&format!("/cli-token?id=jottacloud&token={TOKEN}"))
        .await;
    assert!(cli.body.contains(notice), "{}", cli.body);
    assert!(
        !broker
            .get("/cli-token?id=jottacloud")
            .await
            .body
            .contains(notice)
    );

    // Another site sending the browser straight to /login with a token
    // lands on that page first; this site's own link goes through.
    let login = format!("/login?id=googledrive&token={TOKEN}");
    for site in ["cross-site", "same-site"] {
        let r = broker.get_with(&login, &[("sec-fetch-site", site)]).await;
        assert_eq!(r.status, 302);
        assert_eq!(
            r.header("location"),
            Some(format!("/?type=googledrive&token={TOKEN}").as_str()),
            "{site}"
        );
        assert!(r.header("set-cookie").is_none(), "no login started");
    }
    for site in [Some("same-origin"), Some("none"), None] {
        let headers: Vec<(&str, &str)> = site.map(|s| ("sec-fetch-site", s)).into_iter().collect();
        let r = broker.get_with(&login, &headers).await;
        assert_eq!(r.status, 302);
        assert!(
            r.header("location")
                .unwrap()
                .starts_with(&mock.authorize_url()),
            "{site:?}: {:?}",
            r.header("location")
        );
    }
    let plain = broker
        .get_with("/login?id=googledrive", &[("sec-fetch-site", "cross-site")])
        .await;
    assert!(
        plain
            .header("location")
            .unwrap()
            .starts_with(&mock.authorize_url()),
        "without a token nothing is handed to the opener"
    );
}

/// Duplicati's UIs make fetch tokens of 17 to 25 base-36 characters; they
/// must keep working. Tokens outside the alphabet or too short are refused
/// when registered.
#[tokio::test]
async fn fetch_tokens_of_duplicatis_shape_register_and_malformed_ones_are_refused() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    for token in ["k3j5h2g8f9d0s1a2q", "4fzyo82mvyr0x8rkq2m7tz5d"] {
        let page = broker
            .get(&format!("/?type=googledrive&token={token}"))
            .await;
        assert_eq!(page.status, 200, "{token}");
        let wait = broker.get(&format!("/fetch?token={token}")).await;
        assert_eq!(
            wait.json(),
            serde_json::json!({"wait": "Not ready"}),
            "{token}"
        );
    }
    for token in [
        "short",
        "abcdefghijklmno",
        "abcdefghijklmnop.q",
        "abcdefghij%20klmnop",
    ] {
        let page = broker
            .get(&format!("/?type=googledrive&token={token}"))
            .await;
        assert_eq!(page.status, 400, "{token}");
        let login = broker
            .get(&format!("/login?id=googledrive&token={token}"))
            .await;
        assert_eq!(login.status, 400, "{token}");
    }
}

/// A login that fails before the code exchange (here: its callback in a
/// browser that did not start it) is answered to the polling client at
/// once, not "wait" until the token runs out; the rightful browser
/// finishing the login afterwards replaces the failure with the AuthID,
/// and a replayed callback changes nothing.
#[tokio::test]
async fn the_polling_client_hears_of_a_failed_login_and_then_of_its_success() {
    let mock = MockProvider::start().await;
    let broker = Broker::new(&mock);
    broker
        .get(&format!("/?type=googledrive&token={TOKEN}"))
        .await;
    let started = start(&broker, &format!("/login?id=googledrive&token={TOKEN}")).await;
    let back = authorize(&started.authorize).await;

    let elsewhere = callback(&broker, &back, None).await;
    assert_eq!(elsewhere.status, 400);
    let failed = broker.get(&format!("/fetch?token={TOKEN}")).await;
    assert_eq!(failed.status, 400, "{}", failed.body);
    assert_error_shape(&failed);
    assert!(
        failed.json()["error"]
            .as_str()
            .unwrap()
            .contains("another browser"),
        "{}",
        failed.body
    );

    let page = callback(&broker, &back, Some(&started.cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let authid = authid_in(&page.body).expect("AuthID");
    let replayed = callback(&broker, &back, Some(&started.cookie)).await;
    assert_eq!(replayed.status, 400);
    let elsewhere_again = callback(&broker, &back, None).await;
    assert_eq!(elsewhere_again.status, 400);
    let fetched = broker.get(&format!("/fetch?token={TOKEN}")).await;
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(fetched.json()["authid"], authid.as_str());
    assert_eq!(mock.token_calls(), 1);
}

/// A login whose state ran out while the token was still registered.
#[tokio::test]
async fn the_polling_client_hears_that_the_login_expired() {
    let mock = MockProvider::start().await;
    let clock = ManualClock::new(SystemClock.now());
    let broker = Broker::with_clock(&mock, Arc::new(clock.clone()));
    let started = start(&broker, &format!("/login?id=googledrive&token={TOKEN}")).await;
    let back = authorize(&started.authorize).await;
    clock.advance(400);
    // The page reloaded: the token is registered for another 10 minutes.
    broker
        .get(&format!("/?type=googledrive&token={TOKEN}"))
        .await;
    let wait = broker.get(&format!("/fetch?token={TOKEN}")).await;
    assert_eq!(wait.json(), serde_json::json!({"wait": "Not ready"}));
    clock.advance(201);
    let page = callback(&broker, &back, Some(&started.cookie)).await;
    assert_eq!(page.status, 400);
    let expired = broker.get(&format!("/fetch?token={TOKEN}")).await;
    assert_eq!(expired.status, 400, "{}", expired.body);
    assert!(
        expired.json()["error"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{}",
        expired.body
    );
    assert_eq!(mock.token_calls(), 0);
}
