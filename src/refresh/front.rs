//! The refresh path up to the flight: the cache hit by AuthID text, the
//! per-address limit on AuthIDs that do not open, opening, the per-login
//! request limit, the hit by login (a hit looks for a revocation made
//! elsewhere once a minute), and a backoff this instance knows of.
//! Only then is the login's flight joined or started.

use std::net::IpAddr;
use std::sync::Arc;

use super::answer::{RefreshAnswer, answer};
use super::cache::CachedToken;
use super::error::Failed;
use super::flight::flight;
use super::{Flown, Inner, OpenedAuthId, REVOCATION_RECHECK_SECS, RefreshError, Refresher};
use crate::authid::{self, AuthIdText};
use crate::provider::UpstreamError;

/// A refresh answered, and the outcome label of the refresh metric.
type Answered = (RefreshAnswer, &'static str);

impl Refresher {
    pub(super) async fn refresh_inner(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<Answered, Failed> {
        let inner = &self.inner;
        let now = inner.deps.clock.now();
        let text_key = inner.cache.text_key(text);
        if let Some(hit) = inner.cache.by_text(&text_key, now) {
            return inner.serve_hit(hit, now).await;
        }
        let login = self.open_limited(text, client, now).await?;
        let fail = |error| Failed::of(&login.provider.id, error);
        inner
            .login_requests
            .hit(&login.key, now)
            .map_err(|s| fail(too_many_requests(s)))?;
        if let Some(hit) = inner.cache.by_login(&login.key, now) {
            inner.still_granted(&hit, now).await.map_err(fail)?;
            inner.cache.insert_text(text_key, Arc::clone(&hit));
            return Ok((answer(hit, now), "cache_hit"));
        }
        inner
            .deps
            .protection
            .guard(&inner.deps.metrics, &login.provider.id, &login.gate)
            .blocked_here(now)
            .map_err(|refusal| fail(RefreshError::Refused(refusal)))?;
        let provider = login.provider.id.clone();
        let flown = self
            .fly(login, client, now)
            .await
            .map_err(|error| Failed::of(&provider, error))?;
        inner.cache.insert_text(text_key, Arc::clone(&flown.token));
        Ok((answer(flown.token, inner.deps.clock.now()), flown.outcome))
    }

    /// Opens the AuthID unless its sender has sent too many that do not
    /// open; one that does not open counts against the sender. An AuthID
    /// of the old service is counted before it is resolved (which may call
    /// the old service) and given back once it resolved: concurrent
    /// requests cannot all pass a check made before any of them failed,
    /// and every kind of failure counts.
    async fn open_limited(
        &self,
        text: &str,
        client: Option<IpAddr>,
        now: i64,
    ) -> Result<OpenedAuthId, Failed> {
        let bad_authids = &self.inner.bad_authids;
        let too_many = |s| RefreshError::TooMany {
            what: "Too many invalid AuthIDs from this address",
            retry_after: s,
        };
        let first = matches!(authid::parse(text), Ok(AuthIdText::AppEngine(_)));
        if let Some(ip) = client {
            if first {
                bad_authids.hit(ip, now).map_err(too_many)?;
            } else {
                bad_authids.check(ip, now).map_err(too_many)?;
            }
        }
        let opened = self.open_any(text).await;
        if let Some(ip) = client {
            match &opened {
                Ok(_) if first => bad_authids.refund(ip, now),
                Err(e) if !first && e.is_unopenable() => {
                    let _ = bad_authids.hit(ip, now);
                }
                _ => {}
            }
        }
        opened.map_err(Failed::from)
    }

    /// Joins or starts this instance's one flight for the login.
    async fn fly(
        &self,
        login: OpenedAuthId,
        client: Option<IpAddr>,
        now: i64,
    ) -> Result<Flown, RefreshError> {
        let inner = &self.inner;
        let key = login.key;
        let v2 = login.v2;
        let task_inner = Arc::clone(inner);
        let flown = inner
            .flights
            .run(
                key,
                move || flight(task_inner, login),
                Err(RefreshError::Internal),
            )
            .await;
        if let (Err(RefreshError::Upstream(UpstreamError::Reauthorize { .. })), true, Some(ip)) =
            (&flown, v2, client)
        {
            // Anyone can make up a `v2:` AuthID, and the provider is the
            // only one who can tell: its refusal counts like an AuthID that
            // does not open.
            let _ = inner.bad_authids.hit(ip, now);
        }
        flown
    }
}

impl Inner {
    /// A hit by AuthID text: counted against the login's request limit,
    /// and served unless the login was revoked elsewhere.
    async fn serve_hit(&self, hit: Arc<CachedToken>, now: i64) -> Result<Answered, Failed> {
        let fail = |error| Failed::of(hit.provider(), error);
        self.login_requests
            .hit(&hit.login_key, now)
            .map_err(|s| fail(too_many_requests(s)))?;
        self.still_granted(&hit, now).await.map_err(fail)?;
        Ok((answer(hit, now), "cache_hit"))
    }

    /// A cached answer is served unless its login was revoked on another
    /// instance. The store is asked at most once per
    /// [`REVOCATION_RECHECK_SECS`] and login; without it, the answer is
    /// served.
    pub(super) async fn still_granted(
        &self,
        hit: &CachedToken,
        now: i64,
    ) -> Result<(), RefreshError> {
        let Some(key) = hit.revoked_key() else {
            return Ok(());
        };
        if !hit.recheck_due(now, REVOCATION_RECHECK_SECS) || self.deps.outage.skipping() {
            return Ok(());
        }
        match self.deps.store.get(key).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => {
                self.cache.forget_login(&hit.login_key);
                Err(RefreshError::Revoked)
            }
            Err(e) => {
                self.deps.outage.failed("looking for a revocation", &e);
                Ok(())
            }
        }
    }
}

fn too_many_requests(retry_after: u64) -> RefreshError {
    RefreshError::TooMany {
        what: "This AuthID is used too often",
        retry_after,
    }
}
