//! The spaces the embedded store also keeps in memory, as their keys and
//! expiry instants: exact, because this process is the file's only writer
//! (redb locks it) and the writer thread updates the memory after each
//! commit, before anyone hears back. A read of such a space whose key is
//! not held is answered "absent" at once, with no read transaction and no
//! hand-off to the blocking pool: the revocation mark that every cache miss
//! looks for and almost never finds. Revocations are rare, so the memory
//! stays small.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::{Mutex, PoisonError};

use redb::{Database, ReadableDatabase};

use super::format::{ENTRIES, expires_at};
use crate::store::Space;

/// The spaces kept in memory.
const MIRRORED: [Space; 1] = [Space::Revoked];

/// The key prefix of a space in the file (`space:`).
fn prefix(space: Space) -> Vec<u8> {
    let mut p = space.name().as_bytes().to_vec();
    p.push(b':');
    p
}

/// Whether the file key belongs to a mirrored space.
pub(super) fn is_mirrored(key: &[u8]) -> bool {
    MIRRORED.iter().any(|s| {
        let name = s.name().as_bytes();
        key.len() > name.len() + 1 && key.starts_with(name) && key[name.len()] == b':'
    })
}

/// The held keys of the mirrored spaces and their expiry (Unix ms).
#[derive(Default)]
pub(super) struct Mirror {
    held: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Mirror {
    /// Reads the mirrored spaces' live entries from the file.
    pub(super) fn load(db: &Database, now: u64) -> Result<Self, redb::Error> {
        let mirror = Self::default();
        let txn = db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        {
            let mut held = mirror.lock();
            for space in MIRRORED {
                let start = prefix(space);
                let mut end = start.clone();
                // The byte after `:` bounds the space's keys.
                if let Some(last) = end.last_mut() {
                    *last += 1;
                }
                let range = (
                    Bound::Included(start.as_slice()),
                    Bound::Excluded(end.as_slice()),
                );
                for item in table.range::<&[u8]>(range)? {
                    let (key, value) = item?;
                    if let Ok(expiry) = expires_at(value.value())
                        && expiry > now
                    {
                        held.insert(key.value().to_vec(), expiry);
                    }
                }
            }
        }
        Ok(mirror)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, u64>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the file may hold a live entry under `key` (a mirrored
    /// space's key): false means it certainly does not.
    pub(super) fn may_hold(&self, key: &[u8], now: u64) -> bool {
        self.lock().get(key).is_some_and(|&expiry| expiry > now)
    }

    /// A committed write of `record` (expiry first) under `key`.
    pub(super) fn hold(&self, key: &[u8], record: &[u8]) {
        if is_mirrored(key)
            && let Ok(expiry) = expires_at(record)
        {
            self.lock().insert(key.to_vec(), expiry);
        }
    }

    /// A committed removal of `key`.
    pub(super) fn drop_key(&self, key: &[u8]) {
        if is_mirrored(key) {
            self.lock().remove(key);
        }
    }

    /// Forgets what has expired (the sweep removes it from the file).
    pub(super) fn prune(&self, now: u64) {
        self.lock().retain(|_, expiry| *expiry > now);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_mirrored_spaces_keys_are_kept() {
        assert!(is_mirrored(b"revoked:0123"));
        assert!(!is_mirrored(b"revoked:"), "no id");
        assert!(!is_mirrored(b"revokedx:0123"));
        assert!(!is_mirrored(b"rotation:0123"));
        let mirror = Mirror::default();
        let record = super::super::format::stored(2_000, b"x");
        mirror.hold(b"rotation:1", &record);
        mirror.hold(b"revoked:1", &record);
        assert_eq!(mirror.len(), 1);
        assert!(mirror.may_hold(b"revoked:1", 1_999));
        assert!(!mirror.may_hold(b"revoked:1", 2_000), "expired");
        assert!(!mirror.may_hold(b"revoked:2", 0));
        mirror.prune(1_000);
        assert_eq!(mirror.len(), 1);
        mirror.drop_key(b"revoked:1");
        assert_eq!(mirror.len(), 0);
        mirror.hold(b"revoked:1", &record);
        mirror.prune(2_000);
        assert_eq!(mirror.len(), 0, "pruned once expired");
    }
}
