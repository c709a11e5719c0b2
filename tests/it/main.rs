//! Integration tests: one binary, so the suite links once.

// Test code states its expectations with unwrap/expect: a failure is a panic
// with the reason, which is what a test should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authid_props;
mod bad_authids;
mod browser;
mod csharp_config;
mod demo;
mod edge;
mod faults;
mod fuzz_seeds;
mod interop;
mod key_retirement;
mod kubernetes_keys;
mod lifecycle;
mod login;
mod migration;
mod mock_selftest;
mod pages;
mod previous_clients;
mod protection;
mod redis_selftest;
mod refresh;
mod restarts;
mod shared_redis;
mod shared_store;
mod store;
mod support;
