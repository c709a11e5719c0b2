//! Fakes shared by the unit tests: a token client that answers from a
//! script, one that grants every refresh, and a store that never answers. One of each, so every test
//! drives the same behaviour.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use url::Url;

use crate::provider::client::FormField;
use crate::provider::{RawAnswer, TokenClient, TransportError};
use crate::secret::Sensitive;
use crate::store::{Store, StoreError, StoreKey, StoreResult, Versioned};

/// A token endpoint that answers from a script: each form post takes the
/// next scripted answer, or a fresh access token (no rotation) when the
/// script is empty. It counts the posts and notes the refresh tokens sent.
#[derive(Default)]
pub struct ScriptedClient {
    pub calls: AtomicUsize,
    answers: Mutex<VecDeque<(u16, String)>>,
    pub seen_tokens: Mutex<Vec<String>>,
    /// While set, posts wait until it reads `true`.
    pub gate: Mutex<Option<tokio::sync::watch::Receiver<bool>>>,
}

impl ScriptedClient {
    /// Scripts the next answer.
    pub fn push(&self, status: u16, body: &str) {
        self.answers
            .lock()
            .unwrap()
            .push_back((status, body.to_string()));
    }

    /// Drops the answers not taken yet.
    pub fn clear(&self) {
        self.answers.lock().unwrap().clear();
    }
}

impl TokenClient for ScriptedClient {
    fn post_form<'a>(
        &'a self,
        _url: &'a Url,
        form: &'a [FormField],
        _bearer: Option<&'a Sensitive>,
    ) -> BoxFuture<'a, Result<RawAnswer, TransportError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some((_, rt)) = form.iter().find(|(k, _)| k == "refresh_token") {
                self.seen_tokens
                    .lock()
                    .unwrap()
                    .push(rt.expose().to_string());
            }
            let gate = self.gate.lock().unwrap().clone();
            if let Some(mut gate) = gate {
                let _ = gate.wait_for(|open| *open).await;
            }
            let (status, body) = self.answers.lock().unwrap().pop_front().unwrap_or((
                200,
                r#"{"access_token":"at-default","expires_in":3600}"#.into(),
            ));
            Ok(RawAnswer {
                status,
                retry_after: None,
                body: body.into(),
            })
        })
    }

    fn get_json<'a>(&'a self, _url: &'a Url) -> BoxFuture<'a, Result<RawAnswer, TransportError>> {
        // No scripted documents.
        Box::pin(async { Err(TransportError::Connect) })
    }
}

/// A token endpoint that grants every refresh with a numbered access token
/// (quotes and a backslash in it, so escaping is exercised); at a `/rotating` token URL it
/// also rotates the refresh token.
#[derive(Default)]
pub struct GrantingClient {
    pub calls: AtomicUsize,
}

impl TokenClient for GrantingClient {
    fn post_form<'a>(
        &'a self,
        url: &'a Url,
        _form: &'a [FormField],
        _bearer: Option<&'a Sensitive>,
    ) -> BoxFuture<'a, Result<RawAnswer, TransportError>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let rotated = if url.path() == "/rotating" {
            format!(r#","refresh_token":"rt-{n}""#)
        } else {
            String::new()
        };
        Box::pin(async move {
            Ok(RawAnswer {
                status: 200,
                retry_after: None,
                // Quotes and a backslash: the body's escaping is
                // compared too.
                body: format!(r#"{{"access_token":"at-{n}\"q\\","expires_in":3600{rotated}}}"#)
                    .into(),
            })
        })
    }

    fn get_json<'a>(&'a self, _url: &'a Url) -> BoxFuture<'a, Result<RawAnswer, TransportError>> {
        Box::pin(async { Err(TransportError::Connect) })
    }
}

/// A store that never answers: every call fails as unavailable.
pub struct DownStore;

fn down<T: Send + 'static>() -> BoxFuture<'static, StoreResult<T>> {
    Box::pin(async { Err(StoreError::Unavailable("down".into())) })
}

impl Store for DownStore {
    fn kind(&self) -> &'static str {
        "down"
    }
    fn get<'a>(&'a self, _: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        down()
    }
    fn put<'a>(
        &'a self,
        _: &'a StoreKey,
        _: Vec<u8>,
        _: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        down()
    }
    fn put_new<'a>(
        &'a self,
        _: &'a StoreKey,
        _: Vec<u8>,
        _: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        down()
    }
    fn take<'a>(&'a self, _: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        down()
    }
    fn delete<'a>(&'a self, _: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>> {
        down()
    }
    fn delete_if<'a>(&'a self, _: &'a StoreKey, _: &'a [u8]) -> BoxFuture<'a, StoreResult<bool>> {
        down()
    }
    fn get_versioned<'a>(
        &'a self,
        _: &'a StoreKey,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        down()
    }
    fn put_versioned<'a>(
        &'a self,
        _: &'a StoreKey,
        _: Versioned,
        _: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        down()
    }
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        down()
    }
}
