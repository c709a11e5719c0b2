//! Backoff, quota, the budget of unknown v2 AuthIDs and the bulkhead, per gate.

use super::*;
use crate::provider::catalogue::CatalogueSource;

fn protection(concurrency: usize) -> Protection {
    on_store(concurrency, Arc::new(crate::store::MemoryStore::default()))
}

fn on_store(concurrency: usize, store: Arc<dyn Store>) -> Protection {
    let catalogue = Catalogue::load(
        &CatalogueSource {
            configfile: Some(
                r#"[{"id": "a", "clientId": "c", "authUrl": "http://127.0.0.1:9/t", "loginUrl": "http://127.0.0.1:9/a", "rateLimit": {"perSecond": 1, "burst": 2}},
                    {"id": "b", "clientId": "c", "authUrl": "http://127.0.0.1:9/t2", "loginUrl": "http://127.0.0.1:9/a"},
                    {"id": "a2", "clientId": "c", "authUrl": "http://127.0.0.1:9/t", "loginUrl": "http://127.0.0.1:9/a"}]"#,
            ),
            services: Some("a,b,a2"),
            ..Default::default()
        },
        &|_| None,
    )
    .unwrap();
    Protection::new(
        &catalogue,
        ProtectionSettings {
            max_backoff: Duration::from_secs(3600),
            concurrency,
            queue_wait: Duration::from_millis(50),
        },
        store,
        Arc::new(StoreOutage::new()),
    )
}

#[tokio::test]
async fn retry_after_blocks_only_that_provider_and_is_capped() {
    let p = protection(4);
    assert_eq!(
        p.throttled("a", Some(Duration::from_secs(30)), 1000).await,
        30
    );
    assert_eq!(p.blocked("a", 1010), Some(20));
    assert_eq!(p.admit("a", 1010).await.unwrap_err(), Refusal::Blocked(20));
    assert!(p.admit("b", 1010).await.is_ok());
    assert_eq!(
        p.blocked("a2", 1010),
        Some(20),
        "same registration, same block"
    );
    assert_eq!(p.blocked("a", 1030), None);
    assert_eq!(
        p.throttled("a", Some(Duration::from_secs(1_000_000)), 2000)
            .await,
        3600
    );
    assert_eq!(p.active_backoffs(2000), 1);
}

#[tokio::test]
async fn backoff_without_retry_after_grows_with_jitter_and_resets() {
    let p = protection(4);
    let mut now = 0;
    let mut last = 0;
    for round in 1..=8u32 {
        let s = p.throttled("a", None, now).await;
        let base = (1u64 << (round - 1).min(6)).min(60);
        assert!((base.div_ceil(2)..=base).contains(&s), "round {round}: {s}");
        assert!(s >= last / 2);
        last = s;
        now += 1000;
    }
    p.succeeded("a");
    assert!(p.throttled("a", None, now).await <= 1);
}

#[tokio::test]
async fn a_window_seen_by_one_instance_holds_the_others() {
    let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::default());
    let one = on_store(4, Arc::clone(&store));
    let two = on_store(4, store);
    assert_eq!(
        one.throttled("a", Some(Duration::from_secs(30)), 1000)
            .await,
        30
    );
    assert_eq!(two.blocked("a", 1010), None, "not known here yet");
    assert_eq!(two.blocked_anywhere("a2", 1010).await, Some(20));
    assert_eq!(two.blocked("a", 1010), Some(20), "kept here once seen");
    assert_eq!(two.blocked_anywhere("b", 1010).await, None);
    assert_eq!(two.blocked_anywhere("a", 1030).await, None);
}

