//! oauth-broker: a stateless OAuth 2.0 broker for backup clients.
//!
//! The refresh token travels inside the user's AuthID (a JWE sealed to a
//! server key); the service keeps no database. See `SECURITY.md` for the
//! threat model and `README.md` for operation.

pub mod app;
pub mod authid;
pub mod cause;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod login;
pub mod metrics;
pub mod migrate;
pub mod outage;
pub mod provider;
pub mod refresh;
pub mod secret;
pub mod store;
pub mod sync;
#[cfg(test)]
pub(crate) mod testing;
pub mod vault;
