//! The one error type at the HTTP edge. It decides the status, the
//! `X-Reason` text and `Retry-After`; every error is JSON
//! `{"error": "<message>"}`.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::authid::AuthIdError;
use crate::migrate::{LEGACY_RETRY_AFTER, LegacyError, MigrationError};
use crate::provider::UpstreamError;
use crate::refresh::RefreshError;

/// An error answered to a client. The message is shown to users: it must
/// never carry a token, secret or AuthID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

impl ApiError {
    /// Maps a refresh failure to its status and a reason the user can act
    /// on. `public_base` is where a new AuthID can be created.
    pub fn from_refresh(e: RefreshError, public_base: &str) -> Self {
        match e {
            RefreshError::AuthId(e) if e.is_unauthorized() => Self::new(
                StatusCode::UNAUTHORIZED,
                format!("{e}; create a new AuthID at {public_base}"),
            ),
            RefreshError::AuthId(e) => e.into(),
            e @ (RefreshError::UnknownProvider(_) | RefreshError::AccessTokenOnly(_)) => {
                Self::bad_request(e.to_string())
            }
            RefreshError::Upstream(e) => Self::from_upstream(e, public_base),
            e @ RefreshError::Revoked => Self::new(
                StatusCode::UNAUTHORIZED,
                format!("{e}; create a new AuthID at {public_base}"),
            ),
            e @ RefreshError::Refused(refusal) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .with_retry_after(refusal.retry_after())
            }
            e @ RefreshError::Interrupted { retry_after } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .with_retry_after(retry_after)
            }
            e @ RefreshError::InProgress { retry_after } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .with_retry_after(retry_after)
            }
            e @ RefreshError::StoreUnavailable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .with_retry_after(crate::refresh::STORE_RETRY_AFTER)
            }
            e @ RefreshError::TooMany { retry_after, .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
                    .with_retry_after(retry_after)
            }
            e @ RefreshError::UnknownClient(_) => Self::new(
                StatusCode::UNAUTHORIZED,
                format!("{e}; create a new AuthID at {public_base}"),
            ),
            RefreshError::Migration(e) => Self::from_migration(e, public_base),
            e @ (RefreshError::Seal | RefreshError::Internal) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }

    /// An AuthID of the old App Engine service that could not be migrated.
    pub fn from_migration(e: MigrationError, public_base: &str) -> Self {
        match e {
            MigrationError::Legacy(LegacyError::Unknown) => Self::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "The old OAuth service does not know this AuthID or its password; create a new AuthID at {public_base}"
                ),
            ),
            MigrationError::Legacy(LegacyError::NotConfigured) => Self::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "This AuthID was issued by the old OAuth service, which this server does not read; create a new AuthID at {public_base}"
                ),
            ),
            MigrationError::Legacy(LegacyError::ApiKey | LegacyError::BadAnswer(_)) => Self::new(
                StatusCode::BAD_GATEWAY,
                "The old OAuth service refused to hand over this AuthID's login; the operator must fix the migration settings",
            ),
            MigrationError::Legacy(LegacyError::Unavailable) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The old OAuth service cannot be reached to move this AuthID over; try again later",
            )
            .with_retry_after(LEGACY_RETRY_AFTER),
            MigrationError::Store => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "This server's store is unavailable; try again shortly",
            )
            .with_retry_after(LEGACY_RETRY_AFTER),
        }
    }

    pub fn from_upstream(e: UpstreamError, public_base: &str) -> Self {
        match e {
            UpstreamError::Reauthorize { .. } => Self::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "The provider no longer accepts this login; create a new AuthID at {public_base}"
                ),
            ),
            UpstreamError::Misconfigured { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "The provider refused this server's registration; the operator must fix it",
            ),
            UpstreamError::Throttled { retry_after } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The provider is throttling requests; try again later",
            )
            .with_retry_after(retry_after.map_or(DEFAULT_RETRY_AFTER, |d| d.as_secs())),
            UpstreamError::Unavailable { detail } => Self::new(
                StatusCode::BAD_GATEWAY,
                format!("The provider failed ({detail}); try again later"),
            ),
            UpstreamError::Timeout => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "The provider did not answer in time; try again later",
            ),
        }
    }
}

/// Seconds a throttled client is told to wait when the provider gave none.
const DEFAULT_RETRY_AFTER: u64 = 60;

impl From<AuthIdError> for ApiError {
    fn from(e: AuthIdError) -> Self {
        if e.is_unauthorized() {
            Self::new(StatusCode::UNAUTHORIZED, e.to_string())
        } else {
            Self::bad_request(e.to_string())
        }
    }
}

/// One line, printable ASCII, bounded: safe for a header.
fn header_text(message: &str) -> HeaderValue {
    let clean: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .take(300)
        .collect();
    HeaderValue::from_str(clean.trim()).unwrap_or_else(|_| HeaderValue::from_static("error"))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({ "error": self.message }));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            HeaderName::from_static("x-reason"),
            header_text(&self.message),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("X-Reason"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "No such page")
}

/// A panic becomes a JSON 500 without detail; the panic itself is logged.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_is_one_clean_line() {
        let v = header_text("line one\nline two\u{e9}");
        assert_eq!(v.to_str().unwrap(), "line one line two");
    }

    #[test]
    fn migration_errors_map_to_their_statuses() {
        let base = "https://oauth.example.com";
        let answer = |e: LegacyError| ApiError::from_migration(e.into(), base);
        for e in [LegacyError::Unknown, LegacyError::NotConfigured] {
            let a = answer(e);
            assert_eq!(a.status, StatusCode::UNAUTHORIZED);
            assert!(a.message.contains(base), "{}", a.message);
        }
        assert_eq!(answer(LegacyError::ApiKey).status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            answer(LegacyError::BadAnswer("x")).status,
            StatusCode::BAD_GATEWAY
        );
        let unavailable = answer(LegacyError::Unavailable);
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.retry_after, Some(LEGACY_RETRY_AFTER));
        let store = ApiError::from_migration(MigrationError::Store, base);
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
}
