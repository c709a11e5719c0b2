//! A migrated grant as the store keeps it (`Space::Legacy`): what the old
//! service exported, so the old AuthID keeps working without it. Like
//! every store entry it is useless without the user's AuthID: the key is an
//! HMAC of the login id under the login secret, the value is encrypted
//! under a key derived from that secret, and both come from the old
//! AuthID's text (or the claims of an AuthID sealed from it).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secret::Sensitive;
use crate::store::{Space, StoreKey, Versioned};

/// What the store holds for a migrated login.
#[derive(Clone, Serialize, Deserialize)]
pub struct MigratedGrant {
    /// Provider id, as the old service named it.
    pub svc: String,
    /// The newest refresh token known for the login.
    pub rt: Sensitive,
    /// The old AuthID, so that a rotation seen through a `v3:` AuthID of
    /// the login can still be pushed back to the old service.
    pub authid: Sensitive,
    /// When the entry was last written (seconds).
    pub written_at: i64,
}

impl std::fmt::Debug for MigratedGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigratedGrant")
            .field("svc", &self.svc)
            .field("written_at", &self.written_at)
            .finish_non_exhaustive()
    }
}

/// The key and cipher of one migrated login's entry.
pub struct GrantVault {
    key: StoreKey,
    cipher_key: Zeroizing<[u8; 32]>,
}

impl GrantVault {
    /// From the login id (`jti`) and login secret of a migrated login.
    pub fn new(login_id: &str, secret: &[u8; 32]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"legacy grant key\0");
        mac.update(login_id.as_bytes());
        let key = StoreKey::new(Space::Legacy, mac.finalize().into_bytes().into());
        let mut cipher_key = Zeroizing::new([0u8; 32]);
        let hk = Hkdf::<Sha256>::new(Some(b"oauth-broker legacy grant"), secret);
        if hk.expand(b"value key", cipher_key.as_mut()).is_err() {
            unreachable!("32-byte HKDF output");
        }
        Self { key, cipher_key }
    }

    pub fn key(&self) -> &StoreKey {
        &self.key
    }

    fn aad(&self, generation: u64) -> Vec<u8> {
        let mut aad = self.key.id.to_vec();
        aad.extend_from_slice(&generation.to_be_bytes());
        aad
    }

    pub fn seal(&self, generation: u64, grant: &MigratedGrant) -> Versioned {
        let plain = Zeroizing::new(serde_json::to_vec(grant).unwrap_or_default());
        let cipher = XChaCha20Poly1305::new(self.cipher_key.as_ref().into());
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = self.aad(generation);
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut value = nonce.to_vec();
        value.extend_from_slice(&ciphertext);
        Versioned { generation, value }
    }

    pub fn open(&self, stored: &Versioned) -> Option<MigratedGrant> {
        if stored.value.len() < 24 + 16 {
            return None;
        }
        let (nonce, ciphertext) = stored.value.split_at(24);
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
        serde_json::from_slice(&plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> MigratedGrant {
        MigratedGrant {
            svc: "box.com".into(),
            rt: Sensitive::new("rt-secret"),
            authid: Sensitive::new("old-authid"),
            written_at: 7,
        }
    }

    #[test]
    fn round_trip_and_isolation() {
        let a = GrantVault::new("login-a", &[1; 32]);
        let b = GrantVault::new("login-a", &[2; 32]);
        assert_ne!(a.key(), b.key(), "the secret is part of the key");
        assert_ne!(a.key(), GrantVault::new("login-b", &[1; 32]).key());
        assert_eq!(a.key().space, Space::Legacy);
        let sealed = a.seal(0, &grant());
        for needle in [&b"rt-secret"[..], b"old-authid", b"box.com"] {
            assert!(!sealed.value.windows(needle.len()).any(|w| w == needle));
        }
        let opened = a.open(&sealed).unwrap();
        assert_eq!(opened.rt.expose(), "rt-secret");
        assert_eq!(opened.authid.expose(), "old-authid");
        assert!(b.open(&sealed).is_none());
        let mut bumped = sealed.clone();
        bumped.generation = 1;
        assert!(a.open(&bumped).is_none(), "generation is authenticated");
        assert!(!format!("{opened:?}").contains("secret"));
    }
}
