//! Refresher behaviour against a scripted token client.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use url::Url;

use super::*;
use crate::authid::{Claims, Keyring, ServerKey};
use crate::clock::{Clock, ManualClock};
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::outage::StoreOutage;
use crate::provider::client::FormField;
use crate::provider::{Protection, RawAnswer, TransportError};
use crate::store::Store;

#[derive(Default)]
struct Scripted {
    calls: AtomicUsize,
    answers: Mutex<VecDeque<(u16, String)>>,
    seen_tokens: Mutex<Vec<String>>,
    gate: Mutex<Option<tokio::sync::watch::Receiver<bool>>>,
}

impl Scripted {
    fn push(&self, status: u16, body: &str) {
        self.answers
            .lock()
            .unwrap()
            .push_back((status, body.to_string()));
    }
}

impl TokenClient for Scripted {
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
        // The refresher never reads documents.
        Box::pin(async { Err(TransportError::Connect) })
    }
}

impl Refresher {
    async fn refresh_for(&self, text: &str) -> Result<RefreshAnswer, RefreshError> {
        self.refresh(text, None).await
    }
}

struct Fixture {
    refresher: Refresher,
    store: Arc<dyn Store>,
    client: Arc<Scripted>,
    keyring: Arc<KeyringHandle>,
    clock: ManualClock,
}

fn fixture() -> Fixture {
    let catalogue = Catalogue::load(
        &crate::provider::catalogue::CatalogueSource {
            configfile: Some(
                r#"[{"id": "googledrive", "authUrl": "http://127.0.0.1:9/token", "loginUrl": "http://127.0.0.1:9/auth"},
                    {"id": "box.com", "authUrl": "http://127.0.0.1:9/token", "loginUrl": "http://127.0.0.1:9/auth"},
                    {"id": "pcloud", "authUrl": "http://127.0.0.1:9/token", "loginUrl": "http://127.0.0.1:9/auth"}]"#,
            ),
            ..Default::default()
        },
        &|name| name.ends_with("_CLIENT_ID").then(|| "id".to_string()).or_else(|| name.ends_with("_SECRET").then(|| "s".to_string())),
    )
    .unwrap();
    let keyring = Arc::new(KeyringHandle::new(Keyring::ephemeral().unwrap()));
    let client = Arc::new(Scripted::default());
    let clock = ManualClock::new(1_800_000_000);
    let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::default());
    let outage = Arc::new(StoreOutage::new());
    let protection = Arc::new(Protection::new(
        &catalogue,
        crate::provider::ProtectionSettings {
            max_backoff: std::time::Duration::from_secs(3600),
            concurrency: 16,
            queue_wait: std::time::Duration::from_secs(2),
        },
        Arc::clone(&store),
        Arc::clone(&outage),
    ));
    let metrics = Arc::new(Metrics::new());
    let migrator = crate::migrate::Migrator::new(crate::migrate::MigrateDeps {
        service: None,
        store: Arc::clone(&store),
        outage: Arc::clone(&outage),
        metrics: Arc::clone(&metrics),
    });
    let refresher = Refresher::new(RefreshDeps {
        keyring: Arc::clone(&keyring),
        catalogue: Arc::new(catalogue),
        client: client.clone(),
        store: Arc::clone(&store),
        outage,
        protection,
        metrics,
        migrator,
        clock: Arc::new(clock.clone()),
        redirect_uri: "http://127.0.0.1/logged-in".into(),
        cache_capacity: 1000,
        limits: Limits::default(),
        upstream_timeout: std::time::Duration::from_secs(2),
    });
    Fixture {
        refresher,
        store,
        client,
        keyring,
        clock,
    }
}

impl Fixture {
    fn authid(&self, provider: &str, rt: &str) -> String {
        self.keyring
            .seal(&Claims::new(provider, Sensitive::new(rt), self.clock.now()))
            .unwrap()
    }
}

