//! Rotation records: the newest refresh token of a rotating login (the
//! store's record, a rotation not recorded yet, or the AuthID's own), and
//! recording a rotation before anyone is answered.

use super::records::{LoginRecords, Newest};
use super::{Inner, OpenedAuthId, RefreshError};
use crate::metrics::Metrics;
use crate::secret::Sensitive;
use crate::store::StoreError;

impl Inner {
    /// The refresh token to send: the newest for a rotating login, the
    /// AuthID's own otherwise.
    pub(super) async fn newest_to_send(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
    ) -> Result<Newest, RefreshError> {
        if login.rotates() {
            self.newest(records, login).await
        } else {
            Ok(Newest {
                generation: login.generation(),
                refresh_token: login.claims.rt.clone(),
            })
        }
    }

    /// The newest refresh token of a rotating login: the store's record, a
    /// rotation this instance could not record yet, or the AuthID's own,
    /// whichever is newest. One newer than the store's is written back.
    pub(super) async fn newest(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
    ) -> Result<Newest, RefreshError> {
        let stored = match records.rotation().await {
            Ok(stored) => stored,
            Err(e) => {
                self.deps
                    .outage
                    .failed("reading a login's newest refresh token", &e);
                return Err(RefreshError::StoreUnavailable);
            }
        };
        self.deps.outage.recovered();
        let stored_generation = stored.as_ref().map_or(0, |v| v.generation);
        let ttl = login.provider.refresh_token_lifetime;
        let id = records.rotation_key().id;
        if let Some(pending) = self
            .unrecorded
            .get(&id)
            .filter(|p| p.generation > stored_generation)
        {
            if records.put_rotation(pending.clone(), ttl).await.is_ok() {
                self.unrecorded.invalidate(&id);
                tracing::info!(
                    provider = %login.provider.id,
                    login = %login.claims.login_fingerprint(),
                    "a rotation the store missed is recorded now"
                );
            }
            if let Some(n) = records
                .open_rotation(&pending)
                .filter(|n| n.generation >= login.generation())
            {
                return Ok(n);
            }
        }
        if let Some(n) = stored
            .as_ref()
            .and_then(|v| records.open_rotation(v))
            .filter(|n| n.generation >= login.generation())
        {
            return Ok(n);
        }
        // The store knows nothing newer than the AuthID. If the AuthID is
        // newer than the store (a rotation it missed), the store learns it.
        let generation = login.generation().max(stored_generation);
        if login.generation() > stored_generation {
            let healed = match records.seal_rotation(generation, &login.claims.rt) {
                Ok(record) => records.put_rotation(record, ttl).await,
                Err(e) => Err(e),
            };
            if let Err(e) = healed {
                self.deps
                    .outage
                    .failed("recording a rotation the store missed", &e);
            }
        }
        Ok(Newest {
            generation,
            refresh_token: login.claims.rt.clone(),
        })
    }

    /// What the provider's answer changes: a new refresh token (recorded
    /// for a rotating login, and counted), or the newer one this AuthID
    /// did not hold yet. `None` when the AuthID stays as it is.
    pub(super) async fn rotation_of(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        rotated: Option<Sensitive>,
        newest: Newest,
    ) -> Option<Newest> {
        let Some(refresh_token) = rotated else {
            return (newest.generation > login.generation()).then_some(newest);
        };
        let update = Newest {
            generation: newest.generation.saturating_add(1), // checked before the call (call.rs)
            refresh_token,
        };
        if login.rotates() {
            self.record_rotation(records, login, &update).await;
        }
        self.deps
            .metrics
            .rotations
            .get_or_create(&Metrics::provider(&login.provider.id))
            .inc();
        Some(update)
    }

    /// Records a rotation before anyone is answered. If the store fails,
    /// the client still gets the new AuthID; this instance keeps the
    /// rotation and records it at the login's next refresh here.
    pub(super) async fn record_rotation(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        update: &Newest,
    ) {
        let provider = &login.provider.id;
        let unrecorded = |e: &StoreError| {
            self.deps
                .metrics
                .rotations_unrecorded
                .get_or_create(&Metrics::provider(provider))
                .inc();
            tracing::error!(
                provider = %provider,
                login = %login.claims.login_fingerprint(),
                error = %e,
                "a rotated refresh token could not be recorded in the store; the client got it in v2_authid"
            );
        };
        let record = match records.seal_rotation(update.generation, &update.refresh_token) {
            Ok(record) => record,
            Err(e) => return unrecorded(&e),
        };
        let ttl = login.provider.refresh_token_lifetime;
        match records.put_rotation(record.clone(), ttl).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                provider = %provider,
                login = %login.claims.login_fingerprint(),
                "the store already holds a newer rotation of this login"
            ),
            Err(e) => {
                self.deps.outage.failed("recording a rotation", &e);
                self.unrecorded.insert(records.rotation_key().id, record);
                unrecorded(&e);
            }
        }
    }
}
