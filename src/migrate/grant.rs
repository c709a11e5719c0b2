//! A migrated grant as the store keeps it (`Space::Legacy`): what the old
//! service exported, so the old AuthID keeps working without it. Like
//! every store entry it is useless without the user's AuthID: the key is an
//! HMAC of the login id under the login secret, the value is encrypted
//! under a key derived from that secret, and both come from the old
//! AuthID's text (or the claims of an AuthID sealed from it).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::secret::Sensitive;
use crate::store::{Space, StoreKey, Versioned};
use crate::vault::Vault;

/// What the store holds for a migrated login.
#[derive(Clone, Serialize, Deserialize)]
pub struct MigratedGrant {
    /// Provider id, as the old service named it.
    pub svc: String,
    /// The newest refresh token known for the login.
    pub rt: Sensitive,
    /// The rotation generation of `rt` (0: as exported).
    #[serde(default)]
    pub generation: u64,
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

/// The store entry of one migrated login, through the login's vault.
pub struct GrantVault {
    vault: Vault,
    key: StoreKey,
}

impl GrantVault {
    /// From the login id (`jti`) and login secret of a migrated login.
    pub fn new(login_id: &str, secret: &[u8; 32]) -> Self {
        let vault = Vault::for_migrated_login(login_id, secret);
        let key = vault.key(Space::Legacy);
        Self { vault, key }
    }

    pub fn key(&self) -> &StoreKey {
        &self.key
    }

    /// Encrypts the grant for the entry at `generation`; `None` if it
    /// could not be.
    pub fn seal(&self, generation: u64, grant: &MigratedGrant) -> Option<Versioned> {
        let plain = Zeroizing::new(serde_json::to_vec(grant).ok()?);
        let value = self.vault.seal(&self.key, generation, &plain).ok()?;
        Some(Versioned { generation, value })
    }

    pub fn open(&self, stored: &Versioned) -> Option<MigratedGrant> {
        let plain = self
            .vault
            .open(&self.key, stored.generation, &stored.value)?;
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
            generation: 0,
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
        let sealed = a.seal(0, &grant()).unwrap();
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
