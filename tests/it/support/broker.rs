//! The broker under test: an in-process router (driven with `oneshot`) or
//! a real server on 127.0.0.1:0, wired to a mock provider.

use std::sync::Arc;

use axum::ServiceExt as _;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use oauth_broker::app::{App, AppParts};
use oauth_broker::authid::{Claims, Keyring, ServerKey};
use oauth_broker::clock::SharedClock;
use oauth_broker::config::{Limits, Settings};
use oauth_broker::http::FastRefresh;
use oauth_broker::http::server::ConnectionLimits;
use oauth_broker::metrics::Metrics;
use oauth_broker::provider::catalogue::CatalogueSource;
use oauth_broker::provider::{Catalogue, HttpTokenClient};
use oauth_broker::secret::Sensitive;
use oauth_broker::store::{MemoryStore, Store};
use serde_json::Value;

use super::logs;
use super::mock_provider::MockProvider;

/// Every built-in provider id.
pub const BUILTIN: &[&str] = &[
    "googledrive",
    "googledocs",
    "gcs",
    "onedrivev2",
    "sharepoint",
    "msgroup",
    "box.com",
    "dropbox",
    "jottacloud",
    "pcloud",
];

pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret-0f9e8d7c";

/// Built-in providers that have a revocation endpoint.
pub const WITH_REVOKE_URL: &[&str] = &["googledrive", "googledocs", "gcs", "box.com", "dropbox"];

/// A CONFIGFILE that points every built-in provider at `mock`, keeping each
/// one's quirks (rotation, redirect rules, aliases, which ones can revoke).
pub fn config_for(mock: &MockProvider, ids: &[&str]) -> String {
    Value::Array(entries_for(mock, ids)).to_string()
}

/// The entries of [`config_for`], for tests that adjust them.
pub fn entries_for(mock: &MockProvider, ids: &[&str]) -> Vec<Value> {
    ids.iter()
        .map(|id| {
            let mut allowed = vec![mock.host()];
            if *id == "jottacloud" {
                allowed.push("id.jottacloud.com".into());
            }
            let mut entry = serde_json::json!({
                "id": id,
                "clientId": if *id == "jottacloud" { "jottacli" } else { CLIENT_ID },
                "clientSecret": if *id == "jottacloud" { "" } else { "%TEST_SECRET%" },
                "authUrl": mock.token_url(),
                "loginUrl": mock.authorize_url(),
                "allowedHosts": allowed,
            });
            if WITH_REVOKE_URL.contains(id) {
                entry["revokeUrl"] = Value::String(mock.revoke_url());
            }
            entry
        })
        .collect()
}

/// Edits the list of provider entries before loading.
pub type Adjust<'a> = Box<dyn FnOnce(&mut Vec<Value>) + 'a>;

/// How to build a broker for a test.
pub struct Setup<'a> {
    /// Each mock with the provider ids it plays.
    pub providers: Vec<(&'a MockProvider, Vec<&'a str>)>,
    pub clock: SharedClock,
    pub public_url: String,
    pub limits: Limits,
    /// `OPENER_ORIGINS`; `None` keeps the default (`*`).
    pub opener_origins: Option<Vec<String>>,
    /// Edits each provider entry before loading (e.g. a rate limit).
    pub tweak: fn(&str, &mut Value),
    /// Edits the whole list of entries before loading.
    pub adjust: Option<Adjust<'a>>,
    /// The store; a fresh `MemoryStore` when unset. Brokers built on one
    /// store behave as instances of one deployment.
    pub store: Option<Arc<dyn Store>>,
    /// The server key; a fresh one when unset. Instances of one
    /// deployment share it.
    pub key: Option<Arc<ServerKey>>,
    /// `SECRETS` instead of the one `TEST_SECRET`.
    pub secrets: Option<String>,
    /// The old App Engine service (`LEGACY_SERVICE_URL`, and its API key).
    pub legacy_service: Option<(String, String)>,
}

