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
//! Revocation (see `ending`) holds the same lock, marks the login
//! revoked in the store and drops what is held for it; refreshes look for
//! the mark under the lock, and cache hits look for it once a minute.

mod answer;
mod app_engine;
mod cache;
mod call;
mod carry_over;
mod ending;
mod error;
mod flight;
mod front;
mod interruption;
mod open;
mod records;
mod rotation;
mod turn;
mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::authid::{self, AuthIdText, KeyringHandle};
use crate::clock::SharedClock;
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::migrate::Migrator;
use crate::outage::StoreOutage;
use crate::provider::{Catalogue, Protection, TokenClient};
use crate::store::{Store, Versioned};
use crate::sync::{AddressLimiter, KeyedLock, SingleFlight, WindowLimiter};
pub use answer::RefreshAnswer;
use cache::CacheKey;
pub use cache::{CachedToken, TokenCache};
pub use carry_over::{CARRY_OVER_TTL, TOUCH_AFTER_SECS as CARRY_OVER_TOUCH_SECS};
pub use ending::Ending;
pub use error::{RefreshError, STORE_RETRY_AFTER};
pub use open::OpenedAuthId;

/// Used when a provider does not say how long its access token lives.
const DEFAULT_EXPIRES_IN: u64 = 3600;
/// After a single-use refresh whose answer was lost, the login rests this
/// long before the same token is tried again.
pub const INTERRUPTED_COOLDOWN_SECS: i64 = 30;
/// A lock's lease outlasts the provider call it covers by this much, so the
/// call and the recording of its result end before the lease does.
const LEASE_MARGIN: Duration = Duration::from_secs(3);
/// How often (seconds) a cached answer looks for a revocation made on
/// another instance: the store is asked at most this often per login, so
/// cache hits stay in the process.
pub const REVOCATION_RECHECK_SECS: i64 = 60;
/// The provider label of the refresh metric for an AuthID that did not
/// open (no provider is known).
const UNOPENED: &str = "-";

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
    bad_authids: AddressLimiter,
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
    /// lock in it and share the access tokens they obtain through it. The
    /// embedded store refuses a second process, so there this process's
    /// single-flight is the lock (and a lock left behind by a crash cannot
    /// hold a login up after the restart), and an access token is kept in
    /// this process's cache only: no one else could read it from the
    /// store, and after a restart the cache refills at each login's next
    /// refresh (the rotation records, which must survive, still go to the
    /// store).
    shared_store: bool,
    /// Where the store is not shared: the login's turn at the provider in
    /// this process, held by its flight's call and by a revocation, so a
    /// revocation waits for a rotation under way and then revokes its
    /// token (on a shared store the login's lock in the store does this).
    turns_here: KeyedLock<CacheKey>,
}

#[derive(Clone)]
pub struct Refresher {
    inner: Arc<Inner>,
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
            bad_authids: AddressLimiter::new(
                limits.bad_authids_per_minute,
                60,
                deps.cache_capacity,
                limits.ipv6_prefix_length,
            ),
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
            shared_store: deps.store.kind() != "embedded",
            turns_here: KeyedLock::default(),
            deps,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.deps.catalogue
    }

    /// Drops every cached AuthID text (answers stay, found by login), so
    /// every AuthID is opened again: after a key was removed from the
    /// keyring.
    pub fn forget_cached_texts(&self) {
        self.inner.cache.forget_all_texts();
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
            Err(failed) => metrics.refresh(
                failed.provider.as_deref().unwrap_or(UNOPENED),
                failed.error.label(),
            ),
        }
        result
            .map(|(answer, _)| answer)
            .map_err(|failed| failed.error)
    }

    /// Opens any AuthID, migrating one of the old App Engine service, and
    /// resolves its provider, without refreshing.
    pub async fn open_any(&self, text: &str) -> Result<OpenedAuthId, RefreshError> {
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
            AuthIdText::V3(compact) => self.open_v3(text, compact).await,
            AuthIdText::V2(_) => self.open(text),
        }
    }

    /// Opens an AuthID and resolves its provider, without refreshing.
    pub fn open(&self, text: &str) -> Result<OpenedAuthId, RefreshError> {
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

#[cfg(test)]
mod tests;

#[cfg(test)]
impl Refresher {
    /// What another instance on the same store leaves behind when it ends
    /// the login: the revocation mark, and nothing else.
    pub(crate) async fn revoke_in_store(store: &dyn Store, login: &OpenedAuthId) {
        let records = records::LoginRecords::new(store, &login.claims);
        records
            .mark_revoked(Duration::from_secs(3600))
            .await
            .unwrap();
        records.forget().await.unwrap();
    }
}
