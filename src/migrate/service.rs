//! The old App Engine service's worker API, behind a trait so tests can
//! swap it: `GET /export` hands out the token stored for an AuthID,
//! `POST /import` replaces it. Both are guarded by `X-APIKey` and take the
//! old AuthID in `X-AuthID`. The HTTP client is bounded like the provider
//! client: a timeout, no redirects, a cap on the answer's size.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use crate::provider::is_provider_id;
use crate::secret::Sensitive;

/// Longest wait for the old service. Duplicati gives up after 25 seconds,
/// and a migration still has to refresh at the provider afterwards.
pub const APP_ENGINE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read: a stored token is well under 8 KiB.
pub const MAX_APP_ENGINE_ANSWER_BYTES: usize = 64 * 1024;
/// Seconds a client is told to wait when the old service cannot be reached.
pub const APP_ENGINE_RETRY_AFTER: u64 = 30;

use crate::config::AppEngineServiceSettings;

/// What `/export` yields that the broker uses: the provider and the
/// refresh token. The exported access token is not trusted (it may be
/// stale or revoked); the migration refreshes at the provider.
#[derive(Debug, Clone)]
pub struct ExportedGrant {
    pub service: String,
    pub refresh_token: Sensitive,
}

/// The newest token of a migrated login, as `/import` takes it.
#[derive(Debug, Clone, Serialize)]
pub struct ImportedToken {
    pub refresh_token: Sensitive,
    pub access_token: Sensitive,
    pub expires_in: u64,
    pub token_type: &'static str,
}

/// How a call to the old service failed. Texts name no AuthID or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppEngineError {
    /// No old service is configured.
    #[error("no old service is configured")]
    NotConfigured,
    /// The old service does not know the key id (404) or the password does
    /// not open its entry (400).
    #[error("the old service does not know this AuthID")]
    Unknown,
    /// The old service refused `LEGACY_SERVICE_API_KEY` (403).
    #[error("the old service refused LEGACY_SERVICE_API_KEY")]
    ApiKey,
    /// No answer: refused connection, timeout, or the old service failed
    /// (5xx) or throttled (429).
    #[error("the old service cannot be reached")]
    Unavailable,
    /// An answer the broker cannot use (a redirect, an unexpected status, a
    /// body that is not the stored token).
    #[error("the old service answered unexpectedly: {0}")]
    BadAnswer(&'static str),
}

impl AppEngineError {
    /// A stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Unknown => "unknown",
            Self::ApiKey => "api_key",
            Self::Unavailable => "unavailable",
            Self::BadAnswer(_) => "bad_answer",
        }
    }
}

/// The old service's worker API. `authid` is the whole `keyid:password`.
pub trait AppEngineService: Send + Sync + 'static {
    fn export<'a>(
        &'a self,
        authid: &'a str,
    ) -> BoxFuture<'a, Result<ExportedGrant, AppEngineError>>;

    fn import<'a>(
        &'a self,
        authid: &'a str,
        token: &'a ImportedToken,
    ) -> BoxFuture<'a, Result<(), AppEngineError>>;
}

/// The production client.
pub struct HttpAppEngineService {
    client: reqwest::Client,
    export_url: Url,
    import_url: Url,
    api_key: Sensitive,
}

impl HttpAppEngineService {
    pub fn new(settings: &AppEngineServiceSettings) -> Result<Self, String> {
        Self::with_timeout(settings, APP_ENGINE_TIMEOUT)
    }

    pub fn with_timeout(
        settings: &AppEngineServiceSettings,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oauth-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let endpoint = |name: &str| {
            Url::parse(&format!(
                "{}/{name}",
                settings.url.as_str().trim_end_matches('/')
            ))
            .map_err(|_| format!("LEGACY_SERVICE_URL cannot take /{name}"))
        };
        Ok(Self {
            client,
            export_url: endpoint("export")?,
            import_url: endpoint("import")?,
            api_key: settings.api_key.clone(),
        })
    }

    fn request(&self, method: reqwest::Method, url: &Url, authid: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header("X-APIKey", self.api_key.expose())
            .header("X-AuthID", authid)
    }

    async fn do_export(&self, authid: &str) -> Result<ExportedGrant, AppEngineError> {
        let (status, body) =
            read_answer(self.request(reqwest::Method::GET, &self.export_url, authid)).await?;
        check_status(status)?;
        parse_export(&body)
    }

    async fn do_import(&self, authid: &str, token: &ImportedToken) -> Result<(), AppEngineError> {
        let request = self
            .request(reqwest::Method::POST, &self.import_url, authid)
            .json(token);
        let (status, _) = read_answer(request).await?;
        check_status(status)
    }
}

impl AppEngineService for HttpAppEngineService {
    fn export<'a>(
        &'a self,
        authid: &'a str,
    ) -> BoxFuture<'a, Result<ExportedGrant, AppEngineError>> {
        Box::pin(self.do_export(authid))
    }

    fn import<'a>(
        &'a self,
        authid: &'a str,
        token: &'a ImportedToken,
    ) -> BoxFuture<'a, Result<(), AppEngineError>> {
        Box::pin(self.do_import(authid, token))
    }
}

