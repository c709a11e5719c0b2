//! The access-token cache, held in this process. Indexed twice: by a keyed
//! hash of the AuthID text, so a hit needs no cryptography and one lookup,
//! and by login (a hash of provider, login id and login secret), so a
//! re-sealed AuthID of the same login finds the same token after one open.
//!
//! Each entry carries its answer's JSON, prepared once when the token
//! arrives: a hit only writes the seconds left into it.
//!
//! Sharded hash maps rather than a general-purpose cache: an entry costs its
//! two map slots and one allocation (a general cache's bookkeeping per entry
//! cost several times the token itself), and a lookup is one read lock and
//! one probe. Expired entries are dropped by a sweep of the shard that
//! receives an insert, at most once a minute per shard; when a shard is
//! full, the entries closest to expiry go first.

mod index;
mod token;

use std::hash::{Hasher, RandomState};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::clock::SharedClock;
use index::{Index, KeyBits};
pub use token::CachedToken;

/// A token is served from cache only while more than this many seconds
/// remain, so the client never receives one about to expire.
pub const MIN_REMAINING_SECS: i64 = 60;

/// The login key: SHA-256 of provider, login id and login secret.
pub type CacheKey = [u8; 32];

/// The AuthID text's key: SipHash-1-3 (128 bits) under a key drawn at
/// random when the cache is made, so it means nothing outside this process
/// and nobody can aim two texts at one key.
pub type TextKey = u128;

/// Shards of a large cache: enough that two cores seldom want one lock.
const SHARDS: usize = 16;
/// A shard holds at least this many entries (a small cache has fewer
/// shards), so one full shard does not evict while others are empty.
const MIN_PER_SHARD: usize = 256;
/// A shard sweeps out expired entries at most this often.
const SWEEP_EVERY_SECS: i64 = 60;

fn login_slot(key: &CacheKey) -> u128 {
    let mut half = [0u8; 16];
    half.copy_from_slice(&key[..16]);
    u128::from_le_bytes(half)
}

pub struct TokenCache {
    by_text: Index<TextKey, KeyBits>,
    /// Keyed by the login key's first half; the entry holds the whole key,
    /// which a lookup compares (so a shorter slot costs no exactness).
    by_login: Index<u128, RandomState>,
    text_hash_key: [u8; 16],
    clock: SharedClock,
}

impl TokenCache {
    /// At most `capacity` AuthID texts and `capacity` logins.
    pub fn new(capacity: u64, clock: SharedClock) -> Self {
        Self {
            by_text: Index::new(capacity, KeyBits, false),
            by_login: Index::new(capacity, RandomState::new(), true),
            text_hash_key: rand::random(),
            clock,
        }
    }

    /// The key of an AuthID text (callers trim).
    pub fn text_key(&self, authid_text: &str) -> TextKey {
        self.text_key_of_bytes(authid_text.as_bytes())
    }

    /// The key of an AuthID's bytes as a request carried them, not checked
    /// to be text: bytes that are not a valid AuthID match no cached one.
    pub fn text_key_of_bytes(&self, authid: &[u8]) -> TextKey {
        let mut h = SipHasher13::new_with_key(&self.text_hash_key);
        h.write(authid);
        h.finish128().as_u128()
    }

    /// The login key binds the per-login secret, not just the login id:
    /// anyone holding the public key can mint an AuthID with any login id,
    /// but not with the victim's secret (which is random, or derived from
    /// the refresh token).
    pub fn login_key(provider: &str, login_id: &str, login_secret: &[u8; 32]) -> CacheKey {
        let mut h = Sha256::new();
        for part in [
            provider.as_bytes(),
            login_id.as_bytes(),
            login_secret.as_slice(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// The answer cached for this AuthID text, if it is fresh and still its
    /// login's current one (so forgetting the login reaches it).
    pub fn by_text(&self, key: &TextKey, now: i64) -> Option<Arc<CachedToken>> {
        self.with_text(key, now, Arc::clone)
    }

    /// Like [`by_text`](Self::by_text), but `f` reads the entry in place,
    /// under the shard's read lock: the hit path shares nothing it must
    /// count or release afterwards. `f` must not call into the cache.
    pub fn with_text<R>(
        &self,
        key: &TextKey,
        now: i64,
        f: impl FnOnce(&Arc<CachedToken>) -> R,
    ) -> Option<R> {
        self.by_text
            .get(key, |t| t.live_at(now).then(|| f(t)))
            .flatten()
    }

    pub fn by_login(&self, key: &CacheKey, now: i64) -> Option<Arc<CachedToken>> {
        self.by_login
            .get(&login_slot(key), |t| {
                (t.login_key == *key && t.live_at(now)).then(|| Arc::clone(t))
            })
            .flatten()
    }

    pub fn insert_text(&self, key: TextKey, token: Arc<CachedToken>) {
        self.by_text.insert(key, token, self.clock.now());
    }

    /// Makes `token` its login's current entry; the one it replaces is
    /// retired, and with it every text that still points there.
    pub fn insert_login(&self, key: CacheKey, token: Arc<CachedToken>) {
        let new = Arc::clone(&token);
        if let Some(old) = self
            .by_login
            .insert(login_slot(&key), token, self.clock.now())
        {
            if !Arc::ptr_eq(&old, &new) {
                old.retire();
            }
        }
    }

    /// Drops a login's entries (on revocation): the login's current entry
    /// is retired, so every AuthID text of the login misses.
    pub fn forget(&self, text: &TextKey, login: &CacheKey) {
        if let Some(t) = self.by_text.remove(text) {
            t.retire();
        }
        if let Some(t) = self.by_login.remove(&login_slot(login)) {
            t.retire();
        }
    }

    /// Drops a login's answers without knowing an AuthID text of it: its
    /// current entry is retired, so every text pointing there misses.
    pub fn forget_login(&self, login: &CacheKey) {
        if let Some(t) = self.by_login.remove(&login_slot(login)) {
            t.retire();
        }
    }

    /// Drops the by-text index, so every AuthID is opened again (after a
    /// key was removed from the keyring).
    pub fn forget_all_texts(&self) {
        self.by_text.clear();
    }

    /// AuthID texts in the by-text index, for the `cached_tokens` gauge.
    /// An upper bound on the texts a hit is served for: texts whose answer
    /// expired or was retired (forgotten, replaced, evicted) count until
    /// their shard's next sweep, and the texts of one login share one
    /// token.
    pub fn len(&self) -> u64 {
        self.by_text.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
