//! The internal reason behind a failure, carried from where it happened to
//! the HTTP edge, which logs it once beside the answer. Never shown to a
//! client.

use std::fmt;
use std::sync::Arc;

/// Made only from errors that hold no secret and nothing a request sent
/// (library errors about keys, encryption or serialization), so that it
/// may be logged as it is.
#[derive(Clone)]
pub struct Cause(Arc<str>);

impl Cause {
    pub fn new(cause: impl fmt::Display) -> Self {
        Self(cause.to_string().into())
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Two errors are the same when they say the same: errors that carry a
/// cause stay comparable in tests.
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Cause {}
