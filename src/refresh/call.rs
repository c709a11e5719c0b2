//! One call to the provider for a login, in phases: what is checked under
//! the login's turn (a revocation, an answer that arrived meanwhile, a
//! rest, backoff and the per-login limit), the refresh token to send,
//! admission, the exchange (with the old service's newest token when the
//! provider refused ours), and what is recorded before anyone is
//! answered (the rotation, the shared access token).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::records::{LoginRecords, Newest, SharedToken};
use super::upstream::{self, Exchange};
use super::{DEFAULT_EXPIRES_IN, FlightResult, Flown, Inner, LEASE_MARGIN, OpenedAuthId};
use super::{RefreshError, cache::CachedToken};
use crate::provider::{Guard, Rotation, TokenGrant, UpstreamError};
use crate::secret::Sensitive;

impl Inner {
    /// Calls the provider for the login. `locked_until` is the end of the
    /// lock this instance holds, if it holds one.
    pub(super) async fn call(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        locked_until: Option<Instant>,
    ) -> FlightResult {
        self.check_revoked(records, login).await?;
        if locked_until.is_some() {
            // Another instance may have finished between the first look
            // and taking the lock.
            if let Some(flown) = self.shared(records, login).await? {
                return Ok(flown);
            }
        }
        let single_use = login.provider.rotation == Rotation::SingleUse;
        // A lost answer rests the login on every instance, and across a
        // restart.
        let marked = single_use && self.rest_over(records).await?;
        let now = self.deps.clock.now();
        let guard = self.guard(login);
        self.may_call(&guard, login, now).await?;
        let newest = self.newest_to_send(records, login).await?;
        // A rotation is recorded at the next generation: one that cannot
        // be counted is refused before the token is spent.
        if newest.generation.checked_add(1).is_none() {
            return Err(RefreshError::CorruptGeneration);
        }
        let unknown_v2 = self
            .draw_unknown_v2(&guard, records, login, &newest)
            .await?;
        let deadline = locked_until.unwrap_or_else(|| Instant::now() + self.lease - LEASE_MARGIN);
        let admission = guard
            .enter(now, Some(deadline))
            .await
            .map_err(RefreshError::Refused)?;
        let fingerprint = login.claims.login_fingerprint();
        let (exchange, newest) = self
            .exchange(records, login, newest, &fingerprint, deadline)
            .await;
        let now = self.deps.clock.now();
        let blocked = admission.settle(&exchange.result, now).await;
        if single_use {
            self.note_interruption(records, login, exchange.answer_lost, marked, now)
                .await;
        }
        if let Some(blocked) = blocked {
            return Err(RefreshError::Upstream(UpstreamError::Throttled {
                retry_after: Some(Duration::from_secs(blocked)),
            }));
        }
        let grant = exchange.result?;
        let token = self
            .record_grant(records, login, grant, newest, unknown_v2, now)
            .await?;
        tracing::debug!(
            provider = %login.provider.id,
            login = %fingerprint,
            rotated = token.rotated,
            "refreshed at the provider"
        );
        Ok(Flown {
            outcome: if token.rotated {
                "rotated"
            } else {
                "refreshed"
            },
            token,
        })
    }

    /// The guard of the registration the login uses.
    fn guard<'a>(&'a self, login: &'a OpenedAuthId) -> Guard<'a> {
        self.deps
            .protection
            .guard(&self.deps.metrics, &login.provider.id, &login.gate)
    }

    /// Revocation marks the login under its lock; a token from the store
    /// is served only after this check too.
    pub(super) async fn check_revoked(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
    ) -> Result<(), RefreshError> {
        if self.skip_store(login) {
            return Ok(());
        }
        match records.is_revoked().await {
            Ok(true) => Err(RefreshError::Revoked),
            Ok(false) => Ok(()),
            Err(e) => self.store_failed(login.rotates(), "looking for a revocation", &e),
        }
    }

    /// Checked here, under the lock: a holder this instance waited for may
    /// have been throttled, on any instance; and the login may have been
    /// refreshed at the provider too often.
    async fn may_call(
        &self,
        guard: &Guard<'_>,
        login: &OpenedAuthId,
        now: i64,
    ) -> Result<(), RefreshError> {
        guard
            .blocked_anywhere(now)
            .await
            .map_err(RefreshError::Refused)?;
        self.login_refreshes
            .hit(&login.key, now)
            .map_err(|s| RefreshError::TooMany {
                what: "This login was refreshed too often at the provider",
                retry_after: s,
            })
    }

