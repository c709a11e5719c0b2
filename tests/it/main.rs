//! Integration tests: the AuthID against other JOSE implementations and
//! against hostile input.

// Test code states its expectations with unwrap/expect: a failure is a panic
// with the reason, which is what a test should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authid_props;
mod interop;
