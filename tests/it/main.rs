mod mock_selftest;
mod support;
