//! The access-token cache. Indexed twice: by a hash of the AuthID text, so
//! a hit needs no cryptography, and by login (a hash of provider, login id
//! and refresh token), so a re-sealed AuthID of the same login finds the
//! same token after one open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::secret::Sensitive;

/// A token is served from cache only while more than this many seconds
/// remain, so the client never receives one about to expire.
pub const MIN_REMAINING_SECS: i64 = 60;

pub type CacheKey = [u8; 32];

/// A cached answer for one login.
pub struct CachedToken {
    pub access_token: Sensitive,
    /// Unix seconds.
    pub expires_at: i64,
    pub service: String,
    /// The AuthID the client should switch to, if any.
    pub new_authid: Option<Arc<str>>,
    /// The login this answer belongs to (for per-login limits on hits).
    pub login_key: CacheKey,
    /// The provider rotated the refresh token in this answer.
    pub rotated: bool,
}

// By hand: the new AuthID must never reach a log through `Debug`.
impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("service", &self.service)
            .field("expires_at", &self.expires_at)
            .field(
                "new_authid",
                &self.new_authid.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl CachedToken {
    pub fn fresh_at(&self, now: i64) -> bool {
        self.expires_at - now > MIN_REMAINING_SECS
    }
}

struct ExpireWithToken;

impl Expiry<CacheKey, Arc<CachedToken>> for ExpireWithToken {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let left = value.expires_at - MIN_REMAINING_SECS - now;
        Some(Duration::from_secs(left.max(1) as u64))
    }
}

pub struct TokenCache {
    by_text: Cache<CacheKey, Arc<CachedToken>>,
    by_login: Cache<CacheKey, Arc<CachedToken>>,
}

impl TokenCache {
    pub fn new(capacity: u64) -> Self {
        let build = || {
            Cache::builder()
                .max_capacity(capacity)
                .expire_after(ExpireWithToken)
                .build()
        };
        Self {
            by_text: build(),
            by_login: build(),
        }
    }

    pub fn text_key(authid_text: &str) -> CacheKey {
        Sha256::digest(authid_text.as_bytes()).into()
    }

    /// The login key binds the per-login secret, not just the login id:
    /// anyone holding the public key can mint an AuthID with any login id,
    /// but not with the victim's secret (which is random, or derived from
    /// the refresh token).
    pub fn login_key(service: &str, login_id: &str, login_secret: &[u8; 32]) -> CacheKey {
        let mut h = Sha256::new();
        for part in [
            service.as_bytes(),
            login_id.as_bytes(),
            login_secret.as_slice(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    pub fn by_text(&self, key: &CacheKey, now: i64) -> Option<Arc<CachedToken>> {
        self.by_text.get(key).filter(|t| t.fresh_at(now))
    }

    pub fn by_login(&self, key: &CacheKey, now: i64) -> Option<Arc<CachedToken>> {
        self.by_login.get(key).filter(|t| t.fresh_at(now))
    }

    pub fn insert_text(&self, key: CacheKey, token: Arc<CachedToken>) {
        self.by_text.insert(key, token);
    }

    pub fn insert_login(&self, key: CacheKey, token: Arc<CachedToken>) {
        self.by_login.insert(key, token);
    }

    /// Drops a login's entries (on revocation).
    pub fn forget(&self, text: &CacheKey, login: &CacheKey) {
        self.by_text.invalidate(text);
        self.by_login.invalidate(login);
    }

    /// Drops the by-text index, so every AuthID is opened again (after a
    /// key was removed from the keyring).
    pub fn forget_all_texts(&self) {
        self.by_text.invalidate_all();
    }

    /// Entries held (approximate; for metrics).
    pub fn len(&self) -> u64 {
        self.by_text.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: i64) -> Arc<CachedToken> {
        Arc::new(CachedToken {
            access_token: Sensitive::new("at"),
            expires_at,
            service: "x".into(),
            new_authid: None,
            login_key: [0; 32],
            rotated: false,
        })
    }

    #[test]
    fn serves_only_while_more_than_a_minute_remains() {
        let cache = TokenCache::new(10);
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let k = TokenCache::text_key("v3:a");
        cache.insert_text(k, token(now + 3600));
        assert!(cache.by_text(&k, now).is_some());
        assert!(cache.by_text(&k, now + 3600 - 61).is_some());
        assert!(cache.by_text(&k, now + 3600 - 60).is_none());
    }

    #[test]
    fn debug_shows_no_token_or_authid() {
        let mut t = CachedToken {
            access_token: Sensitive::new("at-secret"),
            expires_at: 1,
            service: "x".into(),
            new_authid: Some(Arc::from("v3:secret-authid")),
            login_key: [0; 32],
            rotated: true,
        };
        let text = format!("{t:?}");
        assert!(!text.contains("secret"), "{text}");
        t.new_authid = None;
        assert!(!format!("{t:?}").contains("secret"));
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
