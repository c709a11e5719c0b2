//! Refreshing: AuthID in, access token out.
//!
//! A cache hit costs a keyed hash and one map lookup, and leaves the
//! process only once a minute per login, to look for a revocation. A miss
//! opens the AuthID, applies the per-login limits, and joins or starts
//! this instance's one flight for the login. The flight
//! serves a token another instance obtained if the store has one;
//! otherwise it takes the login's lock across instances, resolves the
//! newest refresh token, passes the provider's protection, calls the
//! provider, and records what the provider rotated before anyone is
//! answered. An instance that finds the lock taken waits for the holder's
//! answer in the store instead of calling the provider.
//!
//! Revocation (see [`ending`]) holds the same lock, marks the login
//! revoked in the store and drops what is held for it; refreshes look for
//! the mark under the lock, and cache hits look for it once a minute.

pub mod cache;
mod ending;
mod error;
mod open;
pub mod records;
mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::authid::{self, AuthIdText, KeyringHandle};
use crate::cause::Cause;
use crate::clock::SharedClock;
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::migrate::{self, Migrator, Rotated};
use crate::outage::StoreOutage;
use crate::provider::{Catalogue, Protection, Refusal, Rotation, TokenClient, UpstreamError};
use crate::secret::Sensitive;
use crate::store::{Store, StoreError, Versioned};
use crate::sync::{SingleFlight, WindowLimiter};
use cache::{CacheKey, CachedToken, TokenCache};
pub use ending::Ending;
pub use error::{RefreshError, STORE_RETRY_AFTER};
pub use open::Login;
use records::{LockToken, LoginRecords, Newest, SharedToken};

/// Used when a provider does not say how long its access token lives.
const DEFAULT_EXPIRES_IN: u64 = 3600;
/// After a single-use refresh whose answer was lost, the login rests this
/// long before the same token is tried again.
pub const INTERRUPTED_COOLDOWN_SECS: i64 = 30;
/// A lock's lease outlasts the provider call it covers by this much, so the
/// call and the recording of its result end before the lease does.
const LEASE_MARGIN: Duration = Duration::from_secs(3);
/// How often an instance waiting for another's answer looks again: first
/// after this, doubling up to [`LAST_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(20);
const LAST_POLL: Duration = Duration::from_millis(250);
/// `Retry-After` when another instance is still refreshing the login.
const IN_PROGRESS_RETRY_AFTER: u64 = 2;
/// How often (seconds) a cached answer looks for a revocation made on
/// another instance: the store is asked at most this often per login, so
/// cache hits stay in the process.
pub const REVOCATION_RECHECK_SECS: i64 = 60;

/// What `/refresh` answers on success: the cached answer itself (shared,
/// not copied) and the seconds it has left.
#[derive(Debug, Clone)]
pub struct RefreshAnswer {
    token: Arc<CachedToken>,
    /// Whole seconds left.
    pub expires: u64,
}

impl RefreshAnswer {
    pub fn access_token(&self) -> Sensitive {
        self.token.access_token()
    }

    /// The provider id.
    pub fn provider(&self) -> &str {
        self.token.provider()
    }

    /// Present when the client should switch to a new AuthID.
    pub fn new_authid(&self) -> Option<&str> {
        self.token.new_authid.as_deref()
    }

    /// The `/refresh` success body, from the JSON the cache prepared.
    pub fn json_body(&self) -> bytes::Bytes {
        self.token.json_body(self.expires)
    }
}

/// What a flight came to: the answer and how it was obtained (the outcome
/// label of the refresh metric).
#[derive(Clone)]
struct Flown {
    token: Arc<CachedToken>,
    outcome: &'static str,
}

type FlightResult = Result<Flown, RefreshError>;

