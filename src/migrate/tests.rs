//! Migration against an in-process old service and failing stores.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;

use super::*;
use crate::authid::{self, AuthIdText};
use crate::outage::StoreOutage;
use crate::store::MemoryStore;
use crate::testing::DownStore;

const OLD: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0:aB3-x9Q.k2_Lm!p4R7sT1";

/// The old service in-process: one stored grant, a canned failure, and a
/// record of every call.
#[derive(Default)]
struct FakeOld {
    fail: Mutex<Option<AppEngineError>>,
    exports: AtomicUsize,
    imports: Mutex<Vec<(String, String)>>,
}

impl AppEngineService for FakeOld {
    fn export<'a>(
        &'a self,
        authid: &'a str,
    ) -> BoxFuture<'a, Result<ExportedGrant, AppEngineError>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.exports.fetch_add(1, Ordering::SeqCst);
            if let Some(e) = *self.fail.lock().unwrap() {
                return Err(e);
            }
            assert_eq!(authid, OLD);
            Ok(ExportedGrant {
                service: "box.com".into(),
                refresh_token: Sensitive::new("rt-exported"),
            })
        })
    }

    fn import<'a>(
        &'a self,
        authid: &'a str,
        token: &'a ImportedToken,
    ) -> BoxFuture<'a, Result<(), AppEngineError>> {
        Box::pin(async move {
            if let Some(e) = *self.fail.lock().unwrap() {
                return Err(e);
            }
            self.imports
                .lock()
                .unwrap()
                .push((authid.to_string(), token.refresh_token.expose().to_string()));
            Ok(())
        })
    }
}

fn old() -> AppEngineAuthId<'static> {
    match authid::parse(OLD) {
        Ok(AuthIdText::AppEngine(a)) => a,
        other => panic!("{other:?}"),
    }
}

fn migrator(service: Option<Arc<FakeOld>>, store: Arc<dyn Store>) -> (Migrator, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let migrator = Migrator::new(MigrateDeps {
        service: service.map(|s| s as Arc<dyn AppEngineService>),
        store,
        outage: Arc::new(StoreOutage::new()),
        metrics: Arc::clone(&metrics),
        exports_per_minute: 1000,
        export_concurrency: 100,
    });
    (migrator, metrics)
}

fn rotate(m: &Migrator, claims: &Claims, generation: u64) -> Option<tokio::task::JoinHandle<()>> {
    m.rotated(Rotated {
        claims,
        generation,
        access_token: &Sensitive::new("at"),
        expires_in: 3600,
        now: 2,
    })
}

fn counted(metrics: &Metrics, family: &str, outcome: &str) -> bool {
    metrics.render().contains(&format!(
        "oauth_broker_{family}_total{{outcome=\"{outcome}\"}} 1"
    ))
}

#[tokio::test]
async fn first_sight_exports_then_the_store_answers() {
    let fake = Arc::new(FakeOld::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let (m, metrics) = migrator(Some(Arc::clone(&fake)), Arc::clone(&store));
    let first = m.resolve(&old(), 100).await.unwrap();
    assert!(first.exported);
    assert_eq!(first.claims.provider, "box.com");
    assert_eq!(first.claims.rt.expose(), "rt-exported");
    assert!(is_migrated(&first.claims));
    let derived = old().login();
    assert_eq!(first.claims.jti, derived.id);
    assert_eq!(*first.claims.login_secret(), *derived.secret);
    assert!(counted(&metrics, "legacy_exports", "migrated"));

    let again = m.resolve(&old(), 200).await.unwrap();
    assert!(!again.exported);
    assert_eq!(again.claims.rt.expose(), "rt-exported");
    assert_eq!(fake.exports.load(Ordering::SeqCst), 1, "exported once");
}

#[tokio::test]
async fn concurrent_first_sights_export_once() {
    let fake = Arc::new(FakeOld::default());
    let (m, _) = migrator(Some(Arc::clone(&fake)), Arc::new(MemoryStore::new(100)));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.resolve(&old(), 1).await.map(|l| l.claims.jti) })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(fake.exports.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_migrated_grant_outlives_the_old_service() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let (with, _) = migrator(Some(Arc::default()), Arc::clone(&store));
    with.resolve(&old(), 1).await.unwrap();
    let (without, metrics) = migrator(None, Arc::clone(&store));
    let login = without.resolve(&old(), 2).await.unwrap();
    assert_eq!(login.claims.rt.expose(), "rt-exported");
    assert!(!without.configured());
    assert!(!metrics.render().contains("legacy_exports_total{"));
}

