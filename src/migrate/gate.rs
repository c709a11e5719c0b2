//! What every export from the old service passes first: the memory of old
//! AuthIDs that failed lately (refused without a call), a broker-wide rate
//! and a cap on exports in progress. Anyone can make up an AuthID of the
//! old form, and each costs a call that may wait on the old service for
//! the whole upstream timeout; these bound what a flood of them costs the
//! broker and the old service, whatever addresses it comes from.
//!
//! The memory is kept in this process, not in the store: it only saves
//! calls (another instance that does not know of a failure makes one more
//! call, within its own caps), and writing each made-up AuthID to the store
//! would let anonymous requests grow the store (SPEC 8).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::AppEngineError;
use super::service::APP_ENGINE_RETRY_AFTER;

/// How long an AuthID the old service does not know is refused without a
/// call: long enough that repeating a guess costs nothing, short enough
/// that an entry restored at the old service is seen again soon.
pub const FORGET_UNKNOWN_AFTER_SECS: i64 = 600;
/// Old AuthIDs whose failure is remembered at most (one small entry each).
const REMEMBERED_FAILURES: u64 = 100_000;

/// Why an export was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// This AuthID failed lately; the same failure, without a call.
    Failed(AppEngineError),
    /// The broker-wide budget or cap of exports is reached: retry after
    /// this many seconds.
    Busy(u64),
}

/// The broker-wide limits of exports and the memory of failures.
pub struct ExportGate {
    rate: DefaultDirectRateLimiter,
    running: Semaphore,
    /// HMAC of the old AuthID's text → the failure and when it ends.
    failed: moka::sync::Cache<[u8; 32], (AppEngineError, i64)>,
    /// Key of the HMAC: random per process, so the memory names no AuthID.
    key: [u8; 32],
}

impl ExportGate {
    pub fn new(per_minute: u32, concurrency: usize) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        // The whole minute's budget may be spent at once (a burst after a
        // restart), but no more than that per minute.
        let quota = Quota::per_minute(per_minute).allow_burst(per_minute);
        Self {
            rate: RateLimiter::direct(quota),
            running: Semaphore::new(concurrency.max(1)),
            failed: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED_FAILURES)
                .time_to_live(Duration::from_secs(FORGET_UNKNOWN_AFTER_SECS as u64))
                .build(),
            key: rand::random(),
        }
    }

    fn fingerprint(&self, authid: &str) -> [u8; 32] {
        // An HMAC takes a key of any length: `new_from_slice` cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        mac.update(authid.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Admits one export of `authid` at `now`: refused while the AuthID's
    /// last failure is remembered, or while the broker-wide rate or cap is
    /// reached. Hold the permit for the length of the call.
    pub fn admit(&self, authid: &str, now: i64) -> Result<SemaphorePermit<'_>, Held> {
        let fingerprint = self.fingerprint(authid);
        if let Some((error, until)) = self.failed.get(&fingerprint) {
            if now < until {
                return Err(Held::Failed(error));
            }
            self.failed.invalidate(&fingerprint);
        }
        let permit = self.running.try_acquire().map_err(|_| Held::Busy(1))?;
        self.rate.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            Held::Busy(wait.as_secs().max(1))
        })?;
        Ok(permit)
    }

    /// Remembers a failed export of `authid`: an AuthID the old service
    /// does not know for [`FORGET_UNKNOWN_AFTER_SECS`], an old service that
    /// could not be reached for the time clients are told to wait. Errors
    /// of the broker's own setup (API key, strange answers) are the
    /// operator's to fix and say nothing about the AuthID.
    pub fn failed(&self, authid: &str, error: AppEngineError, now: i64) {
        let remember = match error {
            AppEngineError::Unknown => FORGET_UNKNOWN_AFTER_SECS,
            AppEngineError::Unavailable => APP_ENGINE_RETRY_AFTER as i64,
            _ => return,
        };
        self.failed
            .insert(self.fingerprint(authid), (error, now + remember));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_authid_is_held_until_its_failure_is_forgotten() {
        let gate = ExportGate::new(100, 4);
        let (a, b) = ("a".repeat(54), "b".repeat(54));
        gate.failed(&a, AppEngineError::Unknown, 1000);
        assert_eq!(
            gate.admit(&a, 1000).err(),
            Some(Held::Failed(AppEngineError::Unknown))
        );
        assert!(gate.admit(&b, 1000).is_ok(), "other AuthIDs pass");
        assert!(gate.admit(&a, 1000 + FORGET_UNKNOWN_AFTER_SECS).is_ok());
        gate.failed(&b, AppEngineError::Unavailable, 1000);
        assert!(gate.admit(&b, 1001).is_err());
        assert!(gate.admit(&b, 1000 + APP_ENGINE_RETRY_AFTER as i64).is_ok());
        gate.failed(&b, AppEngineError::ApiKey, 2000);
        assert!(gate.admit(&b, 2000).is_ok(), "the broker's own setup");
    }

    #[test]
    fn exports_are_capped_in_rate_and_in_progress() {
        let gate = ExportGate::new(3, 2);
        let one = gate.admit("x", 0).unwrap();
        let _two = gate.admit("y", 0).unwrap();
        assert_eq!(gate.admit("z", 0).err(), Some(Held::Busy(1)));
        drop(one);
        assert!(gate.admit("z", 0).is_ok());
        assert!(
            matches!(gate.admit("w", 0), Err(Held::Busy(s)) if s >= 1),
            "three a minute"
        );
    }
}
