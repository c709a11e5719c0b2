//! Ending a login (revocation), the refresher's side. The login's lock is
//! held while the provider is asked to end the grant (its turn in this
//! process where the store is not shared), so no refresh rotates the
//! refresh token meanwhile, and one under way ends first; the token to revoke is the newest
//! one the store knows, not only the one in the AuthID presented; and once
//! the provider has ended the grant, the login is marked revoked in the
//! store, which every instance looks for, and everything held for it is
//! dropped.

use std::sync::Arc;

use tokio::time::Instant;

use super::cache::{CacheKey, TextKey};
use super::records::{LockToken, LoginRecords, release_lock};
use super::turn::{LockWait, Waiter, in_progress};
use super::{Inner, LEASE_MARGIN, OpenedAuthId, RefreshError, Refresher};
use crate::secret::Sensitive;
use crate::store::StoreKey;
use crate::sync::KeyedGuard;

/// A login being ended. Dropped without [`Ending::finish`] or
/// [`Ending::abandon`] (a cancelled request), it releases the lock in the
/// background and changes nothing else.
pub struct Ending {
    inner: Arc<Inner>,
    login: OpenedAuthId,
    text_key: TextKey,
    /// The login's lock and its id, when the store is shared and could be
    /// reached.
    lock: Option<(StoreKey, LockToken)>,
    /// The login's turn in this process, when the store is not shared.
    _turn_here: Option<KeyedGuard<CacheKey>>,
    /// The work must end by then, before the lock's lease does.
    deadline: Instant,
    /// To revoke at the provider: the newest first, then the AuthID's own
    /// if it is older.
    refresh_tokens: Vec<Sensitive>,
}

impl Refresher {
    /// Starts ending the login of an opened AuthID: takes the login's lock
    /// (waiting for a refresh in progress on any instance) and resolves
    /// the refresh tokens to revoke. A login whose provider rotates needs
    /// the store for both; without it this fails with
    /// [`RefreshError::StoreUnavailable`] and nothing changes.
    pub async fn begin_ending(
        &self,
        text: &str,
        login: OpenedAuthId,
    ) -> Result<Ending, RefreshError> {
        let inner = Arc::clone(&self.inner);
        let records = LoginRecords::new(inner.deps.store.as_ref(), &login.claims);
        let started = Instant::now();
        let (lock, turn_here) = if inner.shared_store {
            let lock = inner.lock_for_ending(&records, &login).await?;
            (lock.map(|token| (records.lock_key(), token)), None)
        } else {
            // A rotation under way here ends first; its token is the
            // newest read below.
            (None, Some(inner.turn_here(&login).await?))
        };
        let newest = if login.rotates() {
            match inner.newest(&records, &login).await {
                Ok(newest) => newest.refresh_token,
                Err(e) => {
                    if let Some((key, token)) = &lock {
                        let _ = release_lock(inner.deps.store.as_ref(), key, token).await;
                    }
                    return Err(e);
                }
            }
        } else {
            login.claims.rt.clone()
        };
        let mut refresh_tokens = vec![newest];
        if refresh_tokens[0] != login.claims.rt {
            refresh_tokens.push(login.claims.rt.clone());
        }
        drop(records);
        Ok(Ending {
            deadline: started + inner.lease - LEASE_MARGIN,
            text_key: inner.cache.text_key(text.trim()),
            inner,
            login,
            lock,
            _turn_here: turn_here,
            refresh_tokens,
        })
    }
}

impl Inner {
    /// Takes the login's lock, waiting as long as a refresh may hold it.
    /// `None`: the store failed and the provider does not rotate, so the
    /// revocation goes on without it.
    async fn lock_for_ending(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
    ) -> Result<Option<LockToken>, RefreshError> {
        match self.wait_for_lock(records, login, Waiter::Revocation).await {
            LockWait::Taken { token, .. } => Ok(Some(token)),
            // A revocation does not look for answers; either way the
            // login is still held elsewhere.
            LockWait::GaveUp | LockWait::Answered(_) => Err(in_progress()),
            LockWait::Failed { what, error } => self
                .store_failed(login.rotates(), what, &error)
                .map(|()| None),
        }
    }
}

impl Ending {
    /// The refresh tokens to revoke at the provider, the newest first.
    pub fn refresh_tokens(&self) -> &[Sensitive] {
        &self.refresh_tokens
    }

    /// When the calls to the provider must have ended.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn login(&self) -> &OpenedAuthId {
        &self.login
    }

    /// The grant is ended at the provider (or the provider offers no way
    /// to end it): every AuthID of the login is refused from now on, on
    /// every instance, and what was held for it is dropped. Fails only
    /// when the store did not take the revocation mark; the login is then
    /// left as it was in the store.
    pub async fn finish(mut self) -> Result<(), RefreshError> {
        let inner = Arc::clone(&self.inner);
        let marked = {
            let login = &self.login;
            inner.cache.forget(&self.text_key, &login.key);
            inner.interrupted.invalidate(&login.key);
            let records = LoginRecords::new(inner.deps.store.as_ref(), &login.claims);
            match records
                .mark_revoked(login.provider.refresh_token_lifetime)
                .await
            {
                Ok(()) => {
                    inner.unrecorded.invalidate(&records.rotation_key().id);
                    if let Err(e) = records.forget().await {
                        // The mark is what counts; the rest expires.
                        inner.deps.outage.failed("forgetting a revoked login", &e);
                    }
                    inner.deps.migrator.forget(&login.claims).await;
                    Ok(())
                }
                Err(e) => {
                    inner.deps.outage.failed("marking a login revoked", &e);
                    Err(RefreshError::StoreUnavailable)
                }
            }
        };
        self.release().await;
        marked
    }

    /// The provider did not end the grant: the login stays as it was.
    pub async fn abandon(mut self) {
        self.release().await;
    }

    async fn release(&mut self) {
        if let Some((key, token)) = self.lock.take() {
            if let Err(e) = release_lock(self.inner.deps.store.as_ref(), &key, &token).await {
                // The lease ends it anyway.
                self.inner
                    .deps
                    .outage
                    .failed("releasing a login's lock after revoking", &e);
            }
        }
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        let Some((key, token)) = self.lock.take() else {
            return;
        };
        let store = Arc::clone(&self.inner.deps.store);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = release_lock(store.as_ref(), &key, &token).await;
            });
        }
    }
}
