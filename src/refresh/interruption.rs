//! Interruption: a single-use refresh whose answer was lost rests the
//! login for a while, here and on every instance (the provider may have
//! spent the token), instead of trying the same token again at once.

use std::time::Duration;

use super::records::LoginRecords;
use super::{INTERRUPTED_COOLDOWN_SECS, Inner, OpenedAuthId, RefreshError};

impl Inner {
    pub(super) fn resting_here(&self, login: &OpenedAuthId, now: i64) -> Result<(), RefreshError> {
        match self.interrupted.get(&login.key) {
            Some(at) if at + INTERRUPTED_COOLDOWN_SECS > now => Err(RefreshError::Interrupted {
                retry_after: (at + INTERRUPTED_COOLDOWN_SECS - now) as u64,
            }),
            _ => Ok(()),
        }
    }

    /// The rest the store holds for a single-use login: an error while it
    /// lasts; `true` when a rest that ended is still marked (the next
    /// answer clears it).
    pub(super) async fn rest_over(&self, records: &LoginRecords<'_>) -> Result<bool, RefreshError> {
        match records.interrupted_at().await {
            Ok(Some(at)) => {
                let left = at + INTERRUPTED_COOLDOWN_SECS - self.deps.clock.now();
                if left > 0 {
                    return Err(RefreshError::Interrupted {
                        retry_after: left as u64,
                    });
                }
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => self
                .store_failed(true, "reading a login's rest", &e)
                .map(|()| false),
        }
    }

    /// A single-use refresh whose answer was lost rests the login, on
    /// every instance; an answered one ends the rest.
    pub(super) async fn note_interruption(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        lost: bool,
        marked: bool,
        now: i64,
    ) {
        let result = if lost {
            self.interrupted.insert(login.key, now);
            let ttl = Duration::from_secs(2 * INTERRUPTED_COOLDOWN_SECS as u64);
            records.mark_interrupted(now, ttl).await
        } else {
            self.interrupted.invalidate(&login.key);
            if !marked {
                return;
            }
            records.clear_interrupted().await
        };
        if let Err(e) = result {
            self.deps.outage.failed("noting a lost answer", &e);
        }
    }
}
