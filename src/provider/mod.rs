//! Providers: the catalogue of OAuth registrations, the client that talks
//! to their token endpoints, and how their answers are classified.

pub mod admission;
pub mod catalogue;
pub mod client;
pub mod hosts;
pub mod outcome;
pub mod protect;
pub mod retry_after;
pub mod secrets;

pub use admission::{Admission, Guard};
pub use catalogue::{
    Catalogue, PreviousClient, Provider, RateLimit, Registration, Rotation, is_provider_id,
};
pub use client::{HttpTokenClient, RawAnswer, TokenClient, TransportError};
pub use outcome::{Attempt, TokenGrant, UpstreamError, classify};
pub use protect::{Protection, ProtectionSettings, Refusal};
