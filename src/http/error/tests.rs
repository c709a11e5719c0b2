//! How each domain error is answered: status, reason and headers.

use super::*;
use crate::login::state::StateError;

#[test]
fn header_text_is_one_clean_line() {
    let v = header_text("line one\nline two\u{e9}");
    assert_eq!(v.to_str().unwrap(), "line one line two");
}

#[test]
fn migration_errors_map_to_their_statuses() {
    let base = "https://oauth.example.com";
    let answer = |e: AppEngineError| ApiError::from(MigrationError::from(e));
    for e in [AppEngineError::Unknown, AppEngineError::NotConfigured] {
        let a = answer(e);
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        let text = a.text(Some(base));
        assert!(text.contains(base), "{text}");
    }
    assert_eq!(
        answer(AppEngineError::ApiKey).status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        answer(AppEngineError::BadAnswer("x")).status,
        StatusCode::BAD_GATEWAY
    );
    let unavailable = answer(AppEngineError::Unavailable);
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.retry_after, Some(APP_ENGINE_RETRY_AFTER));
    let store = ApiError::from(MigrationError::Store);
    assert_eq!(store.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(store.retry_after.is_some());
}

#[test]
fn authid_errors_map_to_400_or_401() {
    assert_eq!(
        ApiError::from(AuthIdError::Empty).status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        ApiError::from(AuthIdError::RetiredKey).status,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn a_refresh_the_provider_refuses_for_good_says_where_to_create_an_authid() {
    let e = ApiError::from(RefreshError::Upstream(UpstreamError::Reauthorize {
        code: "invalid_grant".into(),
    }));
    assert_eq!(e.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        e.text(Some("https://broker.example")),
        "The provider no longer accepts this login; create a new AuthID at https://broker.example"
    );
    let login = ApiError::from(LoginError::Upstream {
        provider: "box.com".into(),
        error: UpstreamError::Reauthorize {
            code: "invalid_grant".into(),
        },
    });
    assert_eq!(login.status, StatusCode::BAD_REQUEST);
    assert!(!login.text(Some("https://b.example")).contains("b.example"));
}

#[test]
fn a_cause_is_kept_but_never_in_the_text() {
    let e = ApiError::from(RefreshError::Seal(Cause::new("josekit: key unusable")));
    assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(e.cause().unwrap().to_string(), "josekit: key unusable");
    assert!(!e.text(None).contains("josekit"));
    let login = ApiError::from(LoginError::Upstream {
        provider: "box.com".into(),
        error: UpstreamError::Misconfigured {
            code: "invalid_scope".into(),
        },
    });
    assert!(login.cause().unwrap().to_string().contains("invalid_scope"));
    assert!(!login.text(None).contains("invalid_scope"));
}

#[test]
fn login_errors_have_a_status_title_and_restart() {
    let e = ApiError::from(LoginError::NoRefreshToken {
        provider: "box.com".into(),
    });
    assert_eq!(e.status, StatusCode::CONFLICT);
    assert_eq!(e.page.title, "No lasting access was granted");
    assert_eq!(e.page.restart.as_deref(), Some("box.com"));
    assert!(e.page.deauth);
    let e = ApiError::from(LoginError::State(StateError::Invalid));
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert_eq!(e.page.title, "The login did not work");
    assert!(e.page.restart.is_none());
    assert_eq!(
        ApiError::from(LoginError::UnknownProvider).status,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn a_fetch_store_failure_is_answered_like_a_refresh_store_failure() {
    let fetch = ApiError::store_unavailable();
    let refresh = ApiError::from(RefreshError::StoreUnavailable);
    assert_eq!(fetch.status, refresh.status);
    assert_eq!(fetch.message, refresh.message);
    assert_eq!(fetch.retry_after, refresh.retry_after);
}

#[test]
fn a_rotation_count_at_its_end_is_a_401_with_its_reason() {
    let e = ApiError::from(RefreshError::CorruptGeneration);
    assert_eq!(e.status, StatusCode::UNAUTHORIZED);
    let text = e.text(Some("https://broker.example"));
    assert!(
        text.starts_with("This AuthID's rotation record is damaged"),
        "{text}"
    );
    assert!(text.contains("https://broker.example"), "{text}");
}