#[tokio::test]
async fn a_window_read_from_the_store_is_capped_and_not_kept_past_a_recheck() {
    let store: Arc<dyn Store> = Arc::new(crate::store::MemoryStore::default());
    let p = on_store(4, Arc::clone(&store));
    let gate = Arc::clone(&p.gates["a"]);
    let huge = gate.window_key.seal(&gate.key, 1 << 62);
    store
        .put(&gate.key, huge, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(p.blocked_anywhere("a", 1000).await, Some(3600), "capped");
    assert_eq!(p.blocked("a", 1001), Some(3599));
    store.delete(&gate.key).await.unwrap();
    assert_eq!(
        p.blocked("a", 1000 + SHARED_RECHECK_SECS),
        None,
        "not believed past the recheck"
    );
    assert_eq!(
        p.blocked_anywhere("a", 1000 + SHARED_RECHECK_SECS).await,
        None
    );
    store
        .put(
            &gate.key,
            5000i64.to_be_bytes().to_vec(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        p.blocked_anywhere("a", 2000).await,
        None,
        "a bare integer is not a window"
    );
}

#[tokio::test]
async fn a_previous_client_has_its_own_gate_unless_it_shares_the_registration() {
    let catalogue = Catalogue::load(
        &CatalogueSource {
            configfile: Some(
                r#"[{"id": "a", "clientId": "new", "authUrl": "http://127.0.0.1:9/t", "loginUrl": "http://127.0.0.1:9/a",
                     "previousClients": [{"clientId": "old"}, {"clientId": "older", "authUrl": "http://127.0.0.1:9/t2"}]},
                    {"id": "b", "clientId": "older", "authUrl": "http://127.0.0.1:9/t2", "loginUrl": "http://127.0.0.1:9/a"}]"#,
            ),
            services: Some("a,b"),
            ..Default::default()
        },
        &|_| None,
    )
    .unwrap();
    let p = Protection::new(
        &catalogue,
        ProtectionSettings {
            max_backoff: Duration::from_secs(3600),
            concurrency: 4,
            queue_wait: Duration::from_millis(50),
        },
        Arc::new(crate::store::MemoryStore::default()),
        Arc::new(StoreOutage::new()),
    );
    let a = catalogue.get("a").unwrap();
    let old = gate_name(a, &a.registration(Some("old")).unwrap());
    let older = gate_name(a, &a.registration(Some("older")).unwrap());
    assert_eq!(gate_name(a, &a.current()), "a");
    p.throttled(&old, Some(Duration::from_secs(30)), 0).await;
    assert_eq!(p.blocked(&old, 0), Some(30));
    assert_eq!(
        p.blocked("a", 0),
        None,
        "the new registration is not blocked"
    );
    p.throttled(&older, Some(Duration::from_secs(60)), 0).await;
    assert_eq!(p.blocked("b", 0), Some(60), "same endpoint and client id");
}

#[tokio::test]
async fn quota_refuses_past_the_burst() {
    let p = protection(4);
    assert!(p.admit("a", 0).await.is_ok());
    assert!(p.admit("a", 0).await.is_ok());
    match p.admit("a", 0).await {
        Err(Refusal::Quota(s)) => assert!(s >= 1),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unknown_v2_authids_have_a_tenth_of_the_quota_of_their_own() {
    let p = protection(4);
    // "b" has the default 10/s, burst 20: one v2 call per second,
    // burst 2.
    assert!(p.admit_unknown_v2("b").is_ok());
    assert!(p.admit_unknown_v2("b").is_ok());
    match p.admit_unknown_v2("b") {
        Err(Refusal::UnknownV2(s)) => assert!(s >= 1),
        other => panic!("{other:?}"),
    }
    // The provider's own quota is untouched by the refusals.
    for _ in 0..18 {
        assert!(p.admit("b", 0).await.is_ok());
    }
    // "a" has 1/s, burst 2: a tenth rounds up to one call.
    assert!(p.admit_unknown_v2("a").is_ok());
    assert!(p.admit_unknown_v2("a").is_err());
}

#[tokio::test]
async fn bulkhead_bounds_concurrent_calls_per_provider() {
    let p = protection(1);
    let held = p.admit("b", 0).await.unwrap();
    assert_eq!(p.admit("b", 0).await.unwrap_err(), Refusal::Busy(1));
    drop(held);
    assert!(p.admit("b", 0).await.is_ok());
}

#[tokio::test]
async fn on_a_store_this_process_owns_the_window_is_read_from_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(crate::store::EmbeddedStore::open(dir.path()).unwrap());
    let before_restart = on_store(4, Arc::clone(&store));
    before_restart
        .throttled("a", Some(Duration::from_secs(30)), 1000)
        .await;
    // After a restart the window set before it still holds.
    let p = on_store(4, Arc::clone(&store));
    assert_eq!(p.blocked_anywhere("a", 1010).await, Some(20));
    assert_eq!(p.blocked("a", 1010), Some(20), "kept here");

    // Once read, the store is not asked again: every later window is one
    // this process sets (and holds) itself. A window written behind its
    // back, as no process can on this store, is therefore not seen.
    assert_eq!(p.blocked_anywhere("b", 1010).await, None);
    before_restart
        .throttled("b", Some(Duration::from_secs(60)), 1010)
        .await;
    assert_eq!(p.blocked_anywhere("b", 1020).await, None);
    // A window it sets itself holds as before.
    p.throttled("b", Some(Duration::from_secs(60)), 1020).await;
    assert_eq!(p.blocked_anywhere("b", 1030).await, Some(50));
}
