//! Carry-overs (SPEC 3): the login of an AuthID sealed with a key that is
//! no longer primary, kept in the store (`Space::CarryOver`) under an HMAC
//! of the AuthID text and encrypted under a key derived from that text, as
//! migrated grants are. Duplicati pastes the same text on every run, so
//! after `keys retire` the text is served from its carry-over and the
//! retired private key can be deleted. A carry-over holds the AuthID's
//! claims as sealed: everything later (the newest refresh token, caching,
//! revocation) hangs on the login they name, exactly as when the key opens
//! the text.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::open::{OpenedAuthId, resolve};
use super::{RefreshError, Refresher};
use crate::authid::{self, AuthIdError, Claims, KeyEvent, Keyring, Opened};
use crate::store::{Space, StoreKey};
use crate::vault::Vault;

/// The least a carry-over is kept after it was last written; longer when
/// the provider's refresh tokens live longer. A carry-over in use is
/// written again at least every [`TOUCH_AFTER_SECS`].
pub const CARRY_OVER_TTL: Duration = Duration::from_secs(400 * 24 * 3600);
/// A carry-over read this long after its last write is written again, so
/// the store keeps it as long as it is used.
pub const TOUCH_AFTER_SECS: i64 = 7 * 24 * 3600;

/// What the store holds for one carried-over AuthID text.
#[derive(Serialize, Deserialize)]
pub(super) struct CarryOver {
    /// The claims the AuthID was sealed with: provider, refresh token,
    /// client, generation, login id and login secret.
    pub(super) claims: Claims,
    /// The key the text was sealed with, so `--compromised` ends it on
    /// every instance.
    pub(super) kid: String,
    /// When the entry was last written (seconds).
    pub(super) written_at: i64,
}

/// The store entry of one AuthID text, through the text's vault.
pub(super) struct CarryVault {
    vault: Vault,
    key: StoreKey,
}

impl CarryVault {
    pub(super) fn new(text: &str) -> Self {
        let vault = Vault::for_authid_text(text);
        let key = vault.key(Space::CarryOver);
        Self { vault, key }
    }

    pub(super) fn key(&self) -> &StoreKey {
        &self.key
    }

    pub(super) fn seal(&self, record: &CarryOver) -> Option<Vec<u8>> {
        let plain = Zeroizing::new(serde_json::to_vec(record).ok()?);
        self.vault.seal(&self.key, 0, &plain).ok()
    }

    /// `None` for a value this text did not make (foreign, damaged or
    /// rolled back by someone with access to the store).
    pub(super) fn open(&self, value: &[u8]) -> Option<CarryOver> {
        let plain = self.vault.open(&self.key, 0, value)?;
        serde_json::from_slice(&plain).ok()
    }
}

/// How long a carry-over is kept after a write: at least as long as the
/// provider's refresh tokens live, so an unused one outlives no grant.
pub(super) fn ttl_for(login: &OpenedAuthId) -> Duration {
    CARRY_OVER_TTL.max(login.provider.refresh_token_lifetime)
}

impl Refresher {
    /// Opens a `v3:` AuthID: with its key while the key is loaded
    /// (recording a carry-over when the key is not primary), else from its
    /// carry-over.
    pub(super) async fn open_v3(
        &self,
        text: &str,
        compact: &str,
    ) -> Result<OpenedAuthId, RefreshError> {
        let deps = &self.inner.deps;
        let keyring = deps.keyring.current();
        match keyring.open(compact) {
            Ok(opened) => {
                deps.keyring.stats().record_open(&opened.kid);
                let by_primary = opened.by_primary;
                let login = resolve(
                    &deps.catalogue,
                    &deps.metrics,
                    opened.claims.clone(),
                    !by_primary,
                    false,
                )?;
                if !by_primary {
                    self.carry_over(text, &opened, &login).await;
                }
                Ok(login)
            }
            Err(e @ (AuthIdError::RetiredKey | AuthIdError::UnknownKey)) => {
                self.carried(text, compact, &keyring, e).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records the carry-over of an AuthID its non-primary key opened,
    /// unless the store holds it already and its touch is not due: one
    /// read per miss, a write only the first time and once a week. A
    /// failure costs nothing now; the next miss tries again.
    async fn carry_over(&self, text: &str, opened: &Opened, login: &OpenedAuthId) {
        let deps = &self.inner.deps;
        let vault = CarryVault::new(text);
        let now = deps.clock.now();
        let stored = match deps.store.get(vault.key()).await {
            Ok(stored) => stored,
            Err(e) => {
                deps.outage.failed("reading a carry-over", &e);
                return;
            }
        };
        let current = stored.as_deref().and_then(|v| vault.open(v));
        if current.is_some_and(|c| now - c.written_at <= TOUCH_AFTER_SECS) {
            return;
        }
        if stored.is_none() {
            deps.keyring
                .stats()
                .record(&opened.kid, KeyEvent::FirstOpened);
        }
        let record = CarryOver {
            claims: opened.claims.clone(),
            kid: opened.kid.clone(),
            written_at: now,
        };
        let Some(value) = vault.seal(&record) else {
            return;
        };
        let ttl = ttl_for(login);
        if let Err(e) = deps.store.put(vault.key(), value, ttl).await {
            deps.outage.failed("recording a carry-over", &e);
        }
    }

    /// An AuthID whose key is retired or gone: served from its carry-over,
    /// else refused as before. A value that does not open is a 401 (never
    /// a refresh); a store that does not answer, a 503 (it may be carried
    /// over).
    async fn carried(
        &self,
        text: &str,
        compact: &str,
        keyring: &Keyring,
        refused: AuthIdError,
    ) -> Result<OpenedAuthId, RefreshError> {
        let deps = &self.inner.deps;
        let kid = authid::sealing_kid(compact)?;
        // Only kids this broker retired are counted: an unknown one may be
        // made up, and a label must not be.
        let count_refused = || {
            if keyring.is_retired(&kid) {
                deps.keyring.stats().record(&kid, KeyEvent::Refused);
            }
        };
        let vault = CarryVault::new(text);
        let stored = deps.store.get(vault.key()).await.map_err(|e| {
            deps.outage.failed("reading a carry-over", &e);
            RefreshError::StoreUnavailable
        })?;
        let Some(value) = stored else {
            count_refused();
            return Err(refused.into());
        };
        let Some(record) = vault.open(&value).filter(|r| r.kid == kid) else {
            count_refused();
            return Err(AuthIdError::Decrypt.into());
        };
        if keyring.is_compromised(&record.kid) {
            count_refused();
            return Err(AuthIdError::CompromisedKey.into());
        }
        let login = resolve(&deps.catalogue, &deps.metrics, record.claims, true, false)?;
        deps.keyring
            .stats()
            .record(&record.kid, KeyEvent::CarriedOver);
        let now = deps.clock.now();
        if now - record.written_at > TOUCH_AFTER_SECS {
            let touched = CarryOver {
                claims: login.claims.clone(),
                kid: record.kid,
                written_at: now,
            };
            if let Some(value) = vault.seal(&touched) {
                if let Err(e) = deps.store.put(vault.key(), value, ttl_for(&login)).await {
                    deps.outage.failed("touching a carry-over", &e);
                }
            }
        }
        Ok(login)
    }
}
