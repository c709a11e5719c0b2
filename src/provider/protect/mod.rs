//! Protecting providers: per-provider backoff that obeys `Retry-After`, the
//! broker's own per-provider quota (GCRA, `governor`), and a bulkhead that
//! bounds concurrent calls to each provider so a slow one cannot tie up
//! the others. Refreshes, code exchanges, login-token logins and
//! revocations all pass the same gate. `v2:` AuthIDs never seen
//! before also pass a small quota of their own first: anyone can make them
//! up, and each costs a call with the broker's credentials, so a flood of
//! them may spend at most a tenth of the provider's budget.
//!
//! Backoff windows are shared through the store, so a `Retry-After` seen
//! by one instance holds every instance: each window is kept here and
//! written to the store; before a call to the provider, a registration
//! that is not blocked here is looked up there. Quota and bulkhead stay per
//! instance (they bound this process's share of the work).
//!
//! A window read from the store is authenticated (`window.rs`), capped at
//! `BACKOFF_MAX` from now, and believed here for at most
//! [`SHARED_RECHECK_SECS`] before it is read again, so a window deleted
//! from the store stops holding every instance within seconds.

mod window;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Catalogue, Provider, RateLimit, Registration};
use crate::outage::StoreOutage;
use crate::store::{Space, Store, StoreKey};
use window::WindowKey;

/// How long a window read from the store is believed before it is read
/// again (application seconds).
pub const SHARED_RECHECK_SECS: i64 = 5;

/// Backoff without `Retry-After`: 1 s doubling to this, with jitter.
const MAX_EXPONENTIAL_BACKOFF_SECS: u64 = 60;
/// `v2:` AuthIDs never seen before get this fraction of a provider's
/// quota (rate and burst), at least one call per second.
const UNKNOWN_V2_SHARE: u32 = 10;

/// Why a call to a provider was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The provider throttled us; it is blocked for this many seconds.
    Blocked(u64),
    /// The broker's own quota for the provider is spent for now.
    Quota(u64),
    /// Too many calls to the provider are already waiting.
    Busy(u64),
    /// The small budget of `v2:` AuthIDs never seen before is spent.
    UnknownV2(u64),
}

impl Refusal {
    pub fn retry_after(self) -> u64 {
        match self {
            Self::Blocked(s) | Self::Quota(s) | Self::Busy(s) | Self::UnknownV2(s) => s.max(1),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Blocked(_) => "backoff",
            Self::Quota(_) => "quota",
            Self::Busy(_) => "busy",
            Self::UnknownV2(_) => "legacy_quota",
        }
    }
}

/// Tunables, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct ProtectionSettings {
    /// Longest block a `Retry-After` can impose.
    pub max_backoff: Duration,
    /// Concurrent calls per provider.
    pub concurrency: usize,
    /// How long a call may wait for a free slot.
    pub queue_wait: Duration,
}

struct Gate {
    /// The registration's backoff entry in the store.
    key: StoreKey,
    /// Authenticates the entry's value.
    window_key: WindowKey,
    quota: DefaultDirectRateLimiter,
    /// Drawn on first by `v2:` AuthIDs never seen before.
    unknown_v2: DefaultDirectRateLimiter,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    backoff: Mutex<Backoff>,
    /// The store's window was read since start. Where this process is the
    /// store's only user, every later window is one it set itself (and
    /// holds here), so the store is not asked again.
    read_once: AtomicBool,
}

#[derive(Default)]
struct Backoff {
    /// The end of the window this instance was given by the provider.
    blocked_until: i64,
    consecutive: u32,
    /// The end of the window last read from the store, and when it was
    /// read: believed only until [`SHARED_RECHECK_SECS`] later.
    shared_until: i64,
    shared_read_at: Option<i64>,
}

impl Backoff {
    fn shared_fresh(&self, now: i64) -> bool {
        self.shared_read_at
            .is_some_and(|at| now >= at && now < at.saturating_add(SHARED_RECHECK_SECS))
    }

    /// Seconds left of the window this instance knows, at `now`.
    fn left(&self, now: i64) -> Option<u64> {
        let mut until = self.blocked_until;
        if self.shared_fresh(now) {
            until = until.max(self.shared_until);
        }
        (until > now).then(|| until.saturating_sub(now).unsigned_abs())
    }
}

/// Gates are per registration (token endpoint and client id): providers
/// that share one, like the Google and Microsoft families, are throttled
/// together, because the provider counts them together.
pub struct Protection {
    gates: HashMap<String, Arc<Gate>>,
    settings: ProtectionSettings,
    store: Arc<dyn Store>,
    outage: Arc<StoreOutage>,
    /// No other process uses the store (the embedded one).
    store_is_ours: bool,
}

