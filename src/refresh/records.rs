//! One login's records in the store: the newest refresh token of a
//! rotating login (versioned, so two instances can never both win a
//! rotation), the access token it was last given, the refresh lock that
//! lets one instance at a time call the provider, the rest after a lost
//! answer, the mark of a revoked login and that of a `v2:` login the
//! provider accepted. Every id and value goes through the login's
//! [`Vault`].

use std::time::Duration;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::cache::MIN_REMAINING_SECS;
use crate::authid::Claims;
use crate::secret::Sensitive;
use crate::store::{Space, Store, StoreError, StoreKey, StoreResult, Versioned};
use crate::vault::{Vault, encrypt_failed};

/// The newest refresh token of a login, and its generation (the number of
/// rotations recorded).
pub struct Newest {
    pub generation: u64,
    pub refresh_token: Sensitive,
}

/// An access token one instance obtained, for the others to serve.
#[derive(Serialize, Deserialize)]
pub struct SharedToken {
    #[serde(rename = "at")]
    pub access_token: Sensitive,
    /// Unix seconds, on the application clock.
    #[serde(rename = "exp")]
    pub expires_at: i64,
}

/// Proof of holding a login's lock: the random value written with it.
pub struct LockToken([u8; 16]);

/// Releases the lock at `key` if `token` still holds it.
pub async fn release_lock(
    store: &dyn Store,
    key: &StoreKey,
    token: &LockToken,
) -> StoreResult<bool> {
    store.delete_if(key, &token.0).await
}

pub struct LoginRecords<'a> {
    store: &'a dyn Store,
    vault: Vault,
}

/// A value that does not open under the login's keys was written by
/// something else, or damaged: it is treated as absent (anyone able to
/// write the store could delete it just as well).
fn unreadable(space: Space) {
    tracing::warn!(
        space = space.name(),
        "a store entry does not open with its login's keys; ignored"
    );
}

impl<'a> LoginRecords<'a> {
    pub fn new(store: &'a dyn Store, claims: &Claims) -> Self {
        Self {
            store,
            vault: Vault::for_login(claims),
        }
    }

    pub fn rotation_key(&self) -> StoreKey {
        self.vault.key(Space::Rotation)
    }

    /// The recorded rotation, still sealed.
    pub async fn rotation(&self) -> StoreResult<Option<Versioned>> {
        self.store.get_versioned(&self.rotation_key()).await
    }

    /// Opens a recorded rotation.
    pub fn open_rotation(&self, record: &Versioned) -> Option<Newest> {
        let plain = self
            .vault
            .open(&self.rotation_key(), record.generation, &record.value);
        let Some(token) = plain.and_then(|p| String::from_utf8(p.to_vec()).ok()) else {
            unreadable(Space::Rotation);
            return None;
        };
        Some(Newest {
            generation: record.generation,
            refresh_token: Sensitive::new(token),
        })
    }

    /// Seals a rotation for [`LoginRecords::put_rotation`].
    pub fn seal_rotation(
        &self,
        generation: u64,
        refresh_token: &Sensitive,
    ) -> StoreResult<Versioned> {
        let value = self
            .vault
            .seal(
                &self.rotation_key(),
                generation,
                refresh_token.expose().as_bytes(),
            )
            .map_err(encrypt_failed)?;
        Ok(Versioned { generation, value })
    }

    /// Records a rotation unless the same or a newer generation is there.
    pub async fn put_rotation(&self, record: Versioned, ttl: Duration) -> StoreResult<bool> {
        self.store
            .put_versioned(&self.rotation_key(), record, ttl)
            .await
    }

    /// The access token the login was last given, while it still has
    /// more than the cache's margin to live at `now`.
    pub async fn token(&self, now: i64) -> StoreResult<Option<SharedToken>> {
        let key = self.vault.key(Space::Token);
        let Some(sealed) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let token = self
            .vault
            .open(&key, 0, &sealed)
            .and_then(|plain| serde_json::from_slice::<SharedToken>(&plain).ok());
        if token.is_none() {
            unreadable(Space::Token);
        }
        Ok(token.filter(|t| t.expires_at - now > MIN_REMAINING_SECS))
    }

