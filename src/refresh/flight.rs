//! This instance's one flight for a login: what the store already knows
//! (a fresh access token another instance obtained, a revocation), then a
//! turn at the provider. Store failures are fatal only to logins whose
//! provider rotates refresh tokens.

use std::sync::Arc;

use super::records::{LoginRecords, SharedToken};
use super::turn::Turn;
use super::{FlightResult, Flown, Inner, OpenedAuthId, RefreshError};
use crate::provider::Rotation;
use crate::store::StoreError;

/// This instance's one flight for a login. Runs in its own task, so its
/// result is recorded even if every caller has gone.
pub(super) async fn flight(inner: Arc<Inner>, login: OpenedAuthId) -> FlightResult {
    let now = inner.deps.clock.now();
    // Another flight may have finished between the caller's cache check
    // and this one starting.
    if let Some(token) = inner.cache.by_login(&login.key, now) {
        return Ok(Flown {
            token,
            outcome: "cache_hit",
        });
    }
    if login.provider.rotation == Rotation::SingleUse {
        inner.resting_here(&login, now)?;
    }
    let records = LoginRecords::new(inner.deps.store.as_ref(), &login.claims);
    if let Some(flown) = inner.shared(&records, &login).await? {
        return Ok(flown);
    }
    match inner.take_turn(&records, &login).await? {
        Turn::Answered(flown) => Ok(flown),
        Turn::Unlocked => inner.call(&records, &login, None).await,
        Turn::Here(_turn) => inner.call(&records, &login, None).await,
        Turn::Locked { token, deadline } => {
            let result = inner.call(&records, &login, Some(deadline)).await;
            if let Err(e) = records.unlock(&token).await {
                // The lease ends it anyway.
                inner
                    .deps
                    .outage
                    .failed("releasing a login's refresh lock", &e);
            }
            result
        }
    }
}

impl Inner {
    /// A store failure: fatal to a rotating login (its newest refresh
    /// token is unknown), skipped for the others.
    pub(super) fn store_failed(
        &self,
        rotates: bool,
        what: &'static str,
        e: &StoreError,
    ) -> Result<(), RefreshError> {
        self.deps.outage.failed(what, e);
        if rotates {
            Err(RefreshError::StoreUnavailable)
        } else {
            Ok(())
        }
    }

    /// Optional store work is skipped for a moment after a failure.
    pub(super) fn skip_store(&self, login: &OpenedAuthId) -> bool {
        !login.rotates() && self.deps.outage.skipping()
    }

    /// Whether access tokens go through the store: only where another
    /// process can read them (see `Inner::shared_store`).
    pub(super) fn shares_tokens(&self, login: &OpenedAuthId) -> bool {
        self.shared_store && !self.skip_store(login)
    }

    /// The access token another instance obtained for the login, if it is
    /// still fresh.
    pub(super) async fn shared(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
    ) -> Result<Option<Flown>, RefreshError> {
        if !self.shares_tokens(login) {
            return Ok(None);
        }
        match records.token(self.deps.clock.now()).await {
            Ok(Some(token)) => self.serve_shared(records, login, token).await.map(Some),
            Ok(None) => Ok(None),
            Err(e) => self
                .store_failed(login.rotates(), "reading a shared access token", &e)
                .map(|()| None),
        }
    }

    /// Answers with a token from the store, unless the login was revoked
    /// (a revocation on another instance may have marked the login after
    /// its token was shared, or failed to drop it). The AuthID presented
    /// may hold an older refresh token than the store: the answer then
    /// carries the newest in a re-sealed AuthID.
    pub(super) async fn serve_shared(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        token: SharedToken,
    ) -> FlightResult {
        self.check_revoked(records, login).await?;
        let newer = if login.rotates() {
            // Without it the access token is still good; the AuthID is
            // brought up to date at a later refresh.
            self.newest(records, login)
                .await
                .ok()
                .filter(|n| n.generation > login.generation())
        } else {
            None
        };
        let token = self.conclude(
            records,
            login,
            token.access_token,
            token.expires_at,
            newer,
            false,
        )?;
        Ok(Flown {
            token,
            outcome: "shared",
        })
    }
}
