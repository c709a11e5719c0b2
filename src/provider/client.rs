//! The transport to providers' token endpoints, behind a trait so tests can
//! swap it. The HTTP implementation uses one pooled client, a timeout well
//! under the backup client's 25 s, no redirects and a response size cap.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use url::Url;

use crate::secret::Sensitive;

/// Largest token-endpoint answer read; real ones are under 4 KiB.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What came back from a provider, before interpretation. The body holds
/// tokens, so `Debug` shows only its length.
#[derive(Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

impl std::fmt::Debug for RawAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAnswer")
            .field("status", &self.status)
            .field("retry_after", &self.retry_after)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// The request never produced an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("the provider could not be reached")]
    Connect,
    #[error("the provider's answer was too large")]
    TooLarge,
    #[error("the provider's answer was cut off or invalid")]
    Broken,
}

/// A form field; values that are secrets stay wrapped until sent.
pub type FormField = (std::borrow::Cow<'static, str>, Sensitive);

/// Posts forms to token endpoints, and reads the few JSON documents a
/// login needs (OpenID discovery).
pub trait TokenClient: Send + Sync + 'static {
    /// POSTs a url-encoded form; an empty form is sent as an empty body
    /// without a content type (Dropbox's RPC endpoints refuse any other).
    fn post_form<'a>(
        &'a self,
        url: &'a Url,
        form: &'a [FormField],
        bearer: Option<&'a Sensitive>,
    ) -> BoxFuture<'a, Result<RawAnswer, TransportError>>;

    /// GETs a JSON document, with the same limits (size, timeout, no
    /// redirects) as token requests.
    fn get_json<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, Result<RawAnswer, TransportError>>;
}

/// The production transport.
#[derive(Debug, Clone)]
pub struct HttpTokenClient {
    client: reqwest::Client,
}

impl HttpTokenClient {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("oauth-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    async fn send(
        &self,
        url: &Url,
        form: &[FormField],
        bearer: Option<&Sensitive>,
    ) -> Result<RawAnswer, TransportError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if !form.is_empty() {
            let body = form_body(form);
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.expose().to_string());
        }
        if let Some(token) = bearer {
            request = request.bearer_auth(token.expose());
        }
        read_answer(request).await
    }

    async fn get(&self, url: &Url) -> Result<RawAnswer, TransportError> {
        let request = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        read_answer(request).await
    }
}

/// Sends a request and reads its answer, bounded by [`MAX_ANSWER_BYTES`].
async fn read_answer(request: reqwest::RequestBuilder) -> Result<RawAnswer, TransportError> {
    let mut response = request.send().await.map_err(map_error)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if response
        .content_length()
        .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
    {
        return Err(TransportError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(map_error)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(TransportError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(RawAnswer {
        status,
        retry_after,
        body: Bytes::from(body),
    })
}

impl TokenClient for HttpTokenClient {
    fn post_form<'a>(
        &'a self,
        url: &'a Url,
        form: &'a [FormField],
        bearer: Option<&'a Sensitive>,
    ) -> BoxFuture<'a, Result<RawAnswer, TransportError>> {
        Box::pin(self.send(url, form, bearer))
    }

    fn get_json<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, Result<RawAnswer, TransportError>> {
        Box::pin(self.get(url))
    }
}

fn form_body(form: &[FormField]) -> Sensitive {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in form {
        ser.append_pair(name, value.expose());
    }
    Sensitive::new(ser.finish())
}

// reqwest's error text can include the URL, never the body; we still map
// to our own variants so nothing upstream reaches a client or a log.
fn map_error(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() {
        TransportError::Connect
    } else {
        TransportError::Broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_body() {
        let a = RawAnswer {
            status: 200,
            retry_after: None,
            body: Bytes::from_static(br#"{"access_token":"secret-at"}"#),
        };
        assert!(!format!("{a:?}").contains("secret-at"));
    }
}