    /// A `v2:` AuthID the provider never accepted may be made up: it draws
    /// on a small budget of its own before the provider's. `true` when it
    /// did (the login is noted as known once the provider accepts it).
    async fn draw_unknown_v2(
        &self,
        guard: &Guard<'_>,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        newest: &Newest,
    ) -> Result<bool, RefreshError> {
        let unknown = login.v2 && newest.generation == 0 && !self.known_v2(records, login).await;
        if unknown {
            guard.draw_unknown_v2().map_err(RefreshError::Refused)?;
        }
        Ok(unknown)
    }

    /// Whether the provider accepted this `v2:` login before (then its
    /// refreshes use the provider's budget like any other). Without the
    /// store it counts as never seen.
    async fn known_v2(&self, records: &LoginRecords<'_>, login: &OpenedAuthId) -> bool {
        if self.skip_store(login) {
            return false;
        }
        records.is_known().await.unwrap_or_else(|e| {
            self.deps.outage.failed("looking up a legacy login", &e);
            false
        })
    }

    /// The refresh request, with the old service's newest token where it
    /// refreshed a migrated single-use login itself, and again with it if
    /// the provider refused a migrated login's. Returns the exchange and
    /// the refresh token it sent.
    async fn exchange(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        newest: Newest,
        fingerprint: &str,
        deadline: Instant,
    ) -> (Exchange, Newest) {
        // The old service's answer counts against the lock's lease; without
        // one in time, ours is sent (a refusal is looked at below).
        let newest = tokio::time::timeout_at(deadline, self.ahead_of_us(records, login, &newest))
            .await
            .ok()
            .flatten()
            .unwrap_or(newest);
        let exchange = self
            .send_refresh(login, &newest.refresh_token, fingerprint, deadline)
            .await;
        // The old service's answer counts against the lock's lease too.
        let reclaimed =
            tokio::time::timeout_at(deadline, self.reclaimed(records, login, &newest, &exchange))
                .await
                .ok()
                .flatten()
                .filter(|_| Instant::now() < deadline);
        let Some(theirs) = reclaimed else {
            return (exchange, newest);
        };
        // The old service refreshed this migrated login itself (it still
        // serves part of the traffic) and holds the newest token: it is
        // recorded and sent instead.
        let exchange = self
            .send_refresh(login, &theirs.refresh_token, fingerprint, deadline)
            .await;
        (exchange, theirs)
    }

    /// One refresh request for the login, with the registration it names.
    async fn send_refresh(
        &self,
        login: &OpenedAuthId,
        refresh_token: &Sensitive,
        fingerprint: &str,
        deadline: Instant,
    ) -> Exchange {
        let deps = &self.deps;
        upstream::Request {
            client: deps.client.as_ref(),
            metrics: &deps.metrics,
            provider: &login.provider,
            client_id: login.claims.client_id(),
            refresh_token,
            redirect_uri: &deps.redirect_uri,
            login: fingerprint,
        }
        .send(deadline, || deps.clock.now())
        .await
    }

    /// Records what the provider granted before anyone is answered: the
    /// known `v2:` login, the rotation (and the old service's copy of
    /// it), the access token for other instances (where there are any);
    /// then the answer.
    async fn record_grant(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        grant: TokenGrant,
        newest: Newest,
        unknown_v2: bool,
        now: i64,
    ) -> Result<Arc<CachedToken>, RefreshError> {
        if unknown_v2 && !self.skip_store(login) {
            if let Err(e) = records
                .mark_known(login.provider.refresh_token_lifetime)
                .await
            {
                self.deps.outage.failed("noting a legacy login", &e);
            }
        }
        let rotated = grant.refresh_token.filter(|rt| rt != &newest.refresh_token);
        let was_rotated = rotated.is_some();
        let update = self.rotation_of(records, login, rotated, newest).await;
        let expires_in = grant.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
        let shared = SharedToken {
            access_token: grant.access_token,
            expires_at: now + expires_in as i64,
        };
        if let (true, Some(update)) = (was_rotated, &update) {
            self.hand_over(login, update, &shared, expires_in, now);
        }
        if self.shares_tokens(login) {
            if let Err(e) = records.put_token(&shared, now).await {
                self.deps.outage.failed("sharing an access token", &e);
            }
        }
        self.conclude(
            records,
            login,
            shared.access_token,
            shared.expires_at,
            update,
            was_rotated,
        )
    }
}