#[tokio::test]
async fn sequential_refreshes_hit_the_cache() {
    let f = fixture();
    let authid = f.authid("googledrive", "rt-1");
    for i in 0..20 {
        let a = f.refresher.refresh_for(&authid).await.unwrap();
        assert_eq!(a.access_token().expose(), "at-default");
        assert_eq!(a.provider(), "googledrive");
        assert!(a.new_authid().is_none());
        assert_eq!(a.expires, 3600 - i);
        f.clock.advance(1);
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn token_is_refreshed_when_a_minute_or_less_remains() {
    let f = fixture();
    let authid = f.authid("googledrive", "rt-1");
    f.refresher.refresh_for(&authid).await.unwrap();
    f.clock.advance(3600 - 61);
    assert_eq!(f.refresher.refresh_for(&authid).await.unwrap().expires, 61);
    f.clock.advance(1);
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap().expires,
        3600
    );
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_refreshes_make_one_upstream_call() {
    let f = fixture();
    let authid = Arc::new(f.authid("googledrive", "rt-1"));
    let (release, gate) = tokio::sync::watch::channel(false);
    *f.client.gate.lock().unwrap() = Some(gate);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let r = f.refresher.clone();
        let a = Arc::clone(&authid);
        tasks.push(tokio::spawn(async move { r.refresh_for(&a).await }));
    }
    while f.client.calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    release.send(true).unwrap();
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap().access_token().expose(),
            "at-default"
        );
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn rotated_refresh_token_comes_back_as_a_new_authid() {
    let f = fixture();
    f.client.push(
        200,
        r#"{"access_token":"at-1","expires_in":3600,"refresh_token":"rt-2"}"#,
    );
    let authid = f.authid("box.com", "rt-1");
    let a = f.refresher.refresh_for(&authid).await.unwrap();
    let new = a.new_authid().map(str::to_string).expect("v2_authid");
    let opened = f.keyring.open(new.strip_prefix("v3:").unwrap()).unwrap();
    assert_eq!(opened.claims.rt.expose(), "rt-2");
    let original = f.keyring.open(authid.strip_prefix("v3:").unwrap()).unwrap();
    assert_eq!(opened.claims.jti, original.claims.jti, "same login");
    // The new AuthID is served from cache without another call.
    let b = f.refresher.refresh_for(&new).await.unwrap();
    assert_eq!(b.access_token().expose(), "at-1");
    assert!(b.new_authid().is_some());
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn same_refresh_token_back_is_not_a_rotation() {
    let f = fixture();
    f.client.push(
        200,
        r#"{"access_token":"at-1","expires_in":3600,"refresh_token":"rt-1"}"#,
    );
    let a = f
        .refresher
        .refresh_for(&f.authid("googledrive", "rt-1"))
        .await
        .unwrap();
    assert!(a.new_authid().is_none());
}

#[tokio::test]
async fn legacy_and_old_key_authids_are_resealed() {
    let f = fixture();
    let a = f
        .refresher
        .refresh_for("v2:googledrive:rt-legacy")
        .await
        .unwrap();
    let new = a.new_authid().map(str::to_string).expect("upgraded");
    let opened = f.keyring.open(new.strip_prefix("v3:").unwrap()).unwrap();
    assert_eq!(opened.claims.rt.expose(), "rt-legacy");
    assert_eq!(opened.claims.provider, "googledrive");

    let old = f.authid("googledrive", "rt-old-key");
    let old_key = Arc::clone(f.keyring.current().primary());
    let new_key = Arc::new(ServerKey::generate("next", 1).unwrap().0);
    f.keyring
        .replace(Keyring::new([old_key, new_key], "next", HashSet::new()).unwrap());
    let a = f.refresher.refresh_for(&old).await.unwrap();
    let resealed = a.new_authid().map(str::to_string).expect("re-sealed");
    assert_eq!(
        f.keyring
            .open(resealed.strip_prefix("v3:").unwrap())
            .unwrap()
            .kid,
        "next"
    );
    // Both texts now hit the cache: one upstream call for each login.
    f.refresher.refresh_for(&resealed).await.unwrap();
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_resealed_authid_finds_the_cached_token() {
    let f = fixture();
    let claims = Claims::new("googledrive", Sensitive::new("rt-1"), 1);
    let first = f.keyring.seal(&claims).unwrap();
    let second = f.keyring.seal(&claims).unwrap();
    assert_ne!(first, second);
    f.refresher.refresh_for(&first).await.unwrap();
    f.refresher.refresh_for(&second).await.unwrap();
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_forged_login_id_does_not_reach_another_users_token() {
    let f = fixture();
    let victim = Claims::new("googledrive", Sensitive::new("rt-victim"), 1);
    f.refresher
        .refresh_for(&f.keyring.seal(&victim).unwrap())
        .await
        .unwrap();
    // Anyone with the public key can mint an AuthID naming the victim's
    // login id, but not with the victim's login secret.
    let mut forged = Claims::new("googledrive", Sensitive::new("rt-attacker"), 1);
    forged.jti = victim.jti.clone();
    f.client.push(400, r#"{"error":"invalid_grant"}"#);
    let err = f
        .refresher
        .refresh_for(&f.keyring.seal(&forged).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.label(), "reauthorize");
}

#[tokio::test]
async fn errors_are_not_cached_and_upstream_classes_pass_through() {
    let f = fixture();
    let authid = f.authid("googledrive", "rt-1");
    f.client.push(500, "<html>");
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap_err().label(),
        "error"
    );
    assert!(f.refresher.refresh_for(&authid).await.is_ok());
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn provider_problems_are_reported() {
    let f = fixture();
    let err = f
        .refresher
        .refresh_for(&f.authid("nosuch", "rt"))
        .await
        .unwrap_err();
    assert!(matches!(err, RefreshError::UnknownProvider(_)));
    let err = f
        .refresher
        .refresh_for(&f.authid("pcloud", "at"))
        .await
        .unwrap_err();
    assert!(matches!(err, RefreshError::AccessTokenOnly(_)));
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn refresh_form_follows_provider_quirks() {
    let f = fixture();
    let drive = f.refresher.catalogue().get("googledrive").unwrap();
    let form = drive.refresh_form(&Sensitive::new("rt"), "https://x/logged-in");
    let names: Vec<&str> = form.iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(
        names,
        [
            "grant_type",
            "refresh_token",
            "client_id",
            "client_secret",
            "redirect_uri"
        ]
    );
}

#[tokio::test]
async fn ending_a_login_revokes_the_newest_token_and_refuses_every_authid_of_it() {
    let f = fixture();
    f.client.push(
        200,
        r#"{"access_token":"at-1","expires_in":3600,"refresh_token":"rt-2"}"#,
    );
    let pasted = f.authid("box.com", "rt-1");
    let newest = f
        .refresher
        .refresh_for(&pasted)
        .await
        .unwrap()
        .new_authid()
        .unwrap()
        .to_string();
    let login = f.refresher.open(&pasted).unwrap();
    let ending = f.refresher.begin_ending(&pasted, login).await.unwrap();
    let tokens: Vec<_> = ending
        .refresh_tokens()
        .iter()
        .map(|t| t.expose().to_string())
        .collect();
    assert_eq!(tokens, ["rt-2", "rt-1"], "the newest first");
    ending.finish().await.unwrap();
    for text in [&pasted, &newest] {
        assert_eq!(
            f.refresher.refresh_for(text).await.unwrap_err(),
            RefreshError::Revoked
        );
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1, "no call after");
    let (records, _) = f.records_of(&pasted);
    assert!(records.rotation().await.unwrap().is_none());
    assert!(records.token(f.clock.now()).await.unwrap().is_none());
    assert!(
        records
            .try_lock(Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn an_abandoned_ending_leaves_the_login_as_it_was() {
    let f = fixture();
    let authid = f.authid("box.com", "rt-1");
    f.refresher.refresh_for(&authid).await.unwrap();
    let login = f.refresher.open(&authid).unwrap();
    let ending = f.refresher.begin_ending(&authid, login).await.unwrap();
    assert_eq!(ending.refresh_tokens().len(), 1);
    ending.abandon().await;
    assert!(f.refresher.refresh_for(&authid).await.is_ok());
    let (records, _) = f.records_of(&authid);
    assert!(
        records
            .try_lock(Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_cached_answer_ends_within_a_minute_of_a_revocation_elsewhere() {
    let f = fixture();
    let authid = f.authid("googledrive", "rt-1");
    f.refresher.refresh_for(&authid).await.unwrap();
    // Another instance on the same store ends the login.
    let (records, _) = f.records_of(&authid);
    records
        .mark_revoked(Duration::from_secs(3600))
        .await
        .unwrap();
    records.forget().await.unwrap();
    f.clock.advance(REVOCATION_RECHECK_SECS - 1);
    assert!(
        f.refresher.refresh_for(&authid).await.is_ok(),
        "still cached"
    );
    f.clock.advance(1);
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap_err(),
        RefreshError::Revoked
    );
    assert_eq!(
        f.refresher.refresh_for(&authid).await.unwrap_err(),
        RefreshError::Revoked,
        "and it stays ended"
    );
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn made_up_legacy_authids_have_a_budget_of_their_own_and_count_against_the_address() {
    let f = fixture();
    let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
    let (mut refused, mut reauthorize) = (0, 0);
    // Google's budget is 50/s with a burst of 100: 5/s and 10 for these.
    for i in 0..30 {
        f.client.push(400, r#"{"error":"invalid_grant"}"#);
        match f
            .refresher
            .refresh(&format!("v2:googledrive:made-up-{i}"), Some(ip))
            .await
        {
            Err(RefreshError::Upstream(UpstreamError::Reauthorize { .. })) => reauthorize += 1,
            Err(RefreshError::Refused(Refusal::UnknownV2(_))) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(f.client.calls.load(Ordering::SeqCst), reauthorize);
    assert!(refused > 0 && reauthorize < 30, "{reauthorize} calls");
    // Each refusal by the provider counted against the address.
    let limit = Limits::default().bad_authids_per_minute as usize;
    let left = (0..limit)
        .take_while(|_| {
            f.refresher
                .inner
                .bad_authids
                .hit(&ip, f.clock.now())
                .is_ok()
        })
        .count();
    assert_eq!(left, limit - reauthorize);
    // A sealed AuthID still has the provider's budget.
    f.client.answers.lock().unwrap().clear();
    let sealed = f.authid("googledrive", "rt-real");
    assert!(f.refresher.refresh_for(&sealed).await.is_ok());
}

#[tokio::test]
async fn a_legacy_login_the_provider_accepted_leaves_the_small_budget() {
    let f = fixture();
    let real = "v2:googledrive:real-legacy-token";
    assert!(f.refresher.refresh_for(real).await.is_ok());
    f.clock.advance(3600);
    // Made-up ones spend the budget of legacy AuthIDs never seen...
    let mut spent = false;
    for i in 0..200 {
        f.client.push(400, r#"{"error":"invalid_grant"}"#);
        let made_up = f
            .refresher
            .refresh_for(&format!("v2:googledrive:made-up-{i}"))
            .await;
        if let Err(RefreshError::Refused(Refusal::UnknownV2(_))) = made_up {
            spent = true;
            break;
        }
    }
    assert!(spent);
    f.client.answers.lock().unwrap().clear();
    // ...and the known one, whose access token expired, is refreshed.
    let calls = f.client.calls.load(Ordering::SeqCst);
    assert!(f.refresher.refresh_for(real).await.is_ok());
    assert_eq!(f.client.calls.load(Ordering::SeqCst), calls + 1);
}

#[tokio::test]
async fn per_login_counters_stay_within_the_cache_capacity_under_a_flood_of_logins() {
    let f = fixture();
    // Legacy AuthIDs open without a key: each made-up one is a new login.
    for i in 0..2500 {
        let _ = f
            .refresher
            .refresh_for(&format!("v2:googledrive:made-up-{i}"))
            .await;
    }
    let inner = &f.refresher.inner;
    for (name, held) in [
        ("requests", inner.login_requests.len()),
        ("refreshes", inner.login_refreshes.len()),
    ] {
        assert!(held <= 1000, "{name}: {held} counters for 2500 logins");
    }
}

impl Fixture {
    fn records_of<'a>(&'a self, authid: &str) -> (LoginRecords<'a>, Login) {
        let login = self.refresher.open(authid).unwrap();
        let records = LoginRecords::new(self.store.as_ref(), &login.claims);
        (records, login)
    }

    fn lock_waits(&self, provider: &str) -> u64 {
        self.refresher
            .inner
            .deps
            .metrics
            .store_lock_waits
            .get_or_create(&Metrics::provider(provider))
            .get()
    }
}

#[tokio::test(start_paused = true)]
async fn a_login_locked_elsewhere_waits_then_gives_up_only_if_it_rotates() {
    let f = fixture();
    let boxed = f.authid("box.com", "rt-1");
    let (records, _) = f.records_of(&boxed);
    let _held = records
        .try_lock(Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let err = f.refresher.refresh_for(&boxed).await.unwrap_err();
    assert!(matches!(err, RefreshError::InProgress { .. }), "{err:?}");
    assert_eq!(
        f.client.calls.load(Ordering::SeqCst),
        0,
        "no call under another's lock"
    );
    assert_eq!(f.lock_waits("box.com"), 1);

    // A token that does not rotate cannot be spent twice: after the wait
    // the refresh goes on without the lock.
    let google = f.authid("googledrive", "rt-g");
    let (records, _) = f.records_of(&google);
    let _held = records
        .try_lock(Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    assert!(f.refresher.refresh_for(&google).await.is_ok());
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_instance_serves_the_holders_answer() {
    let f = fixture();
    let authid = f.authid("box.com", "rt-1");
    let (records, _) = f.records_of(&authid);
    let held = records
        .try_lock(Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let store = Arc::clone(&f.store);
    let claims = f.refresher.open(&authid).unwrap().claims;
    let now = f.clock.now();
    let holder = tokio::spawn(async move {
        // The other instance rotates, shares its token and lets go.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let records = LoginRecords::new(store.as_ref(), &claims);
        let rotation = records.seal_rotation(1, &Sensitive::new("rt-2")).unwrap();
        records
            .put_rotation(rotation, Duration::from_secs(600))
            .await
            .unwrap();
        let token = SharedToken {
            access_token: Sensitive::new("at-elsewhere"),
            expires_at: now + 3600,
        };
        records.put_token(&token, now).await.unwrap();
        records.unlock(&held).await.unwrap();
    });
    let a = f.refresher.refresh_for(&authid).await.unwrap();
    holder.await.unwrap();
    assert_eq!(a.access_token().expose(), "at-elsewhere");
    let new = a
        .new_authid()
        .expect("the newest refresh token in a new AuthID");
    let opened = f.keyring.open(new.strip_prefix("v3:").unwrap()).unwrap();
    assert_eq!(opened.claims.rt.expose(), "rt-2");
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 0);
    assert_eq!(f.lock_waits("box.com"), 1);
}

#[tokio::test]
async fn a_call_answers_before_its_lock_ends_and_releases_it() {
    let f = fixture();
    f.client.push(
        200,
        r#"{"access_token":"at-1","expires_in":3600,"refresh_token":"rt-2"}"#,
    );
    let authid = f.authid("box.com", "rt-1");
    f.refresher.refresh_for(&authid).await.unwrap();
    let (records, _) = f.records_of(&authid);
    assert!(
        records
            .try_lock(Duration::from_secs(1))
            .await
            .unwrap()
            .is_some(),
        "the lock was released"
    );
    let inner = &f.refresher.inner;
    assert!(
        inner.lease > inner.deps.upstream_timeout * 2,
        "the lease covers the wait for a slot and the call"
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiting_instance_obeys_the_backoff_its_holder_met() {
    let f = fixture();
    let authid = f.authid("box.com", "rt-1");
    let (records, login) = f.records_of(&authid);
    let held = records
        .try_lock(Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    let other_instance = Protection::new(
        f.refresher.catalogue(),
        crate::provider::ProtectionSettings {
            max_backoff: Duration::from_secs(3600),
            concurrency: 16,
            queue_wait: Duration::from_secs(2),
        },
        Arc::clone(&f.store),
        Arc::new(StoreOutage::new()),
    );
    let store = Arc::clone(&f.store);
    let now = f.clock.now();
    let holder = tokio::spawn(async move {
        // The holder is throttled by the provider and lets go.
        tokio::time::sleep(Duration::from_millis(100)).await;
        other_instance
            .throttled("box.com", Some(Duration::from_secs(30)), now)
            .await;
        let records = LoginRecords::new(store.as_ref(), &login.claims);
        records.unlock(&held).await.unwrap();
    });
    let err = f.refresher.refresh_for(&authid).await.unwrap_err();
    holder.await.unwrap();
    assert_eq!(err, RefreshError::Refused(Refusal::Blocked(30)));
    assert_eq!(f.client.calls.load(Ordering::SeqCst), 0);
}
