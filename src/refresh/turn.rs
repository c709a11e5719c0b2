//! A login's turn at the provider across instances: its lock in the store,
//! polled while another instance holds it. A refresh waiting for the lock
//! looks for the holder's answer between tries; a revocation only waits.

use std::time::Duration;

use tokio::time::Instant;

use super::cache::CacheKey;
use super::records::{LockToken, LoginRecords, SharedToken};
use super::{Flown, Inner, LEASE_MARGIN, OpenedAuthId, RefreshError};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::sync::KeyedGuard;

/// How often an instance waiting for another's answer looks again: first
/// after this, doubling up to [`LAST_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);
const LAST_POLL: Duration = Duration::from_millis(250);
/// `Retry-After` when another instance is still refreshing the login.
pub(super) const IN_PROGRESS_RETRY_AFTER: u64 = 2;

/// How a flight got its turn at the provider.
pub(super) enum Turn {
    /// This instance holds the login's lock; the call must end by
    /// `deadline`.
    Locked { token: LockToken, deadline: Instant },
    /// This process is the store's only user and holds the login's turn
    /// in it.
    Here(KeyedGuard<CacheKey>),
    /// No lock: the store failed and the provider does not rotate.
    Unlocked,
    /// Another instance answered while this one waited.
    Answered(Flown),
}

/// Who waits for a login's lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiter {
    /// A refresh: its wait is counted, and between tries it looks for the
    /// holder's answer.
    Refresh,
    /// A revocation: it needs the lock itself.
    Revocation,
}

/// How a wait for a login's lock ended.
pub(super) enum LockWait {
    /// This instance holds the lock; its lease runs from `asked`.
    Taken { token: LockToken, asked: Instant },
    /// The holder kept it longer than a wait may last.
    GaveUp,
    /// The holder's answer, found between tries (refreshes only).
    Answered(SharedToken),
    /// The store failed while doing `what`.
    Failed {
        what: &'static str,
        error: StoreError,
    },
}

impl Inner {
    /// Takes the login's lock, or waits for the instance holding it to
    /// answer (or to give the lock up).
    pub(super) async fn take_turn(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
    ) -> Result<Turn, RefreshError> {
        if !self.shared_store {
            return self.turn_here(login).await.map(Turn::Here);
        }
        if self.skip_store(login) {
            return Ok(Turn::Unlocked);
        }
        let rotates = login.rotates();
        match self.wait_for_lock(records, login, Waiter::Refresh).await {
            LockWait::Taken { token, asked } => Ok(Turn::Locked {
                token,
                deadline: asked + self.lease - LEASE_MARGIN,
            }),
            // The holder is slow or gone. A token that does not rotate
            // cannot be spent by a second call; one that does must wait
            // for the lease.
            LockWait::GaveUp if !rotates => Ok(Turn::Unlocked),
            LockWait::GaveUp => Err(in_progress()),
            LockWait::Answered(token) => self
                .serve_shared(records, login, token)
                .await
                .map(Turn::Answered),
            LockWait::Failed { what, error } => self
                .store_failed(rotates, what, &error)
                .map(|()| Turn::Unlocked),
        }
    }

    /// The login's turn in this process (the store is not shared), waited
    /// for as long as a holder may keep it: a revocation, or a call whose
    /// caller went away.
    pub(super) async fn turn_here(
        &self,
        login: &OpenedAuthId,
    ) -> Result<KeyedGuard<CacheKey>, RefreshError> {
        tokio::time::timeout(self.wait_bound, self.turns_here.lock(login.key))
            .await
            .map_err(|_| in_progress())
    }

    /// Tries the login's lock until it is free, pausing [`FIRST_POLL`]
    /// doubling to [`LAST_POLL`] between tries, for as long as a holder
    /// may keep it ([`Inner::wait_bound`]).
    pub(super) async fn wait_for_lock(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        waiter: Waiter,
    ) -> LockWait {
        let give_up = Instant::now() + self.wait_bound;
        let mut pause = FIRST_POLL;
        let mut waited = false;
        loop {
            let asked = Instant::now();
            match records.try_lock(self.lease).await {
                Ok(Some(token)) => {
                    self.deps.outage.recovered();
                    return LockWait::Taken { token, asked };
                }
                Ok(None) => {}
                Err(error) => {
                    let what = match waiter {
                        Waiter::Refresh => "taking a login's refresh lock",
                        Waiter::Revocation => "taking a login's lock to revoke it",
                    };
                    return LockWait::Failed { what, error };
                }
            }
            if !waited && waiter == Waiter::Refresh {
                self.deps
                    .metrics
                    .store_lock_waits
                    .get_or_create(&Metrics::provider(&login.provider.id))
                    .inc();
            }
            waited = true;
            if Instant::now() + pause > give_up {
                return LockWait::GaveUp;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LAST_POLL);
            if waiter == Waiter::Refresh {
                match records.token(self.deps.clock.now()).await {
                    Ok(Some(token)) => return LockWait::Answered(token),
                    Ok(None) => {}
                    Err(error) => {
                        return LockWait::Failed {
                            what: "waiting for another instance's answer",
                            error,
                        };
                    }
                }
            }
        }
    }
}

/// Another instance holds the login past the wait.
pub(super) fn in_progress() -> RefreshError {
    RefreshError::InProgress {
        retry_after: IN_PROGRESS_RETRY_AFTER,
    }
}
