//! Instances sharing a store: the login's lock, waiting for the holder's
//! answer, and backoff windows.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::*;

impl Fixture {
    pub(super) fn records_of<'a>(&'a self, authid: &str) -> (LoginRecords<'a>, OpenedAuthId) {
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
