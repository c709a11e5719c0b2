//! Keys and encryption of what the broker puts in the store. Everything
//! stored for a login is found and read with its per-login secret, which
//! exists only inside the user's AuthID; a fetch rendezvous, with the
//! client's fetch token. The store holds neither, so a dump of it is
//! useless without them.
//!
//! Entry ids are HMAC-SHA256 of the kind of entry and the login id under
//! the secret; values are XChaCha20-Poly1305 under a key derived from the
//! same secret (HKDF-SHA256), with the entry's id and generation as
//! associated data, so a value cannot be moved to another entry or
//! another generation.

use chacha20poly1305::aead::{self, Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::authid::Claims;
use crate::store::{Space, StoreError, StoreKey};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The cipher refused a value (the only reason is a value too large for
/// it; the cipher says no more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cipher refused the value")]
pub struct SealFailed;

/// A value that could not be made ready for the store, and why (the
/// cipher, or serializing a value whose errors never quote it).
pub fn encrypt_failed(cause: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("a value could not be encrypted: {cause}"))
}

/// The keys of one login's (or one fetch token's) store entries.
pub struct Vault {
    mac_key: Zeroizing<Vec<u8>>,
    cipher_key: Zeroizing<[u8; 32]>,
    /// What the entries belong to (provider and login id), bound into
    /// every entry id.
    context: Vec<u8>,
}

impl Vault {
    /// The vault of a login, from its AuthID claims. Every AuthID of the
    /// login (the pasted one and every re-sealed one) gives the same vault.
    pub fn for_login(claims: &Claims) -> Self {
        let secret = claims.login_secret();
        let mut context = b"login\0".to_vec();
        context.extend_from_slice(claims.provider.as_bytes());
        context.push(0);
        context.extend_from_slice(claims.jti.as_bytes());
        Self::new(secret.as_ref(), context)
    }

    /// The vault of a login migrated from the old App Engine service,
    /// before its provider is known: from the login id and secret derived
    /// from the old AuthID's text (and carried by every `v3:` AuthID sealed
    /// from it), so either finds the migrated grant.
    pub fn for_migrated_login(login_id: &str, secret: &[u8; 32]) -> Self {
        let mut context = b"migrated\0".to_vec();
        context.extend_from_slice(login_id.as_bytes());
        Self::new(secret, context)
    }

    /// The vault of a carry-over: only the AuthID text it was recorded for
    /// finds or reads it (the text holds the secret: the AuthID's key and
    /// ciphertext, useless to anyone without the text itself).
    pub fn for_authid_text(text: &str) -> Self {
        Self::new(text.as_bytes(), b"carry-over".to_vec())
    }

    /// The vault of a fetch rendezvous: only a client holding the fetch
    /// token finds or reads its entry.
    pub fn for_fetch_token(token: &str) -> Self {
        Self::new(token.as_bytes(), b"fetch".to_vec())
    }

    fn new(secret: &[u8], context: Vec<u8>) -> Self {
        let mut cipher_key = Zeroizing::new([0u8; 32]);
        let hk = Hkdf::<Sha256>::new(Some(b"oauth-broker store"), secret);
        let mut info = b"value key\0".to_vec();
        info.extend_from_slice(&context);
        if hk.expand(&info, cipher_key.as_mut()).is_err() {
            unreachable!("32-byte HKDF output");
        }
        Self {
            mac_key: Zeroizing::new(secret.to_vec()),
            cipher_key,
            context,
        }
    }

    /// The id of this login's entry in `space`.
    pub fn key(&self, space: Space) -> StoreKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"oauth-broker store key\0");
        mac.update(space.name().as_bytes());
        mac.update(b"\0");
        mac.update(&self.context);
        StoreKey::new(space, mac.finalize().into_bytes().into()).in_group(self.group())
    }

    /// What this login's entries share (a Redis Cluster keeps them in one
    /// slot): an HMAC of the context alone, shortened.
    fn group(&self) -> [u8; 8] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"oauth-broker store group\0");
        mac.update(&self.context);
        let mut group = [0u8; 8];
        group.copy_from_slice(&mac.finalize().into_bytes()[..8]);
        group
    }

    fn aad(key: &StoreKey, generation: u64) -> Vec<u8> {
        let mut aad = key.space.name().as_bytes().to_vec();
        aad.push(0);
        aad.extend_from_slice(&key.id);
        aad.extend_from_slice(&generation.to_be_bytes());
        aad
    }

    /// Encrypts `plain` for the entry `key` at `generation` (0 for
    /// entries that are not versioned): nonce followed by ciphertext.
    pub fn seal(
        &self,
        key: &StoreKey,
        generation: u64,
        plain: &[u8],
    ) -> Result<Vec<u8>, SealFailed> {
        let cipher = XChaCha20Poly1305::new(self.cipher_key.as_ref().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = Self::aad(key, generation);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|aead::Error| SealFailed)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts what [`Vault::seal`] made for the same entry and
    /// generation; `None` for anything else.
    pub fn open(
        &self,
        key: &StoreKey,
        generation: u64,
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(self.cipher_key.as_ref().into());
        let aad = Self::aad(key, generation);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Sensitive;

    #[test]
    fn round_trip_and_isolation() {
        let a = Vault::for_login(&Claims::new("box.com", Sensitive::new("rt0"), 1));
        let b = Vault::for_login(&Claims::new("box.com", Sensitive::new("rt0"), 1));
        let key = a.key(Space::Rotation);
        assert_ne!(key, b.key(Space::Rotation));
        assert_ne!(
            key.id,
            a.key(Space::Token).id,
            "each kind of entry has its own id"
        );
        let sealed = a.seal(&key, 1, b"rt1").unwrap();
        assert!(!sealed.windows(3).any(|w| w == b"rt1"));
        assert_eq!(a.open(&key, 1, &sealed).unwrap().as_slice(), b"rt1");
        assert!(
            b.open(&key, 1, &sealed).is_none(),
            "another login's secret opens nothing"
        );
        assert!(
            a.open(&key, 2, &sealed).is_none(),
            "the generation is authenticated"
        );
        assert!(
            a.open(&a.key(Space::Token), 1, &sealed).is_none(),
            "a value moved to another entry does not open"
        );
        assert!(a.open(&key, 1, &sealed[..30]).is_none());
    }

    #[test]
    fn same_login_same_keys_across_rotations() {
        let mut c = Claims::new("box.com", Sensitive::new("rt0"), 1);
        let k0 = Vault::for_login(&c).key(Space::Rotation);
        c.rt = Sensitive::new("rt1");
        c.iat = 2;
        assert_eq!(Vault::for_login(&c).key(Space::Rotation), k0);
    }

    #[test]
    fn a_forged_login_id_without_the_secret_finds_nothing() {
        let victim = Claims::new("box.com", Sensitive::new("rt0"), 1);
        let mut forged = Claims::new("box.com", Sensitive::new("rt-x"), 1);
        forged.jti = victim.jti.clone();
        assert_ne!(
            Vault::for_login(&victim).key(Space::Token),
            Vault::for_login(&forged).key(Space::Token)
        );
    }

    #[test]
    fn fetch_tokens_have_their_own_entries() {
        let a = Vault::for_fetch_token("abcdefghijklmnop");
        let b = Vault::for_fetch_token("abcdefghijklmnoq");
        assert_ne!(a.key(Space::Fetch), b.key(Space::Fetch));
        let key = a.key(Space::Fetch);
        let sealed = a.seal(&key, 0, b"v3:x").unwrap();
        assert!(b.open(&key, 0, &sealed).is_none());
    }
}
