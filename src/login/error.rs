//! Why a login did not produce an AuthID, in words a user can act on. The
//! HTTP edge decides the status, `Retry-After` and the page.

use crate::cause::Cause;
use crate::provider::{Attempt, Refusal, UpstreamError};

use super::state::{STATE_LIFETIME, StateError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// No enabled provider has this id or alias.
    UnknownProvider,
    /// Malformed input; the text says which.
    BadInput(String),
    /// The state parameter is missing, damaged or from an unknown key.
    State(StateError),
    /// The login took longer than the state lives.
    Expired { provider: String },
    /// The callback reached a browser that did not start this login.
    WrongBrowser,
    /// This callback was already used.
    Replayed { provider: String },
    /// The provider sent the user back with an error (e.g. consent denied).
    Declined { provider: String, code: String },
    /// A host named by the callback or the login token is not allowed.
    HostNotAllowed(&'static str),
    /// The provider gave no refresh token (an earlier consent exists).
    NoRefreshToken { provider: String },
    /// The provider refused or failed the token request.
    Upstream {
        provider: String,
        error: UpstreamError,
    },
    /// The broker held the call back: the provider's backoff, quota or
    /// bulkhead.
    Held { provider: String, refusal: Refusal },
    /// This client address tried too often; it may again after
    /// `retry_after` seconds.
    TooMany { retry_after: u64 },
    /// The login state or the AuthID could not be sealed.
    Seal(Cause),
}

impl LoginError {
    /// A one-line reason, safe to show and to log.
    pub fn message(&self) -> String {
        match self {
            Self::UnknownProvider => "This server offers no provider by that name".into(),
            Self::BadInput(text) => text.clone(),
            Self::State(StateError::Missing) => {
                "This page is where the provider sends you back after logging in; start the login from the beginning".into()
            }
            Self::State(e) => format!("The login could not be finished: {e}; start the login again"),
            Self::Expired { .. } => format!(
                "The login took longer than {} minutes and has expired; start again",
                STATE_LIFETIME / 60
            ),
            Self::WrongBrowser => {
                "This login was started in another browser (or its cookie was blocked or removed); finish it in the browser where you started it, or start again here".into()
            }
            Self::Replayed { .. } => {
                "This login was already finished once; start again to get a new AuthID".into()
            }
            Self::Declined { code, .. } if code == "access_denied" => {
                "You did not grant access at the provider, so there is no AuthID; start again if that was a mistake".into()
            }
            Self::Declined { code, .. } => {
                format!("The provider ended the login with the error {code}; start again")
            }
            Self::HostNotAllowed(what) => {
                format!("The {what} is not one this server is allowed to contact; nothing was sent")
            }
            Self::NoRefreshToken { .. } => {
                "The provider did not issue a long-lived grant (refresh token), usually because this application already has access. Remove the application's access at the provider, then log in again".into()
            }
            Self::Upstream { error, .. } => error.advice(Attempt::Login),
            Self::Held { refusal, .. } => match refusal {
                Refusal::Blocked(_) => {
                    "The provider asked this server to slow down; wait a minute and start again".into()
                }
                Refusal::Busy(_) => {
                    "Too many requests to the provider are in progress; start again shortly".into()
                }
                Refusal::Quota(_) | Refusal::UnknownV2(_) => {
                    "This server's request budget for the provider is spent for now; start again shortly".into()
                }
            },
            Self::TooMany { .. } => {
                "Too many logins from this address; wait a minute and try again".into()
            }
            Self::Seal(_) => "The AuthID could not be created; try again".into(),
        }
    }

    /// The provider whose login can be started again from a link.
    pub fn restart(&self) -> Option<&str> {
        match self {
            Self::Expired { provider }
            | Self::Replayed { provider }
            | Self::Declined { provider, .. }
            | Self::NoRefreshToken { provider }
            | Self::Upstream { provider, .. }
            | Self::Held { provider, .. } => Some(provider),
            _ => None,
        }
    }

    /// What went wrong inside, for the log: the provider's OAuth code, or
    /// why sealing failed. The message never holds it.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Self::Upstream { error, .. } => Some(Cause::new(error)),
            Self::Seal(cause) => Some(cause.clone()),
            _ => None,
        }
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnknownProvider => "unknown_provider",
            Self::BadInput(_) => "bad_input",
            Self::State(_) => "bad_state",
            Self::Expired { .. } => "expired",
            Self::WrongBrowser => "wrong_browser",
            Self::Replayed { .. } => "replayed",
            Self::Declined { .. } => "declined",
            Self::HostNotAllowed(_) => "host_not_allowed",
            Self::NoRefreshToken { .. } => "no_refresh_token",
            Self::Upstream { error, .. } => error.label(),
            Self::Held { refusal, .. } => refusal.label(),
            Self::TooMany { .. } => "limited",
            Self::Seal(_) => "seal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_message_names_the_state_lifetime() {
        let e = LoginError::Expired {
            provider: "x".into(),
        };
        let minutes = format!("{} minutes", STATE_LIFETIME / 60);
        assert!(e.message().contains(&minutes), "{}", e.message());
    }
}
