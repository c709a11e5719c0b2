//! The one error type at the HTTP edge. Every domain error converts into
//! it (`From`), and the conversion decides the status, the text the user
//! reads and `Retry-After`, and keeps the cause. It renders as JSON here
//! (`{"error": ...}` with `X-Reason`) or as a page through `page::error`.
//! Either way the cause travels in a response extension to the one line
//! the middleware logs for each error answer; it is never in the answer.

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::authid::AuthIdError;
use crate::cause::Cause;
use crate::login::{LoginError, RevokeError};
use crate::migrate::{APP_ENGINE_RETRY_AFTER, AppEngineError, MigrationError};
use crate::provider::{Attempt, UpstreamError};
use crate::refresh::{RefreshError, STORE_RETRY_AFTER};

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Shown to users: never a token, secret or AuthID.
    pub message: String,
    pub retry_after: Option<u64>,
    /// The user must create a new AuthID: the text ends by saying where,
    /// which the edge knows (`PUBLIC_URL`) and the domain does not.
    new_authid: bool,
    /// How the error looks as a page.
    pub(super) page: PageHints,
    /// What went wrong inside: logged, never answered.
    cause: Option<Cause>,
}

/// The parts of an error page beyond status and text.
#[derive(Debug, Clone)]
pub(super) struct PageHints {
    pub title: &'static str,
    /// The provider whose login the page offers to start again.
    pub restart: Option<String>,
    /// Also point to where the application's access is removed at that
    /// provider (it kept an earlier consent).
    pub deauth: bool,
}

impl Default for PageHints {
    fn default() -> Self {
        Self {
            title: "The request did not work",
            restart: None,
            deauth: false,
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            new_authid: false,
            page: PageHints::default(),
            cause: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The store could not be read (a fetch token): what a refresh answers
    /// when the store is down, word for word.
    pub fn store_unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, STORE_UNAVAILABLE)
            .with_retry_after(STORE_RETRY_AFTER)
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The heading when the error is shown as a page.
    pub fn titled(mut self, title: &'static str) -> Self {
        self.page.title = title;
        self
    }

    fn with_cause(mut self, cause: Option<Cause>) -> Self {
        self.cause = cause;
        self
    }

    fn telling_where_to_create_an_authid(mut self) -> Self {
        self.new_authid = true;
        self
    }

    /// The text the user reads. `public_base` (`PUBLIC_URL`) completes a
    /// text that sends the user to create a new AuthID.
    pub fn text(&self, public_base: Option<&str>) -> Cow<'_, str> {
        match (self.new_authid, public_base) {
            (false, _) => Cow::Borrowed(&self.message),
            (true, Some(base)) => format!("{}; create a new AuthID at {base}", self.message).into(),
            (true, None) => format!("{}; create a new AuthID", self.message).into(),
        }
    }

    pub(super) fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }

    /// The JSON answer: `{"error": text}`, `X-Reason`, `Retry-After`, never
    /// cached.
    fn json(&self, public_base: Option<&str>) -> Response {
        let text = self.text(public_base);
        let mut response = (self.status, axum::Json(json!({ "error": text }))).into_response();
        let headers = response.headers_mut();
        set_reason(headers, &text);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `X-Reason` with the text, readable by scripts of other origins.
pub(super) fn set_reason(headers: &mut HeaderMap, text: &str) {
    headers.insert(HeaderName::from_static("x-reason"), header_text(text));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-Reason"),
    );
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

/// What an error answer leaves in its extensions for the middleware.
#[derive(Clone)]
pub(super) struct Report {
    cause: Option<Cause>,
    /// A JSON answer whose text must still say where to create a new
    /// AuthID.
    unfinished: Option<Arc<ApiError>>,
}

impl Report {
    pub(super) fn cause(cause: Option<Cause>) -> Self {
        Self {
            cause,
            unfinished: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.json(None);
        let report = Report {
            cause: self.cause.clone(),
            unfinished: self.new_authid.then(|| Arc::new(self)),
        };
        response.extensions_mut().insert(report);
        response
    }
}

/// Finishes an answer on its way out: a JSON error that sends the user to
/// create a new AuthID is rendered again with `PUBLIC_URL`. Returns the
/// cause to log with the answer.
pub(super) fn finish(response: &mut Response, public_base: &str) -> Option<Cause> {
    let report = response.extensions_mut().remove::<Report>()?;
    if let Some(error) = report.unfinished {
        *response = error.json(Some(public_base));
    }
    report.cause
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

/// A refresh failure: its status and a reason the user can act on.
impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        let text = e.to_string();
        let cause = e.cause().cloned();
        match e {
            RefreshError::AuthId(e) if e.is_unauthorized() => {
                Self::from(e).telling_where_to_create_an_authid()
            }
            RefreshError::AuthId(e) => e.into(),
            RefreshError::UnknownProvider(_) | RefreshError::AccessTokenOnly(_) => {
                Self::bad_request(text)
            }
            RefreshError::Upstream(e) => e.into(),
            RefreshError::Revoked | RefreshError::CorruptGeneration => {
                Self::new(StatusCode::UNAUTHORIZED, text).telling_where_to_create_an_authid()
            }
            RefreshError::Refused(refusal) => Self::new(StatusCode::SERVICE_UNAVAILABLE, text)
                .with_retry_after(refusal.retry_after()),
            RefreshError::Interrupted { retry_after }
            | RefreshError::InProgress { retry_after } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, text).with_retry_after(retry_after)
            }
            RefreshError::StoreUnavailable => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, text).with_retry_after(STORE_RETRY_AFTER)
            }
            RefreshError::Overloaded => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, text).with_retry_after(1)
            }
            RefreshError::TooMany { retry_after, .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, text).with_retry_after(retry_after)
            }
            RefreshError::UnknownClient(_) => {
                Self::new(StatusCode::UNAUTHORIZED, text).telling_where_to_create_an_authid()
            }
            RefreshError::Migration(e) => e.into(),
            RefreshError::Seal(_) | RefreshError::Internal => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, text).with_cause(cause)
            }
        }
    }
}