impl<'a> Setup<'a> {
    pub fn new(mock: &'a MockProvider, ids: &[&'a str]) -> Self {
        Self {
            providers: vec![(mock, ids.to_vec())],
            clock: oauth_broker::clock::system(),
            public_url: "http://127.0.0.1:9".into(),
            limits: Limits::default(),
            opener_origins: None,
            tweak: |_, _| {},
            adjust: None,
            store: None,
            key: None,
            secrets: None,
            legacy_service: None,
        }
    }

    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    pub fn key(mut self, key: Arc<ServerKey>) -> Self {
        self.key = Some(key);
        self
    }

    pub fn and(mut self, mock: &'a MockProvider, ids: &[&'a str]) -> Self {
        self.providers.push((mock, ids.to_vec()));
        self
    }

    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn tweak(mut self, tweak: fn(&str, &mut Value)) -> Self {
        self.tweak = tweak;
        self
    }

    /// Edits the whole list of entries before loading; unlike
    /// [`Setup::tweak`] it may capture (e.g. the address of a server
    /// started by the test).
    pub fn adjust(mut self, adjust: impl FnOnce(&mut Vec<Value>) + 'a) -> Self {
        self.adjust = Some(Box::new(adjust));
        self
    }

    /// Migrates AuthIDs of the old App Engine service at `url`.
    pub fn legacy_service(mut self, url: &str, api_key: &str) -> Self {
        self.legacy_service = Some((url.to_string(), api_key.to_string()));
        self
    }

    /// `SECRETS` for `%NAME%` references of the entries.
    pub fn secrets(mut self, secrets: String) -> Self {
        self.secrets = Some(secrets);
        self
    }

    pub fn build(self) -> Broker {
        logs::install();
        let mut entries = Vec::new();
        let mut ids = Vec::new();
        for (mock, provider_ids) in &self.providers {
            mock.set_client(CLIENT_ID, CLIENT_SECRET);
            for mut entry in entries_for(mock, provider_ids) {
                let id = entry["id"].as_str().unwrap_or_default().to_string();
                (self.tweak)(&id, &mut entry);
                entries.push(entry);
                ids.push(id);
            }
        }
        if let Some(adjust) = self.adjust {
            adjust(&mut entries);
        }
        let config = Value::Array(entries).to_string();
        let catalogue = Catalogue::load(
            &CatalogueSource {
                configfile: Some(&config),
                secrets: Some(
                    &self
                        .secrets
                        .unwrap_or_else(|| format!(r#"{{"TEST_SECRET": "{CLIENT_SECRET}"}}"#)),
                ),
                services: Some(&ids.join(",")),
            },
            &|_| None,
        )
        .expect("test catalogue");
        let mut settings = Settings::for_url(&self.public_url).expect("settings");
        settings.upstream_timeout = std::time::Duration::from_secs(2);
        settings.limits = self.limits;
        if let Some(origins) = self.opener_origins {
            settings.opener_origins = origins;
        }
        if let Some((url, api_key)) = &self.legacy_service {
            settings.app_engine_service =
                oauth_broker::config::parse_app_engine_service(Some(url), Some(api_key))
                    .expect("legacy service settings");
        }
        let client = HttpTokenClient::new(settings.upstream_timeout).expect("client");
        let keyring = match self.key {
            Some(key) => {
                let kid = key.kid().to_string();
                Keyring::new([key], &kid, Default::default()).expect("keyring")
            }
            None => Keyring::ephemeral().expect("keyring"),
        };
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::default()));
        let app = Arc::new(App::new(AppParts {
            settings,
            keyring,
            key_source: None,
            catalogue,
            client: Arc::new(client),
            clock: self.clock,
            store,
            metrics: Arc::new(Metrics::new()),
            demo: None,
        }));
        let router = oauth_broker::http::router(Arc::clone(&app));
        Broker { app, router }
    }
}

pub struct Broker {
    pub app: Arc<App>,
    pub router: FastRefresh,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A reply received over HTTP from a served broker.
    pub async fn from_reqwest(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Self {
            status,
            headers,
            body,
        }
    }
}

impl Broker {
    /// A broker whose built-in providers all talk to `mock`.
    pub fn new(mock: &MockProvider) -> Self {
        Self::with_clock(mock, oauth_broker::clock::system())
    }

    pub fn with_clock(mock: &MockProvider, clock: SharedClock) -> Self {
        Self::build(mock, BUILTIN, clock, "http://127.0.0.1:9")
    }

    pub fn build(mock: &MockProvider, ids: &[&str], clock: SharedClock, public_url: &str) -> Self {
        let mut setup = Setup::new(mock, ids).clock(clock);
        setup.public_url = public_url.to_string();
        setup.build()
    }

    /// Like [`Broker::build`], with the provider entries adjusted first.
    pub fn build_with(
        mock: &MockProvider,
        ids: &[&str],
        clock: SharedClock,
        public_url: &str,
        adjust: impl FnOnce(&mut Vec<Value>),
    ) -> Self {
        let mut setup = Setup::new(mock, ids).clock(clock);
        setup.public_url = public_url.to_string();
        setup.adjust = Some(Box::new(adjust));
        setup.build()
    }

    /// Seals a refresh token into an AuthID with the broker's primary key.
    pub fn seal(&self, provider: &str, refresh_token: &str) -> String {
        let claims = Claims::new(provider, Sensitive::new(refresh_token), self.app.now());
        self.app.keyring().seal(&claims).expect("seal")
    }