#[tokio::test]
async fn unknown_and_unconfigured_are_told_apart_and_counted() {
    let (none, metrics) = migrator(None, Arc::new(MemoryStore::new(100)));
    assert_eq!(
        none.resolve(&old(), 1).await.unwrap_err(),
        MigrationError::AppEngine(AppEngineError::NotConfigured)
    );
    assert!(counted(&metrics, "legacy_exports", "not_configured"));
    for e in [
        AppEngineError::Unknown,
        AppEngineError::ApiKey,
        AppEngineError::Unavailable,
        AppEngineError::BadAnswer("x"),
    ] {
        let fake = Arc::new(FakeOld::default());
        *fake.fail.lock().unwrap() = Some(e);
        let (m, metrics) = migrator(Some(fake), Arc::new(MemoryStore::new(100)));
        assert_eq!(
            m.resolve(&old(), 1).await.unwrap_err(),
            MigrationError::AppEngine(e)
        );
        assert!(counted(&metrics, "legacy_exports", e.label()), "{e:?}");
    }
}

#[tokio::test]
async fn a_rotation_updates_the_grant_and_is_imported() {
    let fake = Arc::new(FakeOld::default());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(100));
    let (m, metrics) = migrator(Some(Arc::clone(&fake)), Arc::clone(&store));
    let mut claims = m.resolve(&old(), 1).await.unwrap().claims;
    claims.rt = Sensitive::new("rt-rotated");
    rotate(&m, &claims, 1).unwrap().await.unwrap();
    assert_eq!(
        *fake.imports.lock().unwrap(),
        [(OLD.to_string(), "rt-rotated".to_string())]
    );
    assert!(counted(&metrics, "legacy_imports", "imported"));
    let again = m.resolve(&old(), 3).await.unwrap();
    assert_eq!(
        again.claims.rt.expose(),
        "rt-rotated",
        "the grant is current"
    );

    assert_eq!(crate::authid::generation_of(&again.claims), 1);
    // An older rotation arriving late changes nothing and imports nothing.
    claims.rt = Sensitive::new("rt-stale");
    rotate(&m, &claims, 1).unwrap().await.unwrap();
    assert_eq!(fake.imports.lock().unwrap().len(), 1);
    let latest = m.resolve(&old(), 4).await.unwrap();
    assert_eq!(latest.claims.rt.expose(), "rt-rotated");

    let ordinary = Claims::new("box.com", Sensitive::new("rt"), 1);
    assert!(rotate(&m, &ordinary, 1).is_none());
}

#[tokio::test]
async fn a_failed_import_is_counted_only() {
    let fake = Arc::new(FakeOld::default());
    let (m, metrics) = migrator(Some(Arc::clone(&fake)), Arc::new(MemoryStore::new(100)));
    let claims = m.resolve(&old(), 1).await.unwrap().claims;
    *fake.fail.lock().unwrap() = Some(AppEngineError::Unavailable);
    rotate(&m, &claims, 1).unwrap().await.unwrap();
    assert!(counted(&metrics, "legacy_imports", "unavailable"));
    assert!(fake.imports.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_store_is_not_an_unknown_authid() {
    let (m, _) = migrator(None, Arc::new(DownStore));
    assert_eq!(
        m.resolve(&old(), 1).await.unwrap_err(),
        MigrationError::Store
    );
    // With the old service there, its grant is served without the store.
    let fake = Arc::new(FakeOld::default());
    let (m, _) = migrator(Some(Arc::clone(&fake)), Arc::new(DownStore));
    let login = m.resolve(&old(), 1).await.unwrap();
    assert_eq!(login.claims.rt.expose(), "rt-exported");
    assert_eq!(fake.exports.load(Ordering::SeqCst), 1);
}
