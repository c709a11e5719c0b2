//! The old App Engine service's side of a call, while both services run:
//! the refresh token it holds now for a migrated login the provider
//! refused ours for, and the rotations it must learn of.

use super::records::{LoginRecords, Newest, SharedToken};
use super::upstream::Exchange;
use super::{Inner, OpenedAuthId};
use crate::migrate::{self, Rotated};
use crate::provider::UpstreamError;

impl Inner {
    /// After the provider refused a migrated login's refresh token: the
    /// token the old service holds now, if it differs (while both run,
    /// the old service refreshes the logins it still serves itself, and
    /// a single-use token it spent is refused here). It is recorded as the
    /// login's next rotation before it is sent.
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
        let theirs = self
            .deps
            .migrator
            .refetch(&login.claims)
            .await
            .filter(|rt| rt != &sent.refresh_token)?;
        let adopted = Newest {
            generation: sent.generation.saturating_add(1), // checked before the call (call.rs)
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