    pub async fn request(&self, request: Request<Body>) -> Reply {
        use tower::ServiceExt;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A request as if it came over a connection from `ip` (what the
    /// server's connection loop records for the client address).
    pub async fn request_from(&self, ip: &str, mut request: Request<Body>) -> Reply {
        let peer = std::net::SocketAddr::new(ip.parse().expect("address"), 40000);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        self.request(request).await
    }

    /// [`Broker::refresh`] from the client address `ip`.
    pub async fn refresh_from(&self, ip: &str, authid: &str) -> Reply {
        let request = Request::builder()
            .uri("/refresh")
            .header("X-AuthID", authid)
            .body(Body::empty())
            .expect("request");
        self.request_from(ip, request).await
    }

    /// `POST /revoke` with `X-AuthID`, as a program revokes.
    pub async fn revoke(&self, authid: &str) -> Reply {
        self.request(revoke_request(authid)).await
    }

    /// `GET /refresh` shaped like Duplicati's request.
    pub async fn refresh(&self, authid: &str) -> Reply {
        let request = Request::builder()
            .method(Method::GET)
            .uri("/refresh")
            .header("X-AuthID", authid)
            .header("User-Agent", "Duplicati v2.1.0.5")
            .body(Body::empty())
            .expect("request");
        self.request(request).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        let request = Request::builder()
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        self.request(request).await
    }

    pub async fn post_form(&self, uri: &str, form: &str) -> Reply {
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .expect("request");
        self.request(request).await
    }

    /// Binds 127.0.0.1:0 first, so `PUBLIC_URL` (and the redirect URI the
    /// provider sends browsers to) is the real address; then serves.
    pub async fn start(mock: &MockProvider, ids: &[&str], clock: SharedClock) -> (Self, String) {
        Self::start_with(Setup::new(mock, ids).clock(clock)).await
    }

    /// Like [`Broker::start`], from a prepared [`Setup`] (its `public_url`
    /// is replaced by the address bound).
    pub async fn start_with(mut setup: Setup<'_>) -> (Self, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        setup.public_url = url.clone();
        let broker = setup.build();
        let router = broker.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router.into_make_service()).await;
        });
        (broker, url)
    }

    /// A request with extra headers.
    pub async fn get_with(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.request(request.body(Body::empty()).expect("request"))
            .await
    }

    /// Starts a real server on 127.0.0.1:0, with the production connection
    /// loop and the limits of its settings; returns its base URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = self.router.clone();
        let limits = ConnectionLimits::from_settings(&self.app.settings().limits);
        let metrics = Arc::clone(self.app.metrics());
        tokio::spawn(oauth_broker::http::server::serve(
            listener,
            router,
            limits,
            metrics,
            std::future::pending(),
        ));
        format!("http://{addr}")
    }
}

/// `POST /revoke` with `X-AuthID`.
pub fn revoke_request(authid: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/revoke")
        .header("X-AuthID", authid)
        .body(Body::empty())
        .expect("request")
}

/// A fresh server key, for instances that must share one.
pub fn server_key() -> Arc<ServerKey> {
    let kid = format!("test-{}", &oauth_broker::secret::random_id()[..8]);
    Arc::new(ServerKey::generate(&kid, 1).expect("key").0)
}

/// `n` refreshes of one AuthID at once, as separate tasks; every reply
/// must be 200. Returns the JSON bodies.
pub async fn concurrent_refreshes(broker: &Arc<Broker>, authid: &str, n: usize) -> Vec<Value> {
    let authid: Arc<str> = Arc::from(authid);
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let broker = Arc::clone(broker);
            let authid = Arc::clone(&authid);
            tokio::spawn(async move { broker.refresh(&authid).await })
        })
        .collect();
    let mut bodies = Vec::with_capacity(n);
    for task in tasks {
        let reply = task.await.expect("task");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        bodies.push(reply.json());
    }
    bodies
}

/// Asserts the shape of every error answer: JSON `{"error"}`, a one-line
/// `X-Reason` equal to it, the expose header, and never HTML.
pub fn assert_error_shape(reply: &Reply) {
    assert!(
        reply.status.is_client_error() || reply.status.is_server_error(),
        "{}: {}",
        reply.status,
        reply.body
    );
    let json = reply.json();
    let message = json["error"].as_str().expect("error message");
    assert!(!message.is_empty());
    assert_eq!(reply.header("x-reason"), Some(message));
    assert_eq!(
        reply.header("access-control-expose-headers"),
        Some("X-Reason")
    );
    assert!(
        reply
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content type"
    );
}
