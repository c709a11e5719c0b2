//! The old App Engine service's side of a call, while both services run:
//! the refresh token it holds now for a migrated login (before a
//! single-use token is spent, and after the provider refused ours), and
//! the rotations it must learn of.

use super::records::{LoginRecords, Newest, SharedToken};
use super::upstream::Exchange;
use super::{Inner, OpenedAuthId};
use crate::migrate::{self, Rotated};
use crate::provider::{Rotation, UpstreamError};

impl Inner {
    /// Before a migrated login's single-use token is spent: the token the
    /// old service holds, if it refreshed the login itself since (while
    /// both run, it serves part of the traffic). Sending ours then would
    /// present a spent token, which Jottacloud answers by ending the whole
    /// grant; theirs is recorded as the login's next rotation and sent
    /// instead, so each token reaches the provider once.
    pub(super) async fn ahead_of_us(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        ours: &Newest,
    ) -> Option<Newest> {
        if login.provider.rotation != Rotation::SingleUse
            || !migrate::is_migrated(&login.claims)
            || login.exported_now
        {
            return None;
        }
        self.adopt_theirs(records, login, ours).await
    }

    /// After the provider refused a migrated login's refresh token: the
    /// token the old service holds now, if it differs (it refreshed the
    /// login between our look and our call, or the provider keeps old
    /// tokens only a while).
    pub(super) async fn reclaimed(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        sent: &Newest,
        exchange: &Exchange,
    ) -> Option<Newest> {
        if !matches!(exchange.result, Err(UpstreamError::Reauthorize { .. }))
            || !migrate::is_migrated(&login.claims)
        {
            return None;
        }
        self.adopt_theirs(records, login, sent).await
    }

    /// The old service's token when it differs from `ours`, recorded as
    /// the login's next rotation before it is sent.
    async fn adopt_theirs(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        ours: &Newest,
    ) -> Option<Newest> {
        let theirs = self
            .deps
            .migrator
            .refetch(&login.claims, &ours.refresh_token)
            .await?;
        let adopted = Newest {
            generation: ours.generation.saturating_add(1), // checked before the call (call.rs)
            refresh_token: theirs,
        };
        if login.rotates() {
            self.record_rotation(records, login, &adopted).await;
        }
        Some(adopted)
    }

    /// A migrated login rotated here: the old service gets the newest
    /// token, so it stays usable while both run.
    pub(super) fn hand_over(
        &self,
        login: &OpenedAuthId,
        update: &Newest,
        shared: &SharedToken,
        expires_in: u64,
        now: i64,
    ) {
        if !migrate::is_migrated(&login.claims) {
            return;
        }
        let mut claims = login.claims.clone();
        claims.rt = update.refresh_token.clone();
        let _ = self.deps.migrator.rotated(Rotated {
            claims: &claims,
            generation: update.generation,
            access_token: &shared.access_token,
            expires_in,
            now,
        });
    }
}
