//! The rotation store: for providers that rotate refresh tokens, the newest
//! refresh token of each login, so every AuthID of that login (the one the
//! user pasted, and every one returned in `v2_authid`) resolves to it and a
//! spent token is never sent to the provider.
//!
//! The store holds nothing usable without the user's AuthID: the entry key
//! is an HMAC of the login id under the per-login secret, and the value is
//! the token encrypted (XChaCha20-Poly1305) under a key derived from that
//! same secret, which exists only inside the AuthID's payload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use moka::Expiry;
use moka::ops::compute::Op;
use moka::sync::Cache;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::authid::Claims;
use crate::secret::Sensitive;

pub type StoreKey = [u8; 32];

/// One stored refresh token: opaque without the login's AuthID.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// Counts rotations of this login; a store keeps only the highest.
    pub generation: u64,
    /// Nonce followed by ciphertext.
    pub sealed: Vec<u8>,
}

/// Where the newest refresh tokens live. In memory here; a shared store
/// lets several instances agree.
pub trait RotationStore: Send + Sync + 'static {
    fn get(&self, key: &StoreKey) -> Option<StoredToken>;
    /// Stores `value` unless a higher generation is already there; returns
    /// whether it was stored.
    fn put(&self, key: StoreKey, value: StoredToken, ttl: Duration) -> bool;
    fn remove(&self, key: &StoreKey);
    /// Entries held (for metrics).
    fn entry_count(&self) -> u64;
}

/// The in-memory store: lost on restart (see SECURITY.md).
pub struct MemoryRotationStore {
    entries: Cache<StoreKey, Arc<Entry>>,
}

struct Entry {
    token: StoredToken,
    ttl: Duration,
}

struct EntryTtl;

impl Expiry<StoreKey, Arc<Entry>> for EntryTtl {
    fn expire_after_create(
        &self,
        _: &StoreKey,
        value: &Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _: &StoreKey,
        value: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl MemoryRotationStore {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .expire_after(EntryTtl)
                .build(),
        }
    }
}

impl RotationStore for MemoryRotationStore {
    fn get(&self, key: &StoreKey) -> Option<StoredToken> {
        self.entries.get(key).map(|e| e.token.clone())
    }

    fn put(&self, key: StoreKey, value: StoredToken, ttl: Duration) -> bool {
        let result = self
            .entries
            .entry(key)
            .and_compute_with(|existing| match existing {
                Some(e) if e.value().token.generation >= value.generation => Op::Nop,
                _ => Op::Put(Arc::new(Entry { token: value, ttl })),
            });
        !matches!(result, moka::ops::compute::CompResult::Unchanged(_))
    }

    fn remove(&self, key: &StoreKey) {
        self.entries.invalidate(key);
    }

    fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

/// The keys of one login's store entry, derived from its AuthID claims.
pub struct LoginVault {
    key: StoreKey,
    cipher_key: Zeroizing<[u8; 32]>,
}

impl LoginVault {
    pub fn for_claims(claims: &Claims) -> Self {
        let secret = claims.login_secret();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"rotation-store key\0");
        mac.update(claims.svc.as_bytes());
        mac.update(b"\0");
        mac.update(claims.jti.as_bytes());
        let key: StoreKey = mac.finalize().into_bytes().into();
        let mut cipher_key = Zeroizing::new([0u8; 32]);
        let hk = Hkdf::<Sha256>::new(Some(b"oauth-broker rotation store"), secret.as_ref());
        if hk.expand(b"value key", cipher_key.as_mut()).is_err() {
            unreachable!("32-byte HKDF output");
        }
        Self { key, cipher_key }
    }

    pub fn key(&self) -> &StoreKey {
        &self.key
    }

    fn aad(&self, generation: u64) -> Vec<u8> {
        let mut aad = self.key.to_vec();
        aad.extend_from_slice(&generation.to_be_bytes());
        aad
    }

    pub fn seal(&self, generation: u64, refresh_token: &Sensitive) -> StoredToken {
        let cipher = XChaCha20Poly1305::new(self.cipher_key.as_ref().into());
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = self.aad(generation);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: refresh_token.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        StoredToken { generation, sealed }
    }

    pub fn open(&self, stored: &StoredToken) -> Option<Sensitive> {
        if stored.sealed.len() < 24 + 16 {
            return None;
        }
        let (nonce, ciphertext) = stored.sealed.split_at(24);
        let cipher = XChaCha20Poly1305::new(self.cipher_key.as_ref().into());
        let aad = self.aad(stored.generation);
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .ok()?,
        );
        String::from_utf8(plain.to_vec()).ok().map(Sensitive::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_round_trip_and_isolation() {
        let a = Claims::new("box.com", Sensitive::new("rt0"), 1);
        let b = Claims::new("box.com", Sensitive::new("rt0"), 1);
        let va = LoginVault::for_claims(&a);
        let vb = LoginVault::for_claims(&b);
        assert_ne!(va.key(), vb.key());
        let stored = va.seal(1, &Sensitive::new("rt1"));
        assert!(!stored.sealed.windows(3).any(|w| w == b"rt1"));
        assert_eq!(va.open(&stored).unwrap().expose(), "rt1");
        assert!(
            vb.open(&stored).is_none(),
            "another login's secret opens nothing"
        );
        let mut bumped = stored.clone();
        bumped.generation = 2;
        assert!(va.open(&bumped).is_none(), "generation is authenticated");
    }

    #[test]
    fn same_login_same_key_across_rotations() {
        let mut c = Claims::new("box.com", Sensitive::new("rt0"), 1);
        let k0 = *LoginVault::for_claims(&c).key();
        c.rt = Sensitive::new("rt1");
        c.iat = 2;
        assert_eq!(*LoginVault::for_claims(&c).key(), k0);
    }

    #[test]
    fn store_keeps_the_highest_generation() {
        let store = MemoryRotationStore::new(10);
        let v = LoginVault::for_claims(&Claims::new("box.com", Sensitive::new("rt0"), 1));
        let ttl = Duration::from_secs(60);
        assert!(store.put(*v.key(), v.seal(2, &Sensitive::new("rt2")), ttl));
        assert!(!store.put(*v.key(), v.seal(1, &Sensitive::new("rt1")), ttl));
        assert_eq!(
            v.open(&store.get(v.key()).unwrap()).unwrap().expose(),
            "rt2"
        );
        assert!(store.put(*v.key(), v.seal(3, &Sensitive::new("rt3")), ttl));
        assert_eq!(store.entry_count(), 1);
        store.remove(v.key());
        assert!(store.get(v.key()).is_none());
    }
}