/// Everything the refresher needs from the rest of the application.
pub struct RefreshDeps {
    pub keyring: Arc<KeyringHandle>,
    pub catalogue: Arc<Catalogue>,
    pub client: Arc<dyn TokenClient>,
    /// The state instances share.
    pub store: Arc<dyn Store>,
    pub outage: Arc<StoreOutage>,
    /// Backoff, quota and bulkhead of each provider registration.
    pub protection: Arc<Protection>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// `PUBLIC_URL/logged-in`, sent where providers require it.
    pub redirect_uri: String,
    pub cache_capacity: u64,
    pub limits: Limits,
    /// The upstream timeout; also the longest wait for a provider slot.
    pub upstream_timeout: Duration,
    /// Resolves AuthIDs of the old App Engine service.
    pub migrator: Migrator,
}

struct Inner {
    deps: RefreshDeps,
    cache: TokenCache,
    flights: SingleFlight<CacheKey, FlightResult>,
    login_requests: WindowLimiter<CacheKey>,
    login_refreshes: WindowLimiter<CacheKey>,
    bad_authids: WindowLimiter<IpAddr>,
    /// Single-use logins whose last refresh answer was lost, and when.
    interrupted: moka::sync::Cache<CacheKey, i64>,
    /// Rotations the store did not take when they happened, by the id of
    /// their store entry, written at the login's next refresh here.
    unrecorded: moka::sync::Cache<[u8; 32], Versioned>,
    /// How long a login's lock is held at most: a wait for a provider
    /// slot, the call, and a margin.
    lease: Duration,
    /// How long an instance waits for another one's answer.
    wait_bound: Duration,
    /// Other processes may use the store, so refreshes take the login's
    /// lock in it. The embedded store refuses a second process, so there
    /// this process's single-flight is the lock (and a lock left behind by
    /// a crash cannot hold a login up after the restart).
    shared_lock: bool,
}

#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
}

/// How a flight got its turn at the provider.
enum Turn {
    /// This instance holds the login's lock; the call must end by
    /// `deadline`.
    Locked { token: LockToken, deadline: Instant },
    /// No lock: this process is the store's only user, or the store
    /// failed and the provider does not rotate.
    Unlocked,
    /// Another instance answered while this one waited.
    Answered(Flown),
}

impl Login {
    fn rotates(&self) -> bool {
        self.provider.rotation != Rotation::None
    }
}

impl Refresher {
    pub fn new(deps: RefreshDeps) -> Self {
        let cache = TokenCache::new(deps.cache_capacity, Arc::clone(&deps.clock));
        let limits = &deps.limits;
        let inner = Inner {
            cache,
            flights: SingleFlight::default(),
            // Counters are kept for as many logins as the token cache holds.
            login_requests: WindowLimiter::new(
                limits.login_requests_per_hour,
                3600,
                deps.cache_capacity,
            ),
            login_refreshes: WindowLimiter::new(
                limits.login_refreshes_per_hour,
                3600,
                deps.cache_capacity,
            ),
            bad_authids: WindowLimiter::new(limits.bad_authids_per_minute, 60, deps.cache_capacity),
            interrupted: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            unrecorded: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30 * 24 * 3600))
                .build(),
            lease: deps.upstream_timeout * 2 + LEASE_MARGIN,
            wait_bound: deps.upstream_timeout + LEASE_MARGIN,
            shared_lock: deps.store.kind() != "embedded",
            deps,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn cache(&self) -> &TokenCache {
        &self.inner.cache
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.deps.catalogue
    }

    /// The in-process cache hit, and nothing else: if this AuthID (trimmed
    /// bytes, unchecked: bytes that are not a valid AuthID match no cached
    /// text) has a fresh cached answer and its login is within its request
    /// limit, counts the request and returns `f` of the answer and its
    /// seconds left. `None` for anything else; [`refresh`](Self::refresh)
    /// then decides (and counts nothing twice: a hit over the limit is not
    /// counted). Metrics are the caller's.
    pub fn hit_in_process<R>(
        &self,
        text: &[u8],
        f: impl FnOnce(&CachedToken, u64) -> R,
    ) -> Option<R> {
        let inner = &self.inner;
        let now = inner.deps.clock.now();
        let key = inner.cache.text_key_of_bytes(text);
        inner
            .cache
            .with_text(&key, now, |hit| {
                // Looking for a revocation needs the store: the full path.
                if hit.recheck_pending(now, REVOCATION_RECHECK_SECS) {
                    return None;
                }
                let counted = inner.login_requests.hit(&hit.login_key, now).is_ok();
                counted.then(|| f(hit, hit.seconds_left(now)))
            })
            .flatten()
    }

