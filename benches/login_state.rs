//! Cost of sealing and opening one login state (XChaCha20-Poly1305 under a
//! key derived with HKDF from the server key): once per `/login` and once
//! per `/logged-in`. `scripts/bench-load.sh` tabulates the medians; see
//! docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use oauth_broker::authid::Keyring;
use oauth_broker::login::state::{self, LoginState};
use oauth_broker::secret::Sensitive;

fn login_state(c: &mut Criterion) {
    let keyring = Keyring::ephemeral().unwrap();
    // The largest state a login makes: a polling client's fetch token and
    // a PKCE verifier (43 to 128 characters; 64 here).
    let value = LoginState {
        provider: "googledrive".into(),
        fetch_token: Some(oauth_broker::secret::random_id()),
        verifier: Some(Sensitive::new(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXkdBjftJeZ4CVP-mB92K27u",
        )),
        nonce: oauth_broker::secret::random_id(),
        expires_at: 1_800_000_600,
    };
    let sealed = state::seal(&keyring, &value).unwrap();
    eprintln!("Login state length: {} characters", sealed.len());

    c.bench_function("login_state_seal", |b| {
        b.iter(|| state::seal(black_box(&keyring), black_box(&value)).unwrap())
    });
    c.bench_function("login_state_open", |b| {
        b.iter(|| state::open(black_box(&keyring), black_box(&sealed)).unwrap())
    });
}

criterion_group!(benches, login_state);
criterion_main!(benches);
