//! A fake of the old App Engine service's worker API, for migration tests.
//!
//! Written from the old service's contract: AuthIDs are `keyid:password`
//! (32 hex digits, a 21-character password); every call carries the API key
//! in `X-APIKey` and the AuthID in `X-AuthID`.
//!
//! * `GET /export`: the stored token JSON plus `service`; `403` for a wrong
//!   API key, `404` for an unknown key id, `400` for a wrong password.
//! * `POST /import`: JSON with at least `refresh_token` and `expires_in`
//!   replaces the stored token (same checks); every import is recorded.
//!
//! It listens on `127.0.0.1:0` and can be stopped (connections closed) to
//! play an old service that has been shut down.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The API key the fake expects unless told otherwise.
pub const API_KEY: &str = "legacy-api-key-0123456789";

/// A canned behaviour instead of normal processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyFault {
    /// Never answers.
    Hang,
    /// Exactly this status and body.
    Status(u16, String),
    /// A redirect to another address.
    Redirect,
    /// A `200` with a body larger than any token.
    Huge,
    /// This status (and an empty body) after waiting this long.
    Slow(Duration, u16),
}

struct Entry {
    password: String,
    service: String,
    token: Value,
}

#[derive(Default)]
struct Inner {
    api_key: String,
    entries: HashMap<String, Entry>,
    exports: usize,
    imports: Vec<(String, Value)>,
    fault: Option<LegacyFault>,
    seen_api_keys: Vec<String>,
}

/// Handle to the running fake.
pub struct FakeLegacyService {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for FakeLegacyService {
    fn drop(&mut self) {
        if let Some(server) = lock(&self.server).take() {
            server.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A password as the old service's generator made them: 21 characters of
/// letters, digits and `!-_.`.
pub fn password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ!-_.";
    let mut rng = rand::thread_rng();
    (0..21)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A key id as the old service printed them (`%030x`): 32 hex digits here.
pub fn key_id() -> String {
    format!("{:032x}", rand::thread_rng().r#gen::<u128>())
}

impl FakeLegacyService {
    pub async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("fake legacy service binds 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let inner = Arc::new(Mutex::new(Inner {
            api_key: API_KEY.into(),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/export", get(export))
            .route("/import", post(import))
            .with_state(Arc::clone(&inner));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            inner,
            stop: Mutex::new(Some(stop)),
            server: Mutex::new(Some(server)),
        }
    }

    /// The base URL, as `LEGACY_SERVICE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stores a token for a new AuthID and returns the AuthID.
    pub fn add(&self, service: &str, refresh_token: &str) -> String {
        let key = key_id();
        let password = password();
        let token = json!({
            "access_token": format!("at-stale-{key}"),
            "refresh_token": refresh_token,
            "expires_in": 3600,
            "token_type": "Bearer",
        });
        lock(&self.inner).entries.insert(
            key.clone(),
            Entry {
                password: password.clone(),
                service: service.into(),
                token,
            },
        );
        format!("{key}:{password}")
    }

    /// The refresh token stored for an AuthID now.
    pub fn refresh_token_of(&self, authid: &str) -> Option<String> {
        let (key, _) = authid.split_once(':')?;
        lock(&self.inner)
            .entries
            .get(key)
            .and_then(|e| e.token["refresh_token"].as_str().map(str::to_string))
    }

    pub fn set_api_key(&self, key: &str) {
        lock(&self.inner).api_key = key.into();
    }

    pub fn set_fault(&self, fault: Option<LegacyFault>) {
        lock(&self.inner).fault = fault;
    }

    /// Successful and failed export calls.
    pub fn export_calls(&self) -> usize {
        lock(&self.inner).exports
    }

    /// Every accepted import: the AuthID and the body.
    pub fn imports(&self) -> Vec<(String, Value)> {
        lock(&self.inner).imports.clone()
    }

    /// Every `X-APIKey` value received.
    pub fn seen_api_keys(&self) -> Vec<String> {
        lock(&self.inner).seen_api_keys.clone()
    }

    /// Stops serving and closes every connection: the old service is gone.
    pub async fn stop(&self) {
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
        let server = lock(&self.server).take();
        if let Some(server) = server {
            if tokio::time::timeout(Duration::from_secs(5), &mut Box::pin(server))
                .await
                .is_err()
            {
                panic!("the fake legacy service did not stop");
            }
        }
    }
}

fn error(status: StatusCode, reason: &str) -> Response {
    let mut response = (status, axum::Json(json!({ "error": reason }))).into_response();
    if let Ok(v) = reason.parse() {
        response.headers_mut().insert("X-Reason", v);
    }
    response
}

/// The checks both handlers make, in the old service's order. Returns the
/// key id.
fn check(inner: &mut Inner, headers: &HeaderMap) -> Result<String, (StatusCode, &'static str)> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let api_key = header("X-APIKey");
    inner.seen_api_keys.push(api_key.clone());
    if inner.api_key.len() < 10 || api_key != inner.api_key {
        return Err((StatusCode::FORBIDDEN, "Invalid API key"));
    }
    let authid = header("X-AuthID");
    if authid.is_empty() {
        return Err((StatusCode::BAD_REQUEST, "No authid in query"));
    }
    let Some((key, password)) = authid.split_once(':').filter(|(k, _)| !k.is_empty()) else {
        return Err((StatusCode::BAD_REQUEST, "Invalid authid in query"));
    };
    let Some(entry) = inner.entries.get(key) else {
        return Err((StatusCode::NOT_FOUND, "No such key"));
    };
    if entry.password != password {
        return Err((StatusCode::BAD_REQUEST, "Invalid authid password"));
    }
    Ok(key.to_string())
}

async fn fault(inner: &Mutex<Inner>) -> Option<Response> {
    let fault = lock(inner).fault.clone()?;
    Some(match fault {
        LegacyFault::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        LegacyFault::Status(status, body) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response(),
        LegacyFault::Redirect => (
            StatusCode::FOUND,
            [("Location", "https://elsewhere.example/export")],
        )
            .into_response(),
        LegacyFault::Slow(wait, status) => {
            tokio::time::sleep(wait).await;
            StatusCode::from_u16(status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
        LegacyFault::Huge => (
            StatusCode::OK,
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(200 * 1024)),
        )
            .into_response(),
    })
}

async fn export(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    lock(&inner).exports += 1;
    if let Some(response) = fault(&inner).await {
        return response;
    }
    let mut state = lock(&inner);
    let key = match check(&mut state, &headers) {
        Ok(key) => key,
        Err((status, reason)) => return error(status, reason),
    };
    let Some(entry) = state.entries.get(&key) else {
        return error(StatusCode::NOT_FOUND, "No such key");
    };
    let mut token = entry.token.clone();
    token["service"] = Value::String(entry.service.clone());
    axum::Json(token).into_response()
}

async fn import(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = fault(&inner).await {
        return response;
    }
    let mut state = lock(&inner);
    let key = match check(&mut state, &headers) {
        Ok(key) => key,
        Err((status, reason)) => return error(status, reason),
    };
    let Ok(mut token) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Server error");
    };
    if token.get("refresh_token").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "Import blob does not contain a refresh token",
        );
    }
    if token.get("expires_in").is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "Import blob does not contain expires_in",
        );
    }
    let authid = headers
        .get("X-AuthID")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    state.imports.push((authid, token.clone()));
    token["service"] = Value::String(
        state
            .entries
            .get(&key)
            .map(|e| e.service.clone())
            .unwrap_or_default(),
    );
    if let Some(entry) = state.entries.get_mut(&key) {
        entry.token = token.clone();
    }
    axum::Json(token).into_response()
}
