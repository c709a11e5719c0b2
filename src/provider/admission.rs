//! The one way to call a provider: a [`Guard`] for the registration's gate
//! checks backoff windows and budgets, [`Guard::enter`] admits the call
//! (quota and a bulkhead slot), and [`Admission::settle`] records what the
//! provider answered (a throttle blocks the gate on every instance, a
//! success ends the backoff). Refusals and throttles are counted here, so
//! refreshes, code exchanges, login-token logins and revocations count
//! them alike.

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::{Protection, Refusal, UpstreamError};
use crate::metrics::Metrics;

/// The gate of one registration, for calls made for one provider (the
/// label of the throttle metric).
pub struct Guard<'a> {
    protection: &'a Protection,
    metrics: &'a Metrics,
    provider: &'a str,
    gate: &'a str,
}

/// One admitted call. Hold it for the length of the call and settle it
/// with the outcome; dropped unsettled (the call was not made, or was cut
/// short), it only frees its slot.
pub struct Admission<'a> {
    guard: Guard<'a>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Protection {
    /// The guard of `gate` (see [`super::protect::gate_name`]) for calls
    /// made for `provider`.
    pub fn guard<'a>(
        &'a self,
        metrics: &'a Metrics,
        provider: &'a str,
        gate: &'a str,
    ) -> Guard<'a> {
        Guard {
            protection: self,
            metrics,
            provider,
            gate,
        }
    }
}

impl<'a> Guard<'a> {
    fn refused(&self, refusal: Refusal) -> Refusal {
        self.metrics.throttle(self.provider, refusal.label());
        refusal
    }

    /// Refuses while this instance knows the gate is blocked (no store
    /// call: a cheap check before any other work).
    pub fn blocked_here(&self, now: i64) -> Result<(), Refusal> {
        match self.protection.blocked(self.gate, now) {
            Some(left) => Err(self.refused(Refusal::Blocked(left))),
            None => Ok(()),
        }
    }

    /// Refuses while the gate is blocked, here or on any instance.
    pub async fn blocked_anywhere(&self, now: i64) -> Result<(), Refusal> {
        match self.protection.blocked_anywhere(self.gate, now).await {
            Some(left) => Err(self.refused(Refusal::Blocked(left))),
            None => Ok(()),
        }
    }

    /// Draws on the small budget of `v2:` AuthIDs never seen before.
    pub fn draw_unknown_v2(&self) -> Result<(), Refusal> {
        self.protection
            .admit_unknown_v2(self.gate)
            .map_err(|refusal| self.refused(refusal))
    }

    /// Admits one call: within quota and with a bulkhead slot, waited for
    /// until `deadline` at most (if given; the slot wait is bounded
    /// anyway).
    pub async fn enter(
        self,
        now: i64,
        deadline: Option<Instant>,
    ) -> Result<Admission<'a>, Refusal> {
        let admitted = match deadline {
            Some(deadline) => {
                tokio::time::timeout_at(deadline, self.protection.admit(self.gate, now))
                    .await
                    .unwrap_or(Err(Refusal::Busy(1)))
            }
            None => self.protection.admit(self.gate, now).await,
        };
        match admitted {
            Ok(permit) => Ok(Admission {
                guard: self,
                _permit: permit,
            }),
            Err(refusal) => Err(self.refused(refusal)),
        }
    }

    /// Not blocked anywhere, then [`Guard::enter`]: the admission of a call
    /// that has nothing to check in between.
    pub async fn pass(self, now: i64) -> Result<Admission<'a>, Refusal> {
        self.blocked_anywhere(now).await?;
        self.enter(now, None).await
    }
}

impl Admission<'_> {
    /// Records the outcome of the call and frees its slot. A throttle
    /// blocks the gate here and in the store; returns the seconds it is
    /// blocked for then.
    pub async fn settle<T>(self, outcome: &Result<T, UpstreamError>, now: i64) -> Option<u64> {
        let Admission { guard, _permit } = self;
        drop(_permit);
        match outcome {
            Ok(_) => {
                guard.protection.succeeded(guard.gate);
                None
            }
            Err(UpstreamError::Throttled { retry_after }) => {
                let blocked = guard
                    .protection
                    .throttled(guard.gate, *retry_after, now)
                    .await;
                guard.metrics.throttle(guard.provider, "provider");
                tracing::warn!(provider = %guard.provider, seconds = blocked, "provider throttled; calls held back");
                Some(blocked)
            }
            Err(_) => None,
        }
    }
}
