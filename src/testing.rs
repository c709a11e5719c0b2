//! Fakes shared by the unit tests: a token client that answers from a script, and stores that fail.
