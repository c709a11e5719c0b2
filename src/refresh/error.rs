//! Why a refresh failed; each reason maps to one HTTP status at the edge.

use crate::authid::AuthIdError;
use crate::cause::Cause;
use crate::provider::{Refusal, UpstreamError};

/// Seconds a client is asked to wait when the store cannot be reached.
pub const STORE_RETRY_AFTER: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    AuthId(#[from] AuthIdError),
    #[error("This AuthID is for the provider {0}, which this server does not offer")]
    UnknownProvider(String),
    #[error("AuthIDs for {0} are access tokens; use them directly, they need no refresh")]
    AccessTokenOnly(String),
    /// The AuthID names a client (registration) the broker no longer holds.
    #[error("This AuthID was issued under a {0} registration this server no longer holds")]
    UnknownClient(String),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The login was revoked; no AuthID of it is served any more.
    #[error("This AuthID was revoked")]
    Revoked,
    /// The login's rotation count (in the AuthID or the store) is at its
    /// end: a corrupt record, refused before the provider is called, since
    /// a rotation could not be recorded after it.
    #[error("This AuthID's rotation record is damaged")]
    CorruptGeneration,
    /// The broker holds back: provider backoff, quota or bulkhead.
    #[error("{}", refusal_text(*.0))]
    Refused(Refusal),
    /// The last single-use refresh of this login was cut off; it rests.
    #[error("The last refresh of this login was interrupted; try again shortly")]
    Interrupted { retry_after: u64 },
    /// This login (or this client) asks too often.
    #[error("{what}; try again later")]
    TooMany {
        what: &'static str,
        retry_after: u64,
    },
    /// The login's provider rotates refresh tokens and the store, which
    /// knows the newest one, cannot be reached: sending the token in the
    /// AuthID could spend it twice.
    #[error("The broker's store is unavailable; try again shortly")]
    StoreUnavailable,
    /// Another instance is refreshing this login and has not finished
    /// within the wait.
    #[error("This login is being refreshed elsewhere; try again shortly")]
    InProgress { retry_after: u64 },
    /// An AuthID of the old App Engine service that could not be migrated.
    #[error("{0}")]
    Migration(crate::migrate::MigrationError),
    /// As many requests as allowed wait on providers, the old service or
    /// the store already.
    #[error("The server is busy; try again shortly")]
    Overloaded,
    #[error("The refreshed AuthID could not be sealed")]
    Seal(Cause),
    #[error("The refresh failed unexpectedly")]
    Internal,
}

fn refusal_text(r: Refusal) -> &'static str {
    match r {
        Refusal::Blocked(_) => "The provider asked this server to slow down; try again later",
        Refusal::Quota(_) => {
            "This server's request budget for the provider is spent; try again later"
        }
        Refusal::Busy(_) => "Too many requests to the provider are in progress; try again shortly",
        Refusal::UnknownV2(_) => {
            "This server's budget for legacy AuthIDs it has not seen before is spent for this provider; try again later"
        }
    }
}

impl RefreshError {
    /// True for AuthIDs that cannot be used here at all: they count toward
    /// the per-address limit, as each guess costs the broker (or the old
    /// service) work.
    pub fn is_unopenable(&self) -> bool {
        matches!(self, Self::AuthId(_)) || matches!(self, Self::Migration(e) if e.is_unopenable())
    }

    /// The outcome label of the refresh metric.
    pub fn label(&self) -> &'static str {
        match self {
            Self::AuthId(_) | Self::CorruptGeneration => "bad_authid",
            Self::UnknownProvider(_) | Self::AccessTokenOnly(_) => "bad_provider",
            Self::UnknownClient(_) => "unknown_client",
            Self::Upstream(e) => e.label(),
            Self::Revoked => "revoked",
            Self::Refused(_)
            | Self::Interrupted { .. }
            | Self::InProgress { .. }
            | Self::Overloaded => "throttled",
            Self::TooMany { .. } => "limited",
            Self::StoreUnavailable => "store_unavailable",
            Self::Migration(e) => e.label(),
            Self::Seal(_) | Self::Internal => "error",
        }
    }

    /// What went wrong inside, for the log, when the text above does not
    /// say it all.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Self::Seal(cause) => Some(cause),
            _ => None,
        }
    }
}

/// A refresh that failed, with the provider of its login once the AuthID
/// was opened (the label of the refresh metric).
#[derive(Debug)]
pub(super) struct Failed {
    pub provider: Option<String>,
    pub error: RefreshError,
}

impl Failed {
    /// A failure of an opened AuthID's login at `provider`.
    pub fn of(provider: &str, error: RefreshError) -> Self {
        Self {
            provider: Some(provider.to_string()),
            error,
        }
    }
}

/// A failure before the AuthID was opened: no provider is known.
impl From<RefreshError> for Failed {
    fn from(error: RefreshError) -> Self {
        Self {
            provider: None,
            error,
        }
    }
}
