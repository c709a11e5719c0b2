//! The one error type at the HTTP edge. It decides the status, the
//! `X-Reason` text and `Retry-After`; every error is JSON
//! `{"error": "<message>"}`.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::authid::AuthIdError;

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
