//! The embedded store's on-disk format: one table whose keys are the
//! space's name, `:` and the 32-byte id, and whose values are the expiry
//! instant (wall-clock milliseconds, so it survives a restart) followed by
//! the entry as `record` lays it out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::TableDefinition;

use crate::store::record::Record;
use crate::store::{StoreError, StoreKey, StoreResult, ttl_millis};

/// Key: `space:` and the 32-byte id. Value: expiry (Unix milliseconds,
/// 8 bytes big-endian), then the entry as `record` lays it out.
pub(super) const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

const EXPIRY_LEN: usize = 8;

pub(super) fn key_bytes(key: &StoreKey) -> Vec<u8> {
    let space = key.space.name().as_bytes();
    let mut out = Vec::with_capacity(space.len() + 1 + key.id.len());
    out.extend_from_slice(space);
    out.push(b':');
    out.extend_from_slice(&key.id);
    out
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) fn expiry(ttl: Duration) -> u64 {
    now_ms().saturating_add(ttl_millis(ttl))
}

pub(super) fn stored(expires_at: u64, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(EXPIRY_LEN + record.len());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(record);
    out
}

pub(super) fn expires_at(bytes: &[u8]) -> StoreResult<u64> {
    let head = bytes
        .get(..EXPIRY_LEN)
        .ok_or_else(|| StoreError::Failed("an entry in the store is corrupt".into()))?;
    let mut be = [0u8; EXPIRY_LEN];
    be.copy_from_slice(head);
    Ok(u64::from_be_bytes(be))
}

/// The record in `bytes` unless it has expired.
pub(super) fn live(bytes: &[u8], now: u64) -> StoreResult<Option<Record<'_>>> {
    if expires_at(bytes)? <= now {
        return Ok(None);
    }
    Record::decode(&bytes[EXPIRY_LEN..]).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Space;
    use crate::store::record::encode_plain;

    #[test]
    fn keys_keep_the_space_apart() {
        let id = [7u8; 32];
        let a = key_bytes(&StoreKey::new(Space::Token, id));
        let b = key_bytes(&StoreKey::new(Space::Lock, id));
        assert_ne!(a, b);
        assert!(a.starts_with(b"token:"));
    }

    #[test]
    fn an_entry_at_its_expiry_is_gone() {
        let bytes = stored(1_000, &encode_plain(b"x"));
        assert!(live(&bytes, 999).unwrap().is_some());
        assert!(live(&bytes, 1_000).unwrap().is_none());
        assert!(live(b"short", 0).is_err());
    }
}
