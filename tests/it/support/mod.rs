//! Shared fixtures for the integration tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod broker;
pub mod legacy_service;
pub mod logs;
pub mod mock_provider;
pub mod process;
pub mod redis;
pub mod redis_ha;
pub mod store;
