#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oauth_broker_fuzz::token_answer(data));