/// The store entry of a registration's backoff window. The registration
/// (token endpoint and client id) is no secret and the value is only a
/// time, so a hash is enough to name it.
fn backoff_key(registration: &str) -> StoreKey {
    let id = Sha256::new()
        .chain_update(b"oauth-broker backoff\0")
        .chain_update(registration.as_bytes())
        .finalize();
    StoreKey::new(Space::Backoff, id.into())
}

/// The name callers give a registration's gate: the provider id for the
/// entry's own client, the id and client id for a previous one.
pub fn gate_name(provider: &Provider, registration: &Registration<'_>) -> String {
    if registration.previous {
        format!("{} {}", provider.id, registration.client_id)
    } else {
        provider.id.clone()
    }
}

fn quota(limit: RateLimit) -> Quota {
    let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_second).allow_burst(burst)
}

fn unknown_v2_quota(limit: RateLimit) -> Quota {
    quota(RateLimit {
        per_second: limit.per_second / UNKNOWN_V2_SHARE,
        burst: limit.burst / UNKNOWN_V2_SHARE,
    })
}

fn wait_secs(
    not_until: &governor::NotUntil<<DefaultClock as governor::clock::Clock>::Instant>,
) -> u64 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    (wait.as_secs_f64().ceil() as u64).max(1)
}

impl Protection {
    pub fn new(
        catalogue: &Catalogue,
        settings: ProtectionSettings,
        store: Arc<dyn Store>,
        outage: Arc<StoreOutage>,
    ) -> Self {
        let mut by_registration: HashMap<String, Arc<Gate>> = HashMap::new();
        let mut gates = HashMap::new();
        for p in catalogue.providers() {
            let registrations = std::iter::once(p.current()).chain(
                p.previous_clients
                    .iter()
                    .filter_map(|c| p.registration(Some(&c.client_id))),
            );
            for r in registrations {
                let registration = format!("{} {}", r.token_url, r.client_id);
                let key = backoff_key(&registration);
                let window_key = WindowKey::new(r.client_secret.expose(), &registration);
                let gate = by_registration.entry(registration).or_insert_with(|| {
                    Arc::new(Gate {
                        key,
                        window_key,
                        quota: RateLimiter::direct(quota(p.rate_limit)),
                        unknown_v2: RateLimiter::direct(unknown_v2_quota(p.rate_limit)),
                        permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
                        waiting: AtomicUsize::new(0),
                        backoff: Mutex::new(Backoff::default()),
                        read_once: AtomicBool::new(false),
                    })
                });
                gates.insert(gate_name(p, &r), Arc::clone(gate));
            }
        }
        Self {
            gates,
            settings,
            store_is_ours: store.kind() == "embedded",
            store,
            outage,
        }
    }

    /// Seconds the provider stays blocked, if this instance knows it is.
    pub fn blocked(&self, gate_name: &str, now: i64) -> Option<u64> {
        let gate = self.gates.get(gate_name)?;
        let backoff = gate.backoff.lock().unwrap_or_else(|e| e.into_inner());
        backoff.left(now)
    }

    /// Seconds the provider stays blocked, if this instance or any other
    /// on the store knows it is. A window found in a shared store is
    /// believed here for a few seconds. Without the store, this instance's
    /// knowledge is the answer; on a store only this process uses, the
    /// store is read once (for a window set before a restart), since every
    /// later window is this process's own.
    pub async fn blocked_anywhere(&self, gate_name: &str, now: i64) -> Option<u64> {
        let gate = self.gates.get(gate_name)?;
        {
            let backoff = gate.backoff.lock().unwrap_or_else(|e| e.into_inner());
            if backoff.blocked_until > now || backoff.shared_fresh(now) {
                return backoff.left(now);
            }
        }
        if self.outage.skipping() || (self.store_is_ours && gate.read_once.load(Ordering::Relaxed))
        {
            return None;
        }
        let latest = now.saturating_add(self.max_backoff_secs());
        let until = match self.store.get(&gate.key).await {
            Ok(value) => value
                .and_then(|v| gate.window_key.open(&gate.key, &v, latest))
                .unwrap_or(0),
            Err(e) => {
                self.outage
                    .failed("reading a provider's backoff window", &e);
                return None;
            }
        };
        let mut backoff = gate.backoff.lock().unwrap_or_else(|e| e.into_inner());
        if self.store_is_ours {
            backoff.blocked_until = backoff.blocked_until.max(until);
            // Set under the lock, after the window is kept here.
            gate.read_once.store(true, Ordering::Relaxed);
        } else {
            backoff.shared_until = until;
            backoff.shared_read_at = Some(now);
        }
        backoff.left(now)
    }

