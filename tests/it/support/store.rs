//! A store for tests: an in-memory store that can be switched off (every
//! operation then fails as an unreachable store does) and that keeps a
//! copy of every key and value ever written, so a test can scan all the
//! store was given for secrets.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use oauth_broker::store::{MemoryStore, Store, StoreError, StoreKey, StoreResult, Versioned};

#[derive(Default)]
pub struct TestStore {
    inner: MemoryStore,
    down: AtomicBool,
    /// Fail only versioned writes (a rotation that cannot be recorded).
    refuse_versioned: AtomicBool,
    written: Mutex<Vec<(String, Vec<u8>)>>,
    failures: AtomicUsize,
}

impl TestStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Switches the store off (`true`) or back on, with its data.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn set_refuse_versioned(&self, on: bool) {
        self.refuse_versioned.store(on, Ordering::SeqCst);
    }

    /// Operations refused while switched off.
    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::SeqCst)
    }

    /// Every key name and value ever written.
    pub fn dump(&self) -> Vec<(String, Vec<u8>)> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn check(&self) -> StoreResult<()> {
        if self.down.load(Ordering::SeqCst) {
            self.failures.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Unavailable("switched off by the test".into()))
        } else {
            Ok(())
        }
    }

    fn record(&self, key: &StoreKey, value: &[u8]) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key.name(), value.to_vec()));
    }
}

impl Store for TestStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            self.check()?;
            self.inner.get(key).await
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.check()?;
            self.record(key, &value);
            self.inner.put(key, value, ttl).await
        })
    }

    fn put_new<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            self.check()?;
            self.record(key, &value);
            self.inner.put_new(key, value, ttl).await
        })
    }

    fn take<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            self.check()?;
            self.inner.take(key).await
        })
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            self.check()?;
            self.inner.delete(key).await
        })
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            self.check()?;
            self.inner.delete_if(key, expected).await
        })
    }

    fn get_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        Box::pin(async move {
            self.check()?;
            self.inner.get_versioned(key).await
        })
    }

    fn put_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Versioned,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            self.check()?;
            if self.refuse_versioned.load(Ordering::SeqCst) {
                return Err(StoreError::Timeout);
            }
            self.record(key, &value.value);
            self.inner.put_versioned(key, value, ttl).await
        })
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move { self.check() })
    }
}

/// Asserts that no key name or value of a store dump contains any of
/// `secrets` (nor, for long ones such as AuthIDs, their last 40
/// characters).
pub fn assert_holds_none_of(dump: &[(String, Vec<u8>)], secrets: &[String]) {
    assert!(!dump.is_empty(), "the store was used");
    for (key, value) in dump {
        for secret in secrets.iter().filter(|s| s.len() >= 8) {
            let needle = secret.as_bytes();
            assert!(!key.contains(secret.as_str()), "a secret in a key name");
            assert!(
                !value.windows(needle.len()).any(|w| w == needle),
                "a secret in a value of {}",
                key.split(':').next().unwrap_or("?")
            );
            if needle.len() > 60 {
                let part = &needle[needle.len() - 40..];
                assert!(!value.windows(part.len()).any(|w| w == part));
            }
        }
    }
}