    /// Returns a valid access token for the AuthID. `client` is the
    /// caller's address, for limiting AuthIDs that fail to open.
    pub async fn refresh(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<RefreshAnswer, RefreshError> {
        let result = self.refresh_inner(text.trim(), client).await;
        let metrics = &self.inner.deps.metrics;
        match &result {
            Ok((answer, outcome)) => metrics.refresh(answer.provider(), outcome),
            Err((provider, e)) => metrics.refresh(provider, e.label()),
        }
        result.map(|(answer, _)| answer).map_err(|(_, e)| e)
    }

    async fn refresh_inner(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<(RefreshAnswer, &'static str), (String, RefreshError)> {
        let inner = &self.inner;
        let now = inner.deps.clock.now();
        let text_key = inner.cache.text_key(text);
        if let Some(hit) = inner.cache.by_text(&text_key, now) {
            inner
                .login_requests
                .hit(&hit.login_key, now)
                .map_err(|s| (hit.provider().to_string(), too_many_requests(s)))?;
            inner
                .still_granted(&hit, now)
                .await
                .map_err(|e| (hit.provider().to_string(), e))?;
            return Ok((answer(hit, now), "cache_hit"));
        }
        if let Some(ip) = client {
            inner.bad_authids.check(&ip, now).map_err(|s| {
                (
                    "-".to_string(),
                    RefreshError::TooMany {
                        what: "Too many invalid AuthIDs from this address",
                        retry_after: s,
                    },
                )
            })?;
        }
        let login = match self.open_any(text).await {
            Ok(login) => login,
            Err(e) => {
                if let (Some(ip), true) = (client, e.is_unopenable()) {
                    let _ = inner.bad_authids.hit(&ip, now);
                }
                return Err(("-".to_string(), e));
            }
        };
        let provider_id = login.provider.id.clone();
        let fail = |e| (provider_id.clone(), e);
        inner
            .login_requests
            .hit(&login.key, now)
            .map_err(|s| fail(too_many_requests(s)))?;
        if let Some(hit) = inner.cache.by_login(&login.key, now) {
            inner.still_granted(&hit, now).await.map_err(fail)?;
            inner.cache.insert_text(text_key, Arc::clone(&hit));
            return Ok((answer(hit, now), "cache_hit"));
        }
        if let Some(left) = inner.deps.protection.blocked(&login.gate, now) {
            inner.deps.metrics.throttle(&provider_id, "backoff");
            return Err(fail(RefreshError::Refused(Refusal::Blocked(left))));
        }
        let key = login.key;
        let legacy = login.legacy;
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
            (&flown, legacy, client)
        {
            // Anyone can make up a legacy AuthID, and the provider is the
            // only one who can tell: its refusal counts like an AuthID that
            // does not open.
            let _ = inner.bad_authids.hit(&ip, now);
        }
        let flown = flown.map_err(fail)?;
        inner.cache.insert_text(text_key, Arc::clone(&flown.token));
        Ok((answer(flown.token, inner.deps.clock.now()), flown.outcome))
    }

    /// Opens any AuthID, migrating one of the old App Engine service, and
    /// resolves its provider, without refreshing.
    pub async fn open_any(&self, text: &str) -> Result<Login, RefreshError> {
        let deps = &self.inner.deps;
        let text = text.trim();
        match authid::parse(text)? {
            AuthIdText::AppEngine(old) => {
                open::open_migrated(
                    &deps.migrator,
                    &deps.catalogue,
                    &deps.metrics,
                    deps.clock.now(),
                    &old,
                )
                .await
            }
            _ => self.open(text),
        }
    }

    /// Opens an AuthID and resolves its provider, without refreshing.
    pub fn open(&self, text: &str) -> Result<Login, RefreshError> {
        let deps = &self.inner.deps;
        open::open(
            &deps.keyring,
            &deps.catalogue,
            &deps.metrics,
            deps.clock.now(),
            text.trim(),
        )
    }

    /// Refreshes gauges before metrics are rendered.
    pub fn update_gauges(&self) {
        let inner = &self.inner;
        let m = &inner.deps.metrics;
        m.active_backoffs.set(
            inner
                .deps
                .protection
                .active_backoffs(inner.deps.clock.now()) as i64,
        );
        m.cached_tokens.set(inner.cache.len() as i64);
    }
}

fn too_many_requests(retry_after: u64) -> RefreshError {
    RefreshError::TooMany {
        what: "This AuthID is used too often",
        retry_after,
    }
}

fn answer(token: Arc<CachedToken>, now: i64) -> RefreshAnswer {
    RefreshAnswer {
        expires: token.seconds_left(now),
        token,
    }
}

/// This instance's one flight for a login. Runs in its own task, so its
/// result is recorded even if every caller has gone.
async fn flight(inner: Arc<Inner>, login: Login) -> FlightResult {
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
    fn store_failed(
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
    fn skip_store(&self, login: &Login) -> bool {
        !login.rotates() && self.deps.outage.skipping()
    }

    /// A cached answer is served unless its login was revoked on another
    /// instance. The store is asked at most once per
    /// [`REVOCATION_RECHECK_SECS`] and login; without it, the answer is
    /// served.
    async fn still_granted(&self, hit: &CachedToken, now: i64) -> Result<(), RefreshError> {
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

    /// Whether the provider accepted this legacy login before (then its
    /// refreshes use the provider's budget like any other). Without the
    /// store it counts as never seen.
    async fn known_legacy(&self, records: &LoginRecords<'_>, login: &Login) -> bool {
        if self.skip_store(login) {
            return false;
        }
        records.is_known().await.unwrap_or_else(|e| {
            self.deps.outage.failed("looking up a legacy login", &e);
            false
        })
    }

    fn resting_here(&self, login: &Login, now: i64) -> Result<(), RefreshError> {
        match self.interrupted.get(&login.key) {
            Some(at) if at + INTERRUPTED_COOLDOWN_SECS > now => Err(RefreshError::Interrupted {
                retry_after: (at + INTERRUPTED_COOLDOWN_SECS - now) as u64,
            }),
            _ => Ok(()),
        }
    }

    /// The access token another instance (or this one, before a restart)
    /// obtained for the login, if it is still fresh.
    async fn shared(
        &self,
        records: &LoginRecords<'_>,
        login: &Login,
    ) -> Result<Option<Flown>, RefreshError> {
        if self.skip_store(login) {
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

    /// Answers with a token from the store. The AuthID presented may hold
    /// an older refresh token than the store: the answer then carries the
    /// newest in a re-sealed AuthID.
    async fn serve_shared(
        &self,
        records: &LoginRecords<'_>,
        login: &Login,
        token: SharedToken,
    ) -> FlightResult {
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
        let token = self.conclude(login, token.access_token, token.expires_at, newer, false)?;
        Ok(Flown {
            token,
            outcome: "shared",
        })
    }

    /// Takes the login's lock, or waits for the instance holding it to
    /// answer (or to give the lock up).
    async fn take_turn(
        &self,
        records: &LoginRecords<'_>,
        login: &Login,
    ) -> Result<Turn, RefreshError> {
        if !self.shared_lock || self.skip_store(login) {
            return Ok(Turn::Unlocked);
        }
        let rotates = login.rotates();
        let give_up = Instant::now() + self.wait_bound;
        let mut pause = FIRST_POLL;
        let mut waited = false;
        loop {
            let asked = Instant::now();
            match records.try_lock(self.lease).await {
                Ok(Some(token)) => {
                    self.deps.outage.recovered();
                    return Ok(Turn::Locked {
                        token,
                        deadline: asked + self.lease - LEASE_MARGIN,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    return self
                        .store_failed(rotates, "taking a login's refresh lock", &e)
                        .map(|()| Turn::Unlocked);
                }
            }
            if !waited {
                waited = true;
                self.deps
                    .metrics
                    .store_lock_waits
                    .get_or_create(&Metrics::provider(&login.provider.id))
                    .inc();
            }
            if Instant::now() + pause > give_up {
                // The holder is slow or gone. A token that does not
                // rotate cannot be spent by a second call; one that does
                // must wait for the lease.
                if !rotates {
                    return Ok(Turn::Unlocked);
                }
                return Err(RefreshError::InProgress {
                    retry_after: IN_PROGRESS_RETRY_AFTER,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LAST_POLL);
            match records.token(self.deps.clock.now()).await {
                Ok(Some(token)) => {
                    return self
                        .serve_shared(records, login, token)
                        .await
                        .map(Turn::Answered);
                }
                Ok(None) => {}
                Err(e) => {
                    return self
                        .store_failed(rotates, "waiting for another instance's answer", &e)
                        .map(|()| Turn::Unlocked);
                }
            }
        }
    }

    /// The newest refresh token of a rotating login: the store's record, a
    /// rotation this instance could not record yet, or the AuthID's own,
    /// whichever is newest. One newer than the store's is written back.
    async fn newest(
        &self,
        records: &LoginRecords<'_>,
        login: &Login,
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

    /// Calls the provider for the login. `locked_until` is the end of the
    /// lock this instance holds, if it holds one.
    async fn call(
        &self,
        records: &LoginRecords<'_>,
        login: &Login,
        locked_until: Option<Instant>,
    ) -> FlightResult {
        let deps = &self.deps;
        let provider = Arc::clone(&login.provider);
        let rotates = login.rotates();
        let single_use = provider.rotation == Rotation::SingleUse;
        let mut marked = false;
        if !self.skip_store(login) {
            // Revocation marks the login under this lock.
            match records.is_revoked().await {
                Ok(true) => return Err(RefreshError::Revoked),
                Ok(false) => {}
                Err(e) => self.store_failed(rotates, "looking for a revocation", &e)?,
            }
        }
        if locked_until.is_some() {
            // Another instance may have finished between the first look
            // and taking the lock.
            if let Some(flown) = self.shared(records, login).await? {
                return Ok(flown);
            }
        }
        if single_use {
            // A lost answer rests the login on every instance, and across
            // a restart.
            match records.interrupted_at().await {
                Ok(Some(at)) => {
                    let left = at + INTERRUPTED_COOLDOWN_SECS - deps.clock.now();
                    if left > 0 {
                        return Err(RefreshError::Interrupted {
                            retry_after: left as u64,
                        });
                    }
                    marked = true;
                }
                Ok(None) => {}
                Err(e) => self.store_failed(true, "reading a login's rest", &e)?,
            }
        }
        let now = deps.clock.now();
        // Checked here, under the lock: a holder this instance waited for may
        // have been throttled, on any instance.
        if let Some(left) = deps.protection.blocked_anywhere(&login.gate, now).await {
            deps.metrics.throttle(&provider.id, "backoff");
            return Err(RefreshError::Refused(Refusal::Blocked(left)));
        }
        self.login_refreshes
            .hit(&login.key, now)
            .map_err(|s| RefreshError::TooMany {
                what: "This login was refreshed too often at the provider",
                retry_after: s,
            })?;
        let newest = if rotates {
            self.newest(records, login).await?
        } else {
            Newest {
                generation: login.generation(),
                refresh_token: login.claims.rt.clone(),
            }
        };
        // A legacy AuthID the provider never accepted may be made up: it
        // draws on a small budget of its own before the provider's.
        let unknown_legacy =
            login.legacy && newest.generation == 0 && !self.known_legacy(records, login).await;
        if unknown_legacy {
            if let Err(refusal) = deps.protection.admit_unknown_v2(&login.gate) {
                deps.metrics.throttle(&provider.id, refusal.label());
                return Err(RefreshError::Refused(refusal));
            }
        }
        let deadline = locked_until.unwrap_or_else(|| Instant::now() + self.lease - LEASE_MARGIN);
        let permit = match tokio::time::timeout_at(
            deadline,
            deps.protection.admit(&login.gate, now),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(refusal)) => {
                deps.metrics.throttle(&provider.id, refusal.label());
                return Err(RefreshError::Refused(refusal));
            }
            Err(_) => {
                deps.metrics.throttle(&provider.id, "busy");
                return Err(RefreshError::Refused(Refusal::Busy(1)));
            }
        };
        let fingerprint = login.claims.login_fingerprint();
        let mut exchange = self
            .send_refresh(login, &newest.refresh_token, &fingerprint, deadline)
            .await;
        let mut newest = newest;
        // The old service's answer counts against the lock's lease too.
        let reclaimed =
            tokio::time::timeout_at(deadline, self.reclaimed(records, login, &newest, &exchange))
                .await
                .ok()
                .flatten()
                .filter(|_| Instant::now() < deadline);
        if let Some(theirs) = reclaimed {
            // The old service refreshed this migrated login itself (it
            // still serves part of the traffic) and holds the newest
            // token: it is recorded and sent instead.
            exchange = self
                .send_refresh(login, &theirs.refresh_token, &fingerprint, deadline)
                .await;
            newest = theirs;
        }
        drop(permit);
        let now = deps.clock.now();
        if single_use {
            self.note_interruption(records, login, exchange.answer_lost, marked, now)
                .await;
        }
        let grant = match exchange.result {
            Ok(grant) => grant,
            Err(UpstreamError::Throttled { retry_after }) => {
                let blocked = deps
                    .protection
                    .throttled(&login.gate, retry_after, now)
                    .await;
                deps.metrics.throttle(&provider.id, "provider");
                tracing::warn!(provider = %provider.id, seconds = blocked, "provider throttled; calls held back");
                return Err(RefreshError::Upstream(UpstreamError::Throttled {
                    retry_after: Some(Duration::from_secs(blocked)),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        deps.protection.succeeded(&login.gate);
        if unknown_legacy && !self.skip_store(login) {
            if let Err(e) = records.mark_known(provider.refresh_token_lifetime).await {
                deps.outage.failed("noting a legacy login", &e);
            }
        }

        let rotated = grant.refresh_token.filter(|rt| rt != &newest.refresh_token);
        let was_rotated = rotated.is_some();
        let update = match rotated {
            Some(refresh_token) => {
                let update = Newest {
                    generation: newest.generation + 1,
                    refresh_token,
                };
                if rotates {
                    self.record_rotation(records, login, &update).await;
                }
                deps.metrics
                    .rotations
                    .get_or_create(&Metrics::provider(&provider.id))
                    .inc();
                Some(update)
            }
            None => (newest.generation > login.generation()).then_some(newest),
        };
        let expires_in = grant.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
        let shared = SharedToken {
            access_token: grant.access_token,
            expires_at: now + expires_in as i64,
        };
        if let (true, Some(update)) = (was_rotated, &update) {
            if migrate::is_migrated(&login.claims) {
                // The old service gets the newest token, so it stays
                // usable while both run.
                let mut claims = login.claims.clone();
                claims.rt = update.refresh_token.clone();
                let _ = deps.migrator.rotated(Rotated {
                    claims: &claims,
                    generation: update.generation,
                    access_token: &shared.access_token,
                    expires_in,
                    now,
                });
            }
        }
        if !self.skip_store(login) {
            if let Err(e) = records.put_token(&shared, now).await {
                deps.outage.failed("sharing an access token", &e);
            }
        }
        let token = self.conclude(
            login,
            shared.access_token,
            shared.expires_at,
            update,
            was_rotated,
        )?;
        tracing::debug!(
            provider = %provider.id,
            login = %fingerprint,
            rotated = was_rotated,
            "refreshed at the provider"
        );
        Ok(Flown {
            token,
            outcome: if was_rotated { "rotated" } else { "refreshed" },
        })
    }

    /// One refresh request for the login, with the registration it names.
    async fn send_refresh(
        &self,
        login: &Login,
        refresh_token: &Sensitive,
        fingerprint: &str,
        deadline: Instant,
    ) -> upstream::Exchange {
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

    /// After the provider refused a migrated login's refresh token: the
    /// token the old service holds now, if it differs (while both run,
    /// the old service refreshes the logins it still serves itself, and
    /// a single-use token it spent is refused here). It is recorded as the
    /// login's next rotation before it is sent.
    async fn reclaimed(
        &self,
        records: &LoginRecords<'_>,
        login: &Login,
        sent: &Newest,
        exchange: &upstream::Exchange,
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
            generation: sent.generation + 1,
            refresh_token: theirs,
        };
        if login.rotates() {
            self.record_rotation(records, login, &adopted).await;
        }
        Some(adopted)
    }

    /// Records a rotation before anyone is answered. If the store fails,
    /// the client still gets the new AuthID; this instance keeps the
    /// rotation and records it at the login's next refresh here.
    async fn record_rotation(&self, records: &LoginRecords<'_>, login: &Login, update: &Newest) {
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

    /// A single-use refresh whose answer was lost rests the login, on
    /// every instance; an answered one ends the rest.
    async fn note_interruption(
        &self,
        records: &LoginRecords<'_>,
        login: &Login,
        lost: bool,
        marked: bool,
        now: i64,
    ) {
        let result = if lost {
            self.interrupted.insert(login.key, now);
            let ttl = Duration::from_secs(2 * INTERRUPTED_COOLDOWN_SECS as u64);
            records.mark_interrupted(now, ttl).await
        } else {
            self.interrupted.invalidate(&login.key);
            if !marked {
                return;
            }
            records.clear_interrupted().await
        };
        if let Err(e) = result {
            self.deps.outage.failed("noting a lost answer", &e);
        }
    }

    /// Builds the answer, re-sealing the AuthID when the client should
    /// switch (a newer refresh token, a legacy form, an old key), and
    /// caches it here.
    fn conclude(
        &self,
        login: &Login,
        access_token: Sensitive,
        expires_at: i64,
        update: Option<Newest>,
        rotated: bool,
    ) -> Result<Arc<CachedToken>, RefreshError> {
        let deps = &self.deps;
        let new_authid = if update.is_some() || login.reseal {
            let mut claims = login.claims.clone();
            claims.pin_login_secret();
            if let Some(update) = update {
                claims.rt = update.refresh_token;
                authid::set_generation(&mut claims, update.generation);
            }
            claims.iat = deps.clock.now();
            let sealed = deps
                .keyring
                .seal(&claims)
                .map_err(|e| RefreshError::Seal(Cause::new(e)))?;
            Some(Arc::<str>::from(sealed))
        } else {
            None
        };
        let token = Arc::new(
            CachedToken::new(
                access_token,
                expires_at,
                login.provider.id.clone(),
                new_authid.clone(),
                login.key,
                rotated,
            )
            .watching(
                LoginRecords::new(deps.store.as_ref(), &login.claims).revoked_key(),
                deps.clock.now(),
            ),
        );
        self.cache.insert_login(login.key, Arc::clone(&token));
        if let Some(text) = &new_authid {
            // The new AuthID hits the cache straight away.
            self.cache
                .insert_text(self.cache.text_key(text), Arc::clone(&token));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests;
