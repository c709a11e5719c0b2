//! Cost of sealing and opening one AuthID (P-256 ECDH-ES+A256KW, A256GCM)
//! with a refresh token of realistic size, next to the P-256 operations
//! inside them. `scripts/bench-authid.sh` runs this
//! and tabulates the medians; see docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use oauth_broker::authid::{Claims, Keyring, ServerKey};
use oauth_broker::secret::Sensitive;
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;

/// ~100 characters, the shape of a Google refresh token.
const REFRESH_TOKEN: &str = "1//0gLq7Xy3kVnA2CgYIARAAGBASNwF-L9IrZc4pQm8sT1uVwXyZ0aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4yZ5aB6cD7eF8gH";

fn keyring() -> Keyring {
    let (key, _json) = ServerKey::generate("bench", 1_700_000_000).unwrap();
    Keyring::new([key], "bench", HashSet::new()).unwrap()
}

fn authid(c: &mut Criterion) {
    let ring = keyring();
    let claims = Claims::new("googledrive", Sensitive::new(REFRESH_TOKEN), 1_700_000_000);
    let sealed = ring.seal(&claims).unwrap();
    let compact = sealed.strip_prefix("v3:").unwrap().to_string();
    eprintln!("AuthID length: {} characters", sealed.len());
    eprintln!("OpenSSL linked: {}", openssl::version::version());

    c.bench_function("authid_seal", |b| {
        b.iter(|| ring.seal(black_box(&claims)).unwrap())
    });
    c.bench_function("authid_open", |b| {
        b.iter(|| ring.open(black_box(&compact)).unwrap())
    });
}

/// Pieces of the P-256 work under seal and open, through the same OpenSSL
/// the broker links, to see where the time goes:
/// - `ecdh_p256_derive`: one derivation with the peer key validated, as
///   josekit does on both seal and open (`Deriver::set_peer`);
/// - `ecdh_p256_derive_unvalidated`: the bare derivation, what
///   `openssl speed ecdhp256` measures;
/// - `p256_public_key_decode`: turning an `epk` into an OpenSSL key, as
///   josekit does on open (DER SubjectPublicKeyInfo through OpenSSL's decoder).
fn ecdh_pieces(c: &mut Criterion) {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ours = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let theirs = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let theirs_der = theirs.public_key_to_der().unwrap();
    c.bench_function("ecdh_p256_derive", |b| {
        b.iter(|| {
            let mut deriver = Deriver::new(&ours).unwrap();
            deriver.set_peer(black_box(&theirs)).unwrap();
            deriver.derive_to_vec().unwrap()
        })
    });
    c.bench_function("ecdh_p256_derive_unvalidated", |b| {
        b.iter(|| {
            let mut deriver = Deriver::new(&ours).unwrap();
            deriver.set_peer_ex(black_box(&theirs), false).unwrap();
            deriver.derive_to_vec().unwrap()
        })
    });
    c.bench_function("p256_public_key_decode", |b| {
        b.iter(|| PKey::public_key_from_der(black_box(&theirs_der)).unwrap())
    });
}

criterion_group!(benches, authid, ecdh_pieces);
criterion_main!(benches);
