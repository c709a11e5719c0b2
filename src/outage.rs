//! Noticing that the store cannot be reached: one warning per interval
//! instead of one per request, and a short pause during which work that
//! can do without the store (logins of providers that do not rotate,
//! shared access tokens, backoff windows) skips it instead of waiting for
//! each call to time out.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// At most one warning per this long.
const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// After a failure, optional store calls are skipped this long.
const SKIP_FOR: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    last_logged: Option<Instant>,
    suppressed: u64,
    skip_until: Option<Instant>,
}

/// Shared by every part that talks to the store.
#[derive(Default)]
pub struct StoreOutage {
    state: Mutex<State>,
}

impl StoreOutage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failed store call; `what` says what was being done (no
    /// key, no value).
    pub fn failed(&self, what: &'static str, error: &StoreError) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.skip_until = Some(now + SKIP_FOR);
        let due = state
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= LOG_INTERVAL);
        if due {
            let suppressed = std::mem::take(&mut state.suppressed);
            state.last_logged = Some(now);
            drop(state);
            tracing::warn!(
                error = %error,
                kind = error.kind(),
                doing = what,
                similar_failures_not_logged = suppressed,
                "the store failed; logins of providers that do not rotate go on without it, rotating ones wait"
            );
        } else {
            state.suppressed += 1;
        }
    }

    /// True shortly after a failure: optional store calls are skipped.
    pub fn skipping(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.skip_until.is_some_and(|t| Instant::now() < t)
    }

    /// A store call succeeded: optional calls resume at once.
    pub fn recovered(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.skip_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_pauses_optional_calls_until_a_success() {
        let o = StoreOutage::new();
        assert!(!o.skipping());
        o.failed("testing", &StoreError::Timeout);
        o.failed("testing", &StoreError::Timeout);
        assert!(o.skipping());
        o.recovered();
        assert!(!o.skipping());
    }
}