/// An AuthID of the old App Engine service that could not be migrated.
impl From<MigrationError> for ApiError {
    fn from(e: MigrationError) -> Self {
        match e {
            MigrationError::AppEngine(AppEngineError::Unknown) => Self::new(
                StatusCode::UNAUTHORIZED,
                "The old OAuth service does not know this AuthID or its password",
            )
            .telling_where_to_create_an_authid(),
            MigrationError::AppEngine(AppEngineError::NotConfigured) => Self::new(
                StatusCode::UNAUTHORIZED,
                "This AuthID was issued by the old OAuth service, which this server does not read",
            )
            .telling_where_to_create_an_authid(),
            MigrationError::AppEngine(AppEngineError::ApiKey | AppEngineError::BadAnswer(_)) => {
                Self::new(
                    StatusCode::BAD_GATEWAY,
                    "The old OAuth service refused to hand over this AuthID's login; the operator must fix the migration settings",
                )
            }
            MigrationError::AppEngine(AppEngineError::Unavailable) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The old OAuth service cannot be reached to move this AuthID over; try again later",
            )
            .with_retry_after(APP_ENGINE_RETRY_AFTER),
            MigrationError::Unsupported => Self::new(
                StatusCode::UNAUTHORIZED,
                "This AuthID's login is for a service this server no longer offers (such as the retired Live Connect API of OneDrive)",
            )
            .telling_where_to_create_an_authid(),
            MigrationError::Busy(retry_after) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many AuthIDs of the old OAuth service are being moved over right now; try again later",
            )
            .with_retry_after(retry_after),
            MigrationError::Store => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "This server's store is unavailable; try again shortly",
            )
            .with_retry_after(APP_ENGINE_RETRY_AFTER),
        }
    }
}

/// Seconds a throttled client is told to wait when the provider gave none.
const DEFAULT_RETRY_AFTER: u64 = 60;

/// What a client reads when the store cannot be reached (the refresher
/// words its own failure the same way).
const STORE_UNAVAILABLE: &str = "The broker's store is unavailable; try again shortly";

/// A provider's refusal or failure, after a refresh or during a login: the
/// one mapping of provider failures to HTTP. The provider's own words (its
/// OAuth code) are logged where the request was made, not here.
fn upstream(e: &UpstreamError, attempt: Attempt) -> ApiError {
    let status = match e {
        UpstreamError::Reauthorize { .. } if attempt == Attempt::Login => StatusCode::BAD_REQUEST,
        UpstreamError::Reauthorize { .. } => StatusCode::UNAUTHORIZED,
        UpstreamError::Misconfigured { .. } | UpstreamError::Unavailable { .. } => {
            StatusCode::BAD_GATEWAY
        }
        UpstreamError::Throttled { .. } => StatusCode::SERVICE_UNAVAILABLE,
        UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
    };
    let error = ApiError::new(status, e.advice(attempt));
    match e {
        UpstreamError::Reauthorize { .. } if attempt == Attempt::Refresh => {
            error.telling_where_to_create_an_authid()
        }
        UpstreamError::Throttled { retry_after } => {
            error.with_retry_after(retry_after.map_or(DEFAULT_RETRY_AFTER, |d| d.as_secs()))
        }
        _ => error,
    }
}

/// A provider's refusal of a refresh or a revocation.
impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        upstream(&e, Attempt::Refresh)
    }
}

impl From<RevokeError> for ApiError {
    fn from(e: RevokeError) -> Self {
        match e {
            RevokeError::AuthId(e) | RevokeError::Held(e) => e.into(),
            RevokeError::Upstream(e) => e.into(),
        }
    }
}

/// A login that produced no AuthID: usually shown as a page, which can
/// offer to start the login again.
impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        let mut error = match &e {
            LoginError::Upstream { error, .. } => upstream(error, Attempt::Login),
            LoginError::UnknownProvider => Self::new(StatusCode::NOT_FOUND, ""),
            LoginError::BadInput(_)
            | LoginError::State(_)
            | LoginError::Expired { .. }
            | LoginError::WrongBrowser
            | LoginError::Replayed { .. }
            | LoginError::Declined { .. }
            | LoginError::HostNotAllowed(_) => Self::new(StatusCode::BAD_REQUEST, ""),
            LoginError::NoRefreshToken { .. } => Self::new(StatusCode::CONFLICT, ""),
            LoginError::Held { refusal, .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, "")
                .with_retry_after(refusal.retry_after()),
            LoginError::TooMany { retry_after } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "").with_retry_after(*retry_after)
            }
            LoginError::Seal(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, ""),
        };
        error.message = e.message();
        error.page = PageHints {
            title: match &e {
                LoginError::UnknownProvider => "Unknown provider",
                LoginError::Expired { .. } => "The login has expired",
                LoginError::NoRefreshToken { .. } => "No lasting access was granted",
                LoginError::Declined { .. } => "Access was not granted",
                _ => "The login did not work",
            },
            restart: e.restart().map(str::to_string),
            deauth: matches!(e, LoginError::NoRefreshToken { .. }),
        };
        error.with_cause(e.cause())
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "No such page")
}

/// A known path asked with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "This method is not allowed here",
    )
}

/// A panic becomes a JSON 500 without detail; the panic itself is logged.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
}

#[cfg(test)]
mod tests;