/// Sends a request and reads its answer, bounded in size.
async fn read_answer(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), AppEngineError> {
    // reqwest's errors may carry the URL; none of it is passed on.
    let mut response = request
        .send()
        .await
        .map_err(|_| AppEngineError::Unavailable)?;
    let status = response.status().as_u16();
    let too_large = AppEngineError::BadAnswer("the answer is too large");
    if response
        .content_length()
        .is_some_and(|len| len > MAX_APP_ENGINE_ANSWER_BYTES as u64)
    {
        return Err(too_large);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| AppEngineError::Unavailable)?
    {
        if body.len() + chunk.len() > MAX_APP_ENGINE_ANSWER_BYTES {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// What the old service's status codes mean (its `export` and `import`
/// handlers answer 403 for a wrong API key, 404 for an unknown key id and
/// 400 for a wrong password or a malformed AuthID).
fn check_status(status: u16) -> Result<(), AppEngineError> {
    match status {
        200..=299 => Ok(()),
        400 | 404 => Err(AppEngineError::Unknown),
        403 => Err(AppEngineError::ApiKey),
        429 | 500..=599 => Err(AppEngineError::Unavailable),
        300..=399 => Err(AppEngineError::BadAnswer(
            "a redirect; LEGACY_SERVICE_URL must be the service's own address",
        )),
        _ => Err(AppEngineError::BadAnswer("an unexpected status")),
    }
}

/// The stored token JSON plus `service`.
fn parse_export(body: &[u8]) -> Result<ExportedGrant, AppEngineError> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|_| AppEngineError::BadAnswer("the body is not JSON"))?;
    let service = json
        .get("service")
        .and_then(Value::as_str)
        .filter(|s| is_provider_id(s))
        .ok_or(AppEngineError::BadAnswer("no valid service"))?;
    let refresh_token = json
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(AppEngineError::BadAnswer("no refresh token"))?;
    Ok(ExportedGrant {
        service: service.to_string(),
        refresh_token: Sensitive::new(refresh_token),
    })
}

/// One log line per failure, at the level its audience needs: a wrong API
/// key or a strange answer is the operator's to fix.
pub(super) fn log_failure(what: &'static str, who: &str, e: AppEngineError) {
    match e {
        AppEngineError::ApiKey | AppEngineError::BadAnswer(_) => tracing::error!(
            key = %who,
            call = what,
            error = %e,
            "the old service refused a call: check LEGACY_SERVICE_URL and LEGACY_SERVICE_API_KEY"
        ),
        AppEngineError::Unavailable => {
            tracing::warn!(key = %who, call = what, error = %e, "the old service cannot be reached")
        }
        AppEngineError::Unknown | AppEngineError::NotConfigured => {
            tracing::info!(key = %who, call = what, error = %e, "the old service does not know an AuthID")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_error_classes() {
        assert_eq!(check_status(200), Ok(()));
        assert_eq!(check_status(404), Err(AppEngineError::Unknown));
        assert_eq!(check_status(400), Err(AppEngineError::Unknown));
        assert_eq!(check_status(403), Err(AppEngineError::ApiKey));
        assert_eq!(check_status(500), Err(AppEngineError::Unavailable));
        assert_eq!(check_status(503), Err(AppEngineError::Unavailable));
        assert_eq!(check_status(429), Err(AppEngineError::Unavailable));
        assert!(matches!(
            check_status(302),
            Err(AppEngineError::BadAnswer(_))
        ));
        assert!(matches!(
            check_status(401),
            Err(AppEngineError::BadAnswer(_))
        ));
    }

    #[test]
    fn export_answers_are_checked() {
        let grant = parse_export(
            br#"{"access_token":"at","refresh_token":"rt","expires_in":3600,"service":"box.com"}"#,
        )
        .unwrap();
        assert_eq!(grant.service, "box.com");
        assert_eq!(grant.refresh_token.expose(), "rt");
        assert!(!format!("{grant:?}").contains("\"rt\""));
        for bad in [
            &b"not json"[..],
            br#"{"refresh_token":"rt"}"#,
            br#"{"refresh_token":"rt","service":"Google Drive"}"#,
            br#"{"refresh_token":"","service":"box.com"}"#,
            br#"{"refresh_token":5,"service":"box.com"}"#,
            br#"{"service":"box.com"}"#,
        ] {
            assert!(
                matches!(parse_export(bad), Err(AppEngineError::BadAnswer(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn endpoints_keep_the_base_path() {
        let settings = AppEngineServiceSettings {
            url: Url::parse("https://old.example.com/oauth/").unwrap(),
            api_key: Sensitive::new("k".repeat(16)),
        };
        let s = HttpAppEngineService::new(&settings).unwrap();
        assert_eq!(
            s.export_url.as_str(),
            "https://old.example.com/oauth/export"
        );
        assert_eq!(
            s.import_url.as_str(),
            "https://old.example.com/oauth/import"
        );
    }

    #[test]
    fn imported_token_serializes_what_the_old_service_requires() {
        let t = ImportedToken {
            refresh_token: Sensitive::new("rt"),
            access_token: Sensitive::new("at"),
            expires_in: 3600,
            token_type: "Bearer",
        };
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["refresh_token"], "rt");
        assert_eq!(json["access_token"], "at");
        assert_eq!(json["expires_in"], 3600);
    }
}