    fn max_backoff_secs(&self) -> i64 {
        i64::try_from(self.settings.max_backoff.as_secs().max(1)).unwrap_or(i64::MAX)
    }

    /// Admits one call: not blocked, within quota, and a free slot (waited
    /// for at most `queue_wait`, with a bounded queue). Hold the permit for
    /// the length of the call.
    pub async fn admit(
        &self,
        gate_name: &str,
        now: i64,
    ) -> Result<Option<OwnedSemaphorePermit>, Refusal> {
        let Some(gate) = self.gates.get(gate_name) else {
            return Ok(None);
        };
        if let Some(left) = self.blocked(gate_name, now) {
            return Err(Refusal::Blocked(left));
        }
        if let Err(not_until) = gate.quota.check() {
            return Err(Refusal::Quota(wait_secs(&not_until)));
        }
        if let Ok(permit) = Arc::clone(&gate.permits).try_acquire_owned() {
            return Ok(Some(permit));
        }
        // Queue behind the calls in progress, but only so many and so long.
        let limit = self.settings.concurrency.max(1) * 4;
        if gate.waiting.fetch_add(1, Ordering::SeqCst) >= limit {
            gate.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Refusal::Busy(1));
        }
        let acquired = tokio::time::timeout(
            self.settings.queue_wait,
            Arc::clone(&gate.permits).acquire_owned(),
        )
        .await;
        gate.waiting.fetch_sub(1, Ordering::SeqCst);
        match acquired {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(Refusal::Busy(1)),
        }
    }

    /// Takes one call from the budget of `v2:` AuthIDs never seen before;
    /// such a call then passes [`Protection::admit`] like any other.
    pub fn admit_unknown_v2(&self, gate_name: &str) -> Result<(), Refusal> {
        let Some(gate) = self.gates.get(gate_name) else {
            return Ok(());
        };
        gate.unknown_v2
            .check()
            .map_err(|not_until| Refusal::UnknownV2(wait_secs(&not_until)))
    }

    /// The provider throttled: block it for `retry_after` (capped), or for
    /// an exponential, jittered backoff when it named no time, here and
    /// for every instance on the store. Returns the seconds blocked.
    pub async fn throttled(&self, gate_name: &str, retry_after: Option<Duration>, now: i64) -> u64 {
        let Some(gate) = self.gates.get(gate_name) else {
            return 1;
        };
        let (seconds, until) = self.throttled_here(gate, retry_after, now);
        let shared = self
            .store
            .put(
                &gate.key,
                gate.window_key.seal(&gate.key, until),
                Duration::from_secs(seconds),
            )
            .await;
        if let Err(e) = shared {
            self.outage
                .failed("sharing a provider's backoff window", &e);
        }
        seconds
    }

    /// Blocks the registration here; returns the seconds and the end.
    fn throttled_here(&self, gate: &Gate, retry_after: Option<Duration>, now: i64) -> (u64, i64) {
        let mut backoff = gate.backoff.lock().unwrap_or_else(|e| e.into_inner());
        backoff.consecutive = backoff.consecutive.saturating_add(1);
        let seconds = match retry_after {
            Some(d) => d.as_secs().max(1),
            None => {
                let base = 1u64 << backoff.consecutive.saturating_sub(1).min(6);
                let base = base.min(MAX_EXPONENTIAL_BACKOFF_SECS);
                rand::thread_rng().gen_range(base.div_ceil(2)..=base)
            }
        }
        .min(self.max_backoff_secs().unsigned_abs());
        let until = now.saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX));
        backoff.blocked_until = backoff.blocked_until.max(until);
        (
            backoff.blocked_until.saturating_sub(now).unsigned_abs(),
            backoff.blocked_until,
        )
    }

    /// A call went through: the provider is healthy again.
    pub fn succeeded(&self, gate_name: &str) {
        if let Some(gate) = self.gates.get(gate_name) {
            gate.backoff
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .consecutive = 0;
        }
    }

    /// Registrations blocked right now.
    pub fn active_backoffs(&self, now: i64) -> usize {
        let mut seen: Vec<*const Gate> = Vec::new();
        for (id, gate) in &self.gates {
            let ptr = Arc::as_ptr(gate);
            if !seen.contains(&ptr) && self.blocked(id, now).is_some() {
                seen.push(ptr);
            }
        }
        seen.len()
    }
}

#[cfg(test)]
mod tests;
