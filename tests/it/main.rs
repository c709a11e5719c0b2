//! Integration tests: one binary, so the suite links once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_authids;
mod browser;
mod login;
mod mock_selftest;
mod pages;
mod refresh;
mod support;
