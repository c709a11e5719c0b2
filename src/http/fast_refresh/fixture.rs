//! What the fast path's tests share: a provider that grants every refresh,
//! an app with the fast path and the full stack side by side, and helpers
//! to read answers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::super::middleware::REQUEST_ID;
use super::FastRefresh;
use crate::app::{App, AppParts};
use crate::authid::{Claims, Keyring};
use crate::clock::ManualClock;
use crate::config::{Limits, Settings};
use crate::http::HttpState;
use crate::provider::Catalogue;
use crate::secret::Sensitive;
use crate::store::Store;
use crate::testing::GrantingClient;

pub(super) struct Fixture {
    pub(super) app: crate::app::SharedApp,
    pub(super) fast: FastRefresh,
    pub(super) client: Arc<GrantingClient>,
    pub(super) clock: ManualClock,
    pub(super) store: Arc<dyn Store>,
}

pub(super) fn fixture(limits: Limits) -> Fixture {
    let catalogue = Catalogue::load(
        &crate::provider::catalogue::CatalogueSource {
            configfile: Some(
                r#"[{"id": "googledrive", "authUrl": "http://127.0.0.1:9/token", "loginUrl": "http://127.0.0.1:9/auth"},
                    {"id": "box.com", "authUrl": "http://127.0.0.1:9/rotating", "loginUrl": "http://127.0.0.1:9/auth"}]"#,
            ),
            ..Default::default()
        },
        &|name| {
            name.ends_with("_CLIENT_ID")
                .then(|| "id".to_string())
                .or_else(|| name.ends_with("_SECRET").then(|| "s".to_string()))
        },
    )
    .unwrap();
    let mut settings = Settings::for_url("http://127.0.0.1:9").unwrap();
    settings.limits = limits;
    let client = Arc::new(GrantingClient::default());
    let clock = ManualClock::new(1_800_000_000);
    let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::default());
    let app = Arc::new(App::new(AppParts {
        settings,
        keyring: Keyring::ephemeral().unwrap(),
        key_source: None,
        catalogue,
        client: client.clone(),
        clock: Arc::new(clock.clone()),
        store: Arc::clone(&store),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        demo: None,
    }));
    // What `router` puts behind its entry point, so the tests can call
    // `hit` alone and the full stack alone.
    let state = Arc::new(HttpState::new(Arc::clone(&app)));
    let (full, ids, permits) = crate::http::full_stack(Arc::clone(&state));
    let fast = FastRefresh::new(state, full, ids, permits);
    Fixture {
        app,
        fast,
        client,
        clock,
        store,
    }
}

impl Fixture {
    pub(super) fn authid(&self, provider: &str) -> String {
        let claims = Claims::new(provider, Sensitive::new("rt-start"), self.app.now());
        self.app.keyring().seal(&claims).unwrap()
    }

    pub(super) fn hit(&self, request: &Request) -> Option<Response> {
        self.fast.0.hit(request)
    }

    pub(super) async fn full(&self, request: Request) -> Reply {
        reply(self.fast.0.full.clone().oneshot(request).await.unwrap()).await
    }

    pub(super) async fn routed(&self, request: Request) -> Reply {
        reply(self.fast.clone().oneshot(request).await.unwrap()).await
    }

    pub(super) fn metric(&self, needle: &str) -> f64 {
        self.app
            .metrics()
            .render()
            .lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    }
}

#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

pub(super) async fn reply(response: Response) -> Reply {
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

pub(super) fn get(authid: &str) -> Request {
    axum::http::Request::get("/refresh")
        .header("x-authid", authid)
        .header("user-agent", "Duplicati v2.1.0.5")
        .body(Body::empty())
        .unwrap()
}

/// Headers as sorted (name, value) pairs, without the request id and
/// the length (the router sets it in process, hyper on the wire for
/// both).
pub(super) fn header_set(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut set: Vec<_> = headers
        .iter()
        .filter(|(k, _)| *k != REQUEST_ID && *k != header::CONTENT_LENGTH)
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    set.sort();
    set
}
