//! Per-key counts since the process started: AuthIDs opened, opened for
//! the first time without a carry-over (so an operator sees when a key is
//! safe to retire), served from a carry-over, and refused because their key
//! is retired with no carry-over. They survive keyring reloads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// The counts of one key.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyCounts {
    /// AuthIDs opened with the key.
    pub opened: u64,
    /// AuthIDs of a non-primary key opened while not yet carried over.
    pub first_opened: u64,
    /// AuthIDs of a key no longer loaded served from their carry-over.
    pub carried_over: u64,
    /// AuthIDs of a retired key refused: no carry-over, or compromised.
    pub refused: u64,
}

/// Which count to add to.
#[derive(Debug, Clone, Copy)]
pub enum KeyEvent {
    Opened,
    FirstOpened,
    CarriedOver,
    Refused,
}

#[derive(Debug, Default)]
pub struct KeyStats {
    counts: Mutex<HashMap<String, KeyCounts>>,
}

impl KeyStats {
    /// Adds one to a count of `kid`. Callers pass only kids the broker
    /// holds or held (never one an AuthID made up), so the map stays small.
    pub fn record(&self, kid: &str, event: KeyEvent) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let counts = map.entry(kid.to_string()).or_default();
        let count = match event {
            KeyEvent::Opened => &mut counts.opened,
            KeyEvent::FirstOpened => &mut counts.first_opened,
            KeyEvent::CarriedOver => &mut counts.carried_over,
            KeyEvent::Refused => &mut counts.refused,
        };
        *count += 1;
    }

    pub fn record_open(&self, kid: &str) {
        self.record(kid, KeyEvent::Opened);
    }

    pub fn counts(&self, kid: &str) -> KeyCounts {
        let map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        map.get(kid).copied().unwrap_or_default()
    }

    pub fn opened(&self, kid: &str) -> u64 {
        self.counts(kid).opened
    }

    /// Every key id seen so far with its opened count, sorted.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.all().into_iter().map(|(k, c)| (k, c.opened)).collect()
    }

    /// Every key id seen so far with all its counts, sorted.
    pub fn all(&self) -> BTreeMap<String, KeyCounts> {
        let map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_kept_apart_per_key_and_event() {
        let stats = KeyStats::default();
        stats.record_open("a");
        stats.record("a", KeyEvent::FirstOpened);
        stats.record("a", KeyEvent::CarriedOver);
        stats.record("a", KeyEvent::CarriedOver);
        stats.record("b", KeyEvent::Refused);
        assert_eq!(
            stats.counts("a"),
            KeyCounts {
                opened: 1,
                first_opened: 1,
                carried_over: 2,
                refused: 0
            }
        );
        assert_eq!(stats.counts("b").refused, 1);
        assert_eq!(stats.snapshot()["a"], 1);
        assert_eq!(stats.all().len(), 2);
    }
}
