//! A registration's backoff window as the store holds it: the end of the
//! window and an HMAC over it and the entry's id, under a key derived from
//! the registration's client secret.
//!
//! Every other store entry is encrypted under a secret inside the user's
//! AuthID; a backoff window belongs to no user, so it is authenticated with
//! the one secret every instance serving the registration holds and the
//! store never sees: the client secret (the keyring would do too, but its
//! keys change at different moments on different instances, and a window
//! written under a key another instance has not loaded yet would be lost).
//! Someone who can write the store but does not hold the client secret can
//! then only delete a window, not set one. A public client (Jottacloud's)
//! has no secret: its window is only checked for shape and, like every
//! window, capped at `BACKOFF_MAX` from now when read.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::store::StoreKey;

const MAC_LEN: usize = 32;
/// The only size a window's value has: the end (8 bytes) and the MAC.
pub const VALUE_LEN: usize = 8 + MAC_LEN;

/// The key that authenticates one registration's windows.
pub struct WindowKey(Zeroizing<[u8; 32]>);

impl WindowKey {
    pub fn new(client_secret: &str, registration: &str) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        let hk = Hkdf::<Sha256>::new(Some(b"oauth-broker backoff"), client_secret.as_bytes());
        if hk.expand(registration.as_bytes(), key.as_mut()).is_err() {
            unreachable!("32-byte HKDF output");
        }
        Self(key)
    }

    fn mac(&self, entry: &StoreKey, until: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"oauth-broker backoff window\0");
        mac.update(&entry.id);
        mac.update(&until.to_be_bytes());
        mac
    }

    /// The value stored for a window ending at `until`.
    pub fn seal(&self, entry: &StoreKey, until: i64) -> Vec<u8> {
        let mut value = until.to_be_bytes().to_vec();
        value.extend_from_slice(&self.mac(entry, until).finalize().into_bytes());
        value
    }

    /// The end of the window in `value`, if this key made it for `entry`,
    /// and at most `latest`: a window longer than `BACKOFF_MAX` was never
    /// written by a broker with the same settings, and none may block a
    /// registration for longer.
    pub fn open(&self, entry: &StoreKey, value: &[u8], latest: i64) -> Option<i64> {
        if value.len() != VALUE_LEN {
            return None;
        }
        let (until, tag) = value.split_at(8);
        let until = i64::from_be_bytes(<[u8; 8]>::try_from(until).ok()?);
        self.mac(entry, until).verify_slice(tag).ok()?;
        Some(until.min(latest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Space;

    #[test]
    fn only_the_holder_of_the_client_secret_makes_a_window() {
        let entry = StoreKey::new(Space::Backoff, [7; 32]);
        let key = WindowKey::new("secret", "https://t c");
        let value = key.seal(&entry, 1030);
        assert_eq!(value.len(), VALUE_LEN);
        assert_eq!(key.open(&entry, &value, 5000), Some(1030));
        let other = WindowKey::new("other secret", "https://t c");
        assert_eq!(other.open(&entry, &value, 5000), None, "another secret");
        let moved = StoreKey::new(Space::Backoff, [8; 32]);
        assert_eq!(key.open(&moved, &value, 5000), None, "another entry");
        let mut changed = value.clone();
        changed[7] ^= 1;
        assert_eq!(key.open(&entry, &changed, 5000), None, "another end");
        let bare = (1i64 << 62).to_be_bytes();
        assert_eq!(key.open(&entry, &bare, 5000), None, "a bare integer");
        assert_eq!(key.open(&entry, &[0; 4096], 5000), None, "any other size");
    }

    #[test]
    fn a_window_is_capped_when_read() {
        let entry = StoreKey::new(Space::Backoff, [7; 32]);
        let key = WindowKey::new("secret", "https://t c");
        let value = key.seal(&entry, 1 << 62);
        assert_eq!(key.open(&entry, &value, 4600), Some(4600));
    }
}
