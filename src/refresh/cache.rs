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

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use siphasher::sip128::{Hasher128, SipHasher13};
use zeroize::Zeroizing;

use crate::clock::SharedClock;
use crate::secret::Sensitive;
use crate::store::StoreKey;

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

/// A cached answer for one login.
///
/// The answer's JSON is prepared when the token arrives, and the token and
/// the provider id are read back out of it: one allocation holds all the
/// entry's text (wiped on drop, as it holds the token).
pub struct CachedToken {
    /// Unix seconds.
    pub expires_at: i64,
    /// The AuthID the client should switch to, if any.
    pub new_authid: Option<Arc<str>>,
    /// The login this answer belongs to (for per-login limits on hits).
    pub login_key: CacheKey,
    /// The provider rotated the refresh token in this answer.
    pub rotated: bool,
    /// `{"access_token":"…","expires":` | `,"type":"…"[,"v2_authid":"…"]}`
    json: Zeroizing<Box<[u8]>>,
    /// Where the seconds left go in `json`.
    split: u32,
    /// Where the token and the provider id are in `json`; `None` when
    /// JSON had to escape them (never seen in practice), then kept apart.
    token_at: Option<(u32, u32)>,
    provider_at: Option<(u32, u32)>,
    escaped: Option<Box<(Sensitive, String)>>,
    /// Set once this is no longer its login's current entry (forgotten,
    /// replaced or evicted): texts still pointing here miss, so forgetting
    /// a login reaches every AuthID text of it through the one entry.
    retired: AtomicBool,
    /// Where the store marks the login revoked: a hit looks there now and
    /// then, so a revocation on another instance ends this one's answers.
    revoked_key: Option<StoreKey>,
    /// When (clock seconds) the mark was last looked for.
    checked_at: AtomicI64,
}

// By hand: the token and the new AuthID must never reach a log.
impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("provider", &self.provider())
            .field("expires_at", &self.expires_at)
            .field(
                "new_authid",
                &self.new_authid.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// The `/refresh` success answer, as serde writes it: `expires` comes
/// second so the prepared JSON splits in two around it.
#[derive(serde::Serialize)]
struct Head<'a> {
    access_token: &'a str,
}

#[derive(serde::Serialize)]
struct Tail<'a> {
    #[serde(rename = "type")]
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    v2_authid: Option<&'a str>,
}

const HEAD_START: &[u8] = br#"{"access_token":""#;
const TAIL_START: &[u8] = br#","type":""#;

impl CachedToken {
    pub fn new(
        access_token: Sensitive,
        expires_at: i64,
        provider: String,
        new_authid: Option<Arc<str>>,
        login_key: CacheKey,
        rotated: bool,
    ) -> Self {
        let head = Zeroizing::new(json_object(&Head {
            access_token: access_token.expose(),
        }));
        let tail = Zeroizing::new(json_object(&Tail {
            provider: &provider,
            v2_authid: new_authid.as_deref(),
        }));
        let mut json = Vec::with_capacity(head.len() + tail.len() + 11);
        json.extend_from_slice(&head[..head.len() - 1]);
        json.extend_from_slice(b",\"expires\":");
        let split = json.len();
        json.push(b',');
        json.extend_from_slice(&tail[1..]);
        // Unescaped exactly when JSON added nothing but the quotes.
        let token = access_token.expose().len();
        let token_at = (head.len() == HEAD_START.len() + token + 2)
            .then_some((HEAD_START.len(), HEAD_START.len() + token));
        let provider_start = split + TAIL_START.len();
        let provider_at = json[split..]
            .starts_with(TAIL_START)
            .then_some((provider_start, provider_start + provider.len()))
            .filter(|&(a, b)| {
                json.get(a..b) == Some(provider.as_bytes()) && json.get(b) == Some(&b'"')
            });
        let escaped = (token_at.is_none() || provider_at.is_none())
            .then(|| Box::new((access_token, provider)));
        let at = |r: Option<(usize, usize)>| r.map(|(a, b)| (a as u32, b as u32));
        Self {
            expires_at,
            new_authid,
            login_key,
            rotated,
            json: Zeroizing::new(json.into_boxed_slice()),
            split: split as u32,
            token_at: at(token_at),
            provider_at: at(provider_at),
            escaped,
            retired: AtomicBool::new(false),
            revoked_key: None,
            checked_at: AtomicI64::new(i64::MAX),
        }
    }

