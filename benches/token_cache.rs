//! Cost of the token cache on the refresh path, with the cache holding
//! 100,000 logins:
//! - `cache_hit_by_text`: what a hit costs before the answer is built: the
//!   keyed hash of the AuthID text and the by-text lookup;
//! - `cache_text_key`: the keyed hash (SipHash-1-3, 128 bits) of a
//!   589-character AuthID alone;
//! - `cache_login_key_path`: after an AuthID was opened, its login secret,
//!   the login key and the by-login lookup (a re-sealed AuthID of a cached
//!   login);
//! - `cache_miss_by_text`: an AuthID the cache has not seen (hash and one
//!   lookup, before the open).
//!
//! `scripts/bench-load.sh` tabulates the medians; see docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use oauth_broker::authid::{Claims, Keyring};
use oauth_broker::clock::{Clock, SystemClock};
use oauth_broker::refresh::{CachedToken, TokenCache};
use oauth_broker::secret::Sensitive;

const ENTRIES: usize = 100_000;

fn token(login_key: [u8; 32], now: i64) -> Arc<CachedToken> {
    Arc::new(CachedToken::new(
        Sensitive::new(format!("ya29.{}", "a".repeat(160))),
        now + 3600,
        "googledrive".into(),
        None,
        login_key,
        false,
    ))
}

fn cache(c: &mut Criterion) {
    let keyring = Keyring::ephemeral().unwrap();
    let now = SystemClock.now();
    let cache = TokenCache::new(200_000, Arc::new(SystemClock));
    // One real AuthID and its claims; the other entries use synthetic texts
    // of the same length (the hash does not care what it hashes).
    let claims = Claims::new("googledrive", Sensitive::new("1//0g-refresh"), now);
    let authid = keyring.seal(&claims).unwrap();
    let login_key = TokenCache::login_key(&claims.provider, &claims.jti, &claims.login_secret());
    let ours = token(login_key, now);
    cache.insert_login(login_key, Arc::clone(&ours));
    cache.insert_text(cache.text_key(&authid), ours);
    for i in 1..ENTRIES {
        let text = format!("{}{i:08}", &authid[..authid.len() - 8]);
        let login = TokenCache::login_key("googledrive", &i.to_string(), &[7; 32]);
        let t = token(login, now);
        cache.insert_login(login, Arc::clone(&t));
        cache.insert_text(cache.text_key(&text), t);
    }
    let unseen = format!("{}x", &authid[..authid.len() - 1]);

    c.bench_function("cache_hit_by_text", |b| {
        b.iter(|| {
            let key = cache.text_key(black_box(&authid));
            cache.by_text(&key, now).unwrap()
        })
    });
    c.bench_function("cache_text_key", |b| {
        b.iter(|| cache.text_key(black_box(&authid)))
    });
    c.bench_function("cache_login_key_path", |b| {
        b.iter(|| {
            let claims = black_box(&claims);
            let key = TokenCache::login_key(&claims.provider, &claims.jti, &claims.login_secret());
            cache.by_login(&key, now).unwrap()
        })
    });
    c.bench_function("cache_miss_by_text", |b| {
        b.iter(|| {
            let key = cache.text_key(black_box(&unseen));
            assert!(cache.by_text(&key, now).is_none());
        })
    });
}

criterion_group!(benches, cache);
criterion_main!(benches);