    /// Shares an access token until the cache would stop serving it.
    pub async fn put_token(&self, token: &SharedToken, now: i64) -> StoreResult<()> {
        let left = token.expires_at - MIN_REMAINING_SECS - now;
        if left <= 0 {
            return Ok(());
        }
        let key = self.vault.key(Space::Token);
        let plain = Zeroizing::new(serde_json::to_vec(token).map_err(encrypt_failed)?);
        let sealed = self.vault.seal(&key, 0, &plain).map_err(encrypt_failed)?;
        self.store
            .put(&key, sealed, Duration::from_secs(left as u64))
            .await
    }

    /// Takes the login's refresh lock for `lease`, if no one holds it. The
    /// lock's value is a random token, so only its taker releases it
    /// (compare-and-delete). A `SET NX` that timed out may still have been
    /// applied: the lock is then looked at again, and taken if it holds
    /// this token, rather than left behind for its whole lease.
    pub async fn try_lock(&self, lease: Duration) -> StoreResult<Option<LockToken>> {
        let mut token = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut token);
        let key = self.lock_key();
        match self.store.put_new(&key, token.to_vec(), lease).await {
            Ok(taken) => Ok(taken.then_some(LockToken(token))),
            Err(error @ StoreError::Timeout) => match self.store.get(&key).await {
                Ok(Some(held)) if held == token => Ok(Some(LockToken(token))),
                Ok(Some(_)) => Ok(None),
                Ok(None) | Err(_) => Err(error),
            },
            Err(error) => Err(error),
        }
    }

    /// Releases the lock if it is still ours (it may have expired and
    /// been taken by another instance).
    pub async fn unlock(&self, token: &LockToken) -> StoreResult<bool> {
        release_lock(self.store, &self.lock_key(), token).await
    }

    /// The id of the login's refresh lock, for releasing it later without
    /// the login's claims.
    pub fn lock_key(&self) -> StoreKey {
        self.vault.key(Space::Lock)
    }

    /// When the login's last single-use refresh answer was lost, if it was.
    pub async fn interrupted_at(&self) -> StoreResult<Option<i64>> {
        let key = self.vault.key(Space::Interrupted);
        let Some(sealed) = self.store.get(&key).await? else {
            return Ok(None);
        };
        let at = self
            .vault
            .open(&key, 0, &sealed)
            .and_then(|p| <[u8; 8]>::try_from(p.as_slice()).ok())
            .map(i64::from_be_bytes);
        if at.is_none() {
            unreadable(Space::Interrupted);
        }
        Ok(at)
    }

    /// Notes that an answer was lost at `at`; kept for `ttl`.
    pub async fn mark_interrupted(&self, at: i64, ttl: Duration) -> StoreResult<()> {
        let key = self.vault.key(Space::Interrupted);
        let sealed = self
            .vault
            .seal(&key, 0, &at.to_be_bytes())
            .map_err(encrypt_failed)?;
        self.store.put(&key, sealed, ttl).await
    }

    pub async fn clear_interrupted(&self) -> StoreResult<()> {
        self.store.delete(&self.vault.key(Space::Interrupted)).await
    }

    /// The id of the login's revocation mark (kept with cached answers, so
    /// a cache hit can look for it without the AuthID).
    pub fn revoked_key(&self) -> StoreKey {
        self.vault.key(Space::Revoked)
    }

    /// Whether the login was revoked, on any instance.
    pub async fn is_revoked(&self) -> StoreResult<bool> {
        Ok(self.store.get(&self.revoked_key()).await?.is_some())
    }

    /// Marks the login revoked for `ttl` (as long as its refresh token
    /// could still be used at the provider). Only the entry's presence
    /// counts; its id is an HMAC under the login secret, so no one without
    /// an AuthID of the login can make or find it.
    pub async fn mark_revoked(&self, ttl: Duration) -> StoreResult<()> {
        self.store.put(&self.revoked_key(), vec![1], ttl).await
    }

    /// Whether the provider has accepted this `v2:` login before.
    pub async fn is_known(&self) -> StoreResult<bool> {
        Ok(self
            .store
            .get(&self.vault.key(Space::Known))
            .await?
            .is_some())
    }

    /// Notes that the provider accepted this `v2:` login, for `ttl`.
    pub async fn mark_known(&self, ttl: Duration) -> StoreResult<()> {
        self.store
            .put(&self.vault.key(Space::Known), vec![1], ttl)
            .await
    }

    /// Drops the login's records (after revocation).
    pub async fn forget(&self) -> StoreResult<()> {
        for space in [Space::Rotation, Space::Token, Space::Interrupted] {
            self.store.delete(&self.vault.key(space)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn claims() -> Claims {
        Claims::new("box.com", Sensitive::new("rt-0"), 1)
    }

    #[tokio::test]
    async fn rotations_are_versioned_and_sealed() {
        let store = MemoryStore::default();
        let c = claims();
        let r = LoginRecords::new(&store, &c);
        let ttl = Duration::from_secs(60);
        assert!(r.rotation().await.unwrap().is_none());
        let v2 = r.seal_rotation(2, &Sensitive::new("rt-2")).unwrap();
        assert!(!v2.value.windows(4).any(|w| w == b"rt-2"));
        assert!(r.put_rotation(v2, ttl).await.unwrap());
        let v1 = r.seal_rotation(1, &Sensitive::new("rt-1")).unwrap();
        assert!(!r.put_rotation(v1, ttl).await.unwrap(), "older loses");
        let newest = r
            .open_rotation(&r.rotation().await.unwrap().unwrap())
            .unwrap();
        assert_eq!(newest.generation, 2);
        assert_eq!(newest.refresh_token.expose(), "rt-2");
        let other = Claims::new("box.com", Sensitive::new("rt-0"), 1);
        assert!(
            LoginRecords::new(&store, &other)
                .rotation()
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_shared_token_is_served_only_while_fresh() {
        let store = MemoryStore::default();
        let c = claims();
        let r = LoginRecords::new(&store, &c);
        let token = SharedToken {
            access_token: Sensitive::new("at-1"),
            expires_at: 1000,
        };
        r.put_token(&token, 0).await.unwrap();
        assert_eq!(
            r.token(0).await.unwrap().unwrap().access_token.expose(),
            "at-1"
        );
        assert!(r.token(1000 - MIN_REMAINING_SECS).await.unwrap().is_none());
        // Nothing is stored for a token at the end of its life.
        let c2 = claims();
        let r2 = LoginRecords::new(&store, &c2);
        r2.put_token(&token, 1000 - MIN_REMAINING_SECS)
            .await
            .unwrap();
        assert_eq!(store.entry_count(), 1);
    }

    #[tokio::test]
    async fn the_lock_is_held_once_and_released_only_by_its_holder() {
        let store = MemoryStore::default();
        let c = claims();
        let r = LoginRecords::new(&store, &c);
        let lease = Duration::from_secs(60);
        let held = r.try_lock(lease).await.unwrap().unwrap();
        assert!(r.try_lock(lease).await.unwrap().is_none());
        assert!(!r.unlock(&LockToken([0; 16])).await.unwrap());
        assert!(r.unlock(&held).await.unwrap());
        assert!(r.try_lock(lease).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn interruption_marks_and_forgetting() {
        let store = MemoryStore::default();
        let c = claims();
        let r = LoginRecords::new(&store, &c);
        r.mark_interrupted(42, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(r.interrupted_at().await.unwrap(), Some(42));
        r.clear_interrupted().await.unwrap();
        assert_eq!(r.interrupted_at().await.unwrap(), None);
        r.mark_interrupted(42, Duration::from_secs(60))
            .await
            .unwrap();
        r.put_rotation(
            r.seal_rotation(1, &Sensitive::new("rt")).unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        r.forget().await.unwrap();
        assert_eq!(store.entry_count(), 0);
    }

    #[tokio::test]
    async fn revocation_and_known_marks_belong_to_their_login() {
        let store = MemoryStore::default();
        let c = claims();
        let r = LoginRecords::new(&store, &c);
        let ttl = Duration::from_secs(60);
        assert!(!r.is_revoked().await.unwrap());
        assert!(!r.is_known().await.unwrap());
        r.mark_revoked(ttl).await.unwrap();
        r.mark_known(ttl).await.unwrap();
        assert!(r.is_revoked().await.unwrap());
        assert!(r.is_known().await.unwrap());
        // Every AuthID of the login finds the mark; another login does not.
        let mut rotated = c.clone();
        rotated.rt = Sensitive::new("rt-9");
        assert!(
            LoginRecords::new(&store, &rotated)
                .is_revoked()
                .await
                .unwrap()
        );
        let other = claims();
        assert!(
            !LoginRecords::new(&store, &other)
                .is_revoked()
                .await
                .unwrap()
        );
        assert_eq!(r.revoked_key().space, Space::Revoked);
    }
}