    /// Has hits look for the login's revocation mark at `revoked_key`,
    /// first [`recheck_due`](Self::recheck_due) an interval after `now`.
    pub fn watching(mut self, revoked_key: StoreKey, now: i64) -> Self {
        self.revoked_key = Some(revoked_key);
        self.checked_at = AtomicI64::new(now);
        self
    }

    /// Where the login's revocation mark would be, if hits look for it.
    pub fn revoked_key(&self) -> Option<&StoreKey> {
        self.revoked_key.as_ref()
    }

    /// True when a hit should look for a revocation (without claiming the
    /// look: the fast path leaves it to the full one).
    pub fn recheck_pending(&self, now: i64, interval: i64) -> bool {
        self.revoked_key.is_some()
            && now.saturating_sub(self.checked_at.load(Ordering::Relaxed)) >= interval
    }

    /// True for one caller per `interval`: the one that should look for a
    /// revocation now.
    pub fn recheck_due(&self, now: i64, interval: i64) -> bool {
        let last = self.checked_at.load(Ordering::Relaxed);
        self.revoked_key.is_some()
            && now.saturating_sub(last) >= interval
            && self
                .checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn text(&self, at: Option<(u32, u32)>) -> Option<&str> {
        let (a, b) = at?;
        std::str::from_utf8(self.json.get(a as usize..b as usize)?).ok()
    }

    /// The access token, copied (for the few callers that send it on).
    pub fn access_token(&self) -> Sensitive {
        match (self.text(self.token_at), &self.escaped) {
            (Some(token), _) => Sensitive::new(token),
            (None, Some(escaped)) => escaped.0.clone(),
            (None, None) => Sensitive::new(""),
        }
    }

    /// The provider id.
    pub fn provider(&self) -> &str {
        match (self.text(self.provider_at), &self.escaped) {
            (Some(provider), _) => provider,
            (None, Some(escaped)) => &escaped.1,
            (None, None) => "",
        }
    }

    pub fn fresh_at(&self, now: i64) -> bool {
        self.expires_at - now > MIN_REMAINING_SECS
    }

    /// Whole seconds left at `now`.
    pub fn seconds_left(&self, now: i64) -> u64 {
        (self.expires_at - now).max(0) as u64
    }

    /// The `/refresh` answer's JSON body with `expires` seconds left:
    /// `{"access_token", "expires", "type"[, "v2_authid"]}`.
    pub fn json_body(&self, expires: u64) -> Bytes {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(expires).as_bytes();
        let (head, tail) = self.json.split_at(self.split as usize);
        let mut body = Vec::with_capacity(self.json.len() + digits.len());
        body.extend_from_slice(head);
        body.extend_from_slice(digits);
        body.extend_from_slice(tail);
        Bytes::from(body)
    }

    fn live_at(&self, now: i64) -> bool {
        self.fresh_at(now) && !self.retired.load(Ordering::Relaxed)
    }

    fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

/// A struct of strings as a JSON object; cannot fail.
fn json_object<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// Hashes a text key for its map: the key already is a keyed hash, so its
/// low bits are uniform and unpredictable; hashing it again would only cost.
#[derive(Clone, Copy, Default)]
struct KeyBits;

struct KeyBitsHasher(u64);

impl BuildHasher for KeyBits {
    type Hasher = KeyBitsHasher;
    fn build_hasher(&self) -> KeyBitsHasher {
        KeyBitsHasher(0)
    }
}

impl Hasher for KeyBitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u128` keys; kept correct for any other use.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type Map<K, S> = HashMap<K, Arc<CachedToken>, S>;

/// One index: shards of a hash map, each sweeping itself.
struct Index<K, S> {
    shards: Box<[RwLock<Shard<K, S>>]>,
    hasher: S,
    per_shard: usize,
    /// Evicting an entry retires it (the login index: its entry is the
    /// login's current one).
    evict_retires: bool,
}

struct Shard<K, S> {
    map: Map<K, S>,
    next_sweep: i64,
}

impl<K: Hash + Eq + Copy, S: BuildHasher + Clone> Index<K, S> {
    fn new(capacity: u64, hasher: S, evict_retires: bool) -> Self {
        let capacity = (capacity as usize).max(1);
        let shards = (capacity / MIN_PER_SHARD).clamp(1, SHARDS);
        let per_shard = capacity.div_ceil(shards);
        Self {
            shards: (0..shards)
                .map(|_| {
                    RwLock::new(Shard {
                        map: HashMap::with_hasher(hasher.clone()),
                        next_sweep: 0,
                    })
                })
                .collect(),
            hasher,
            per_shard,
            evict_retires,
        }
    }

    fn shard(&self, key: &K) -> &RwLock<Shard<K, S>> {
        // Bits the map does not use for the slot (its low bits) or the tag
        // (the top seven), so a shard's keys still spread over its table.
        &self.shards[(self.hasher.hash_one(key) >> 48) as usize % self.shards.len()]
    }

    fn get<R>(&self, key: &K, f: impl FnOnce(&Arc<CachedToken>) -> R) -> Option<R> {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        shard.map.get(key).map(f)
    }

    /// Inserts; returns the entry it replaced.
    fn insert(&self, key: K, token: Arc<CachedToken>, now: i64) -> Option<Arc<CachedToken>> {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        let replaced = shard.map.insert(key, token);
        if now >= shard.next_sweep || shard.map.len() > self.per_shard {
            shard.next_sweep = now + SWEEP_EVERY_SECS;
            shard.map.retain(|_, t| t.live_at(now));
            if shard.map.len() > self.per_shard {
                let keep = self.per_shard - self.per_shard / 8;
                evict_soonest(&mut shard.map, keep, self.evict_retires);
            }
        }
        replaced
    }

    fn remove(&self, key: &K) -> Option<Arc<CachedToken>> {
        let mut shard = self.shard(key).write().unwrap_or_else(|e| e.into_inner());
        shard.map.remove(key)
    }

    fn clear(&self) {
        for shard in &self.shards {
            shard.write().unwrap_or_else(|e| e.into_inner()).map.clear();
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }
}

/// Shrinks a full shard to `keep` entries, dropping those that expire
/// first (an eighth at once, so a full cache sweeps rarely). Logins
/// evicted are retired: the texts pointing at one miss and open again.
fn evict_soonest<K: Hash + Eq + Copy, S: BuildHasher>(
    map: &mut Map<K, S>,
    keep: usize,
    retire: bool,
) {
    let mut expiries: Vec<i64> = map.values().map(|t| t.expires_at).collect();
    let drop_n = expiries.len().saturating_sub(keep);
    if drop_n == 0 {
        return;
    }
    let (_, cutoff, _) = expiries.select_nth_unstable(drop_n - 1);
    let cutoff = *cutoff;
    let mut dropped = 0;
    map.retain(|_, t| {
        if dropped < drop_n && t.expires_at <= cutoff {
            dropped += 1;
            if retire {
                t.retire();
            }
            false
        } else {
            true
        }
    });
}

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
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    const NOW: i64 = 1_800_000_000;

    fn token_for(login: u8, expires_at: i64) -> Arc<CachedToken> {
        Arc::new(CachedToken::new(
            Sensitive::new("at"),
            expires_at,
            "x".into(),
            None,
            [login; 32],
            false,
        ))
    }

    fn token(expires_at: i64) -> Arc<CachedToken> {
        token_for(0, expires_at)
    }

    fn cache(capacity: u64) -> (TokenCache, ManualClock) {
        let clock = ManualClock::new(NOW);
        (TokenCache::new(capacity, Arc::new(clock.clone())), clock)
    }

    #[test]
    fn one_caller_per_interval_looks_for_a_revocation() {
        let key = StoreKey::new(crate::store::Space::Revoked, [7; 32]);
        let unwatched = token(NOW + 3600);
        assert!(!unwatched.recheck_pending(NOW + 1000, 60));
        assert!(!unwatched.recheck_due(NOW + 1000, 60));
        let t = CachedToken::new(
            Sensitive::new("at"),
            NOW + 3600,
            "x".into(),
            None,
            [0; 32],
            false,
        )
        .watching(key, NOW);
        assert_eq!(t.revoked_key(), Some(&key));
        assert!(!t.recheck_pending(NOW + 59, 60));
        assert!(!t.recheck_due(NOW + 59, 60));
        assert!(t.recheck_pending(NOW + 60, 60));
        assert!(t.recheck_due(NOW + 60, 60));
        assert!(!t.recheck_due(NOW + 60, 60), "the next caller does not");
        assert!(!t.recheck_pending(NOW + 60, 60));
        assert!(t.recheck_due(NOW + 120, 60));
    }

    #[test]
    fn forgetting_a_login_without_its_text_ends_every_text_of_it() {
        let (cache, _) = cache(10);
        let t = token_for(3, NOW + 3600);
        let k = cache.text_key("v3:a");
        cache.insert_login([3; 32], Arc::clone(&t));
        cache.insert_text(k, t);
        assert!(cache.by_text(&k, NOW).is_some());
        cache.forget_login(&[3; 32]);
        assert!(cache.by_text(&k, NOW).is_none());
        assert!(cache.by_login(&[3; 32], NOW).is_none());
    }

    #[test]
    fn serves_only_while_more_than_a_minute_remains() {
        let (cache, _) = cache(10);
        let k = cache.text_key("v3:a");
        cache.insert_text(k, token(NOW + 3600));
        assert!(cache.by_text(&k, NOW).is_some());
        assert!(cache.by_text(&k, NOW + 3600 - 61).is_some());
        assert!(cache.by_text(&k, NOW + 3600 - 60).is_none());
    }

    #[test]
    fn text_keys_are_keyed_per_cache() {
        let (a, _) = cache(10);
        let (b, _) = cache(10);
        assert_eq!(a.text_key("v3:x"), a.text_key("v3:x"));
        assert_ne!(a.text_key("v3:x"), a.text_key("v3:y"));
        assert_ne!(
            a.text_key("v3:x"),
            b.text_key("v3:x"),
            "a random key per cache"
        );
    }

    #[test]
    fn forgetting_a_login_reaches_every_text_of_it() {
        let (cache, _) = cache(10);
        let t = token_for(1, NOW + 3600);
        cache.insert_login([1; 32], Arc::clone(&t));
        let (a, b) = (cache.text_key("v3:a"), cache.text_key("v3:b"));
        cache.insert_text(a, Arc::clone(&t));
        cache.insert_text(b, t);
        assert!(cache.by_text(&b, NOW).is_some());
        cache.forget(&a, &[1; 32]);
        assert!(cache.by_text(&a, NOW).is_none());
        assert!(
            cache.by_text(&b, NOW).is_none(),
            "the other text misses too"
        );
        assert!(cache.by_login(&[1; 32], NOW).is_none());
    }

    #[test]
    fn a_login_is_found_by_its_whole_key() {
        let (cache, _) = cache(10);
        cache.insert_login([1; 32], token_for(1, NOW + 3600));
        let mut same_first_half = [1u8; 32];
        same_first_half[31] = 2;
        assert!(cache.by_login(&[1; 32], NOW).is_some());
        assert!(cache.by_login(&same_first_half, NOW).is_none());
    }

    #[test]
    fn a_new_token_for_a_login_retires_the_texts_of_the_old_one() {
        let (cache, _) = cache(10);
        let old = token_for(1, NOW + 3600);
        cache.insert_login([1; 32], Arc::clone(&old));
        let a = cache.text_key("v3:a");
        cache.insert_text(a, old);
        cache.insert_login([1; 32], token_for(1, NOW + 7200));
        assert!(cache.by_text(&a, NOW).is_none());
        assert_eq!(
            cache.by_login(&[1; 32], NOW).unwrap().expires_at,
            NOW + 7200
        );
    }

    #[test]
    fn a_full_cache_drops_the_entries_closest_to_expiry() {
        let (cache, _) = cache((MIN_PER_SHARD * SHARDS) as u64);
        let logins: Vec<CacheKey> = (0..MIN_PER_SHARD * SHARDS * 3)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&(i as u64).to_le_bytes());
                k
            })
            .collect();
        for (i, k) in logins.iter().enumerate() {
            let t = CachedToken::new(
                Sensitive::new("at"),
                NOW + 600 + i as i64,
                "x".into(),
                None,
                *k,
                false,
            );
            cache.insert_login(*k, Arc::new(t));
        }
        let held = logins
            .iter()
            .filter(|k| cache.by_login(k, NOW).is_some())
            .count();
        assert!(held <= MIN_PER_SHARD * SHARDS, "bounded: {held}");
        assert!(held >= MIN_PER_SHARD * SHARDS / 2, "not emptied: {held}");
        assert!(
            cache.by_login(logins.last().unwrap(), NOW).is_some(),
            "the latest to expire stays"
        );
        assert!(cache.by_login(&logins[0], NOW).is_none());
    }

    #[test]
    fn expired_entries_are_swept_on_a_later_insert() {
        let (cache, clock) = cache(1000);
        for i in 0..100u8 {
            cache.insert_text(cache.text_key(&format!("v3:{i}")), token(NOW + 120));
        }
        assert_eq!(cache.len(), 100);
        clock.advance(SWEEP_EVERY_SECS + 120);
        for i in 0..200u8 {
            cache.insert_text(
                cache.text_key(&format!("v3:new{i}")),
                token(clock.now() + 3600),
            );
        }
        assert_eq!(cache.len(), 200, "the expired ones are gone");
    }

    #[test]
    fn the_prepared_body_is_what_serde_writes() {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            access_token: &'a str,
            expires: u64,
            #[serde(rename = "type")]
            provider: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            v2_authid: Option<&'a str>,
        }
        for (at, authid) in [
            ("ya29.a0-_~+/=", None),
            ("quote\" back\\slash \u{1} é \u{2028}", Some("v3:new")),
        ] {
            let t = CachedToken::new(
                Sensitive::new(at),
                NOW + 3600,
                "box.com".into(),
                authid.map(Arc::from),
                [0; 32],
                false,
            );
            assert_eq!(t.access_token().expose(), at);
            assert_eq!(t.provider(), "box.com");
            for expires in [0, 7, 3599, u64::MAX] {
                let want = serde_json::to_vec(&Body {
                    access_token: at,
                    expires,
                    provider: "box.com",
                    v2_authid: authid,
                })
                .unwrap();
                assert_eq!(t.json_body(expires), want);
            }
        }
    }

    #[test]
    fn debug_shows_no_token_or_authid() {
        let t = CachedToken::new(
            Sensitive::new("at-secret"),
            1,
            "x".into(),
            Some(Arc::from("v3:secret-authid")),
            [0; 32],
            true,
        );
        let text = format!("{t:?}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn login_key_depends_on_every_part() {
        let rt = [1u8; 32];
        let base = TokenCache::login_key("a", "j", &rt);
        assert_ne!(base, TokenCache::login_key("b", "j", &rt));
        assert_ne!(base, TokenCache::login_key("a", "k", &rt));
        assert_ne!(base, TokenCache::login_key("a", "j", &[2u8; 32]));
        // Length-prefixed: no ambiguity from moving a boundary.
        assert_ne!(
            TokenCache::login_key("ab", "c", &rt),
            TokenCache::login_key("a", "bc", &rt)
        );
    }
}
