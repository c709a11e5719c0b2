//! Why an AuthID was refused. Messages are safe to show a user: they never
//! contain any part of the input.

/// Every way an AuthID can be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthIdError {
    #[error("The AuthID is missing")]
    Empty,
    #[error("The AuthID is too long")]
    TooLong,
    #[error(
        "The AuthID contains characters an AuthID never has; copy it again without spaces or line breaks"
    )]
    BadCharacters,
    #[error("The AuthID has an unknown format; a current AuthID starts with v3:")]
    UnknownFormat,
    #[error("The AuthID is damaged: {0}")]
    Malformed(&'static str),
    #[error("The AuthID uses an algorithm this server does not accept")]
    Algorithm,
    #[error("The AuthID was sealed with a key this server does not have")]
    UnknownKey,
    #[error("The AuthID was sealed with a key that has been retired")]
    RetiredKey,
    #[error(
        "The AuthID was sealed with a key that may have been exposed, so it no longer works; log in again to get a new AuthID"
    )]
    CompromisedKey,
    #[error("The AuthID could not be decrypted by this server")]
    Decrypt,
    #[error("The AuthID's content is invalid: {0}")]
    Claims(&'static str),
}

impl AuthIdError {
    /// True when the AuthID is well formed but this server cannot open it
    /// (HTTP 401); false when the input itself is malformed (HTTP 400).
    pub fn is_unauthorized(self) -> bool {
        matches!(
            self,
            Self::Algorithm
                | Self::UnknownKey
                | Self::RetiredKey
                | Self::CompromisedKey
                | Self::Decrypt
        )
    }

    /// A stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::BadCharacters => "bad_characters",
            Self::UnknownFormat => "unknown_format",
            Self::Malformed(_) => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::RetiredKey => "retired_key",
            Self::CompromisedKey => "compromised_key",
            Self::Decrypt => "decrypt",
            Self::Claims(_) => "claims",
        }
    }
}
