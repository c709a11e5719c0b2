//! Opening a compact JWE with the primitives directly: ECDH-ES or
//! ECDH-ES+A256KW on P-256 (RFC 7518 §4.6) with OpenSSL's scalar
//! multiplication, A256KW and A256GCM with the RustCrypto ciphers (AES-NI
//! and carry-less multiplication, found at run time; OpenSSL's low-level
//! key unwrap has no AES-NI, and its EVP interface looks the cipher up
//! again at every use). Every open pays one key agreement; going through
//! the JOSE library costs twice that (it decodes the ephemeral key through
//! OpenSSL's generic DER decoder and builds an EVP key pair per call), see
//! `docs/BENCHMARKS.md`. Sealing stays with the JOSE library.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::nid::Nid;
use openssl::pkey::Private;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::jwe::{AgreementParams, CONTENT_ENCRYPTION, KeyAlg};

/// A P-256 private key ready for key agreement.
pub(super) struct Agreement {
    group: EcGroup,
    key: EcKey<Private>,
}

fn b64(value: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value).ok()
}

impl Agreement {
    /// From the JWK's `d`, `x` and `y` (base64url); checks that they form
    /// a valid key pair on P-256.
    pub fn from_jwk(d: &str, x: &str, y: &str) -> Result<Self, String> {
        let bad = || "the private key is invalid".to_string();
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(|_| bad())?;
        let d = Zeroizing::new(b64(d).ok_or_else(bad)?);
        let (x, y) = (b64(x).ok_or_else(bad)?, b64(y).ok_or_else(bad)?);
        if d.len() != 32 || x.len() != 32 || y.len() != 32 {
            return Err(bad());
        }
        let mut ctx = BigNumContext::new().map_err(|_| bad())?;
        let public = point(&group, &x, &y, &mut ctx).ok_or_else(bad)?;
        let scalar = BigNum::from_slice(&d).map_err(|_| bad())?;
        let key = EcKey::from_private_components(&group, &scalar, &public).map_err(|_| bad())?;
        key.check_key().map_err(|_| bad())?;
        Ok(Self { group, key })
    }

    /// Opens `compact` whose header (already checked for shape) gave
    /// `params`. `None` for every failure: the caller reports one reason.
    pub fn open(
        &self,
        alg: KeyAlg,
        compact: &str,
        params: &AgreementParams,
    ) -> Option<Zeroizing<Vec<u8>>> {
        let mut parts = compact.split('.');
        let (header_b64, encrypted_key, iv, ciphertext, tag) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let (x, y) = (b64(&params.x)?, b64(&params.y)?);
        let party = |p: &Option<String>| p.as_deref().map_or(Some(Vec::new()), b64);
        let (apu, apv) = (party(&params.apu)?, party(&params.apv)?);

        let z = self.shared_secret(&x, &y)?;
        let cek = match alg {
            KeyAlg::EcdhEs => {
                if !encrypted_key.is_empty() {
                    return None;
                }
                concat_kdf(&z, CONTENT_ENCRYPTION, &apu, &apv)
            }
            KeyAlg::EcdhEsA256kw => {
                let kek = concat_kdf(&z, alg.name(), &apu, &apv);
                let wrapped = b64(encrypted_key)?;
                if wrapped.len() != 40 {
                    return None;
                }
                let mut cek = Zeroizing::new([0u8; 32]);
                aes_kw::KekAes256::from(*kek)
                    .unwrap(&wrapped, cek.as_mut())
                    .ok()?;
                cek
            }
        };
        let iv = b64(iv)?;
        let tag = b64(tag)?;
        if iv.len() != 12 || tag.len() != 16 {
            return None;
        }
        let mut plain = Zeroizing::new(b64(ciphertext)?);
        Aes256Gcm::new(GenericArray::from_slice(cek.as_ref()))
            .decrypt_in_place_detached(
                GenericArray::from_slice(&iv),
                header_b64.as_bytes(),
                plain.as_mut_slice(),
                GenericArray::from_slice(&tag),
            )
            .ok()?;
        Some(plain)
    }

    /// Z: the x coordinate of d·P for the sender's ephemeral point P, which
    /// must be on the curve (P-256 has cofactor 1, so that suffices).
    fn shared_secret(&self, x: &[u8], y: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if x.len() != 32 || y.len() != 32 {
            return None;
        }
        let mut ctx = BigNumContext::new().ok()?;
        let peer = point(&self.group, x, y, &mut ctx)?;
        // The same call OpenSSL's own ECDH makes with a private scalar.
        let mut product = EcPoint::new(&self.group).ok()?;
        product
            .mul2(&self.group, &peer, self.key.private_key(), &mut ctx)
            .ok()?;
        if product.is_infinity(&self.group) {
            return None;
        }
        let mut zx = BigNum::new().ok()?;
        let mut zy = BigNum::new().ok()?;
        product
            .affine_coordinates(&self.group, &mut zx, &mut zy, &mut ctx)
            .ok()?;
        zx.to_vec_padded(32).ok().map(Zeroizing::new)
    }
}

/// An uncompressed point; OpenSSL refuses coordinates not on the curve.
fn point(group: &EcGroup, x: &[u8], y: &[u8], ctx: &mut BigNumContext) -> Option<EcPoint> {
    let mut encoded = Vec::with_capacity(65);
    encoded.push(0x04);
    encoded.extend_from_slice(x);
    encoded.extend_from_slice(y);
    let point = EcPoint::from_bytes(group, &encoded, ctx).ok()?;
    (!point.is_infinity(group)).then_some(point)
}

/// Concat KDF (NIST SP 800-56A, as RFC 7518 §4.6.2 uses it) for a 256-bit
/// key: one SHA-256 round over the counter, Z and the other info.
fn concat_kdf(z: &[u8], algorithm: &str, apu: &[u8], apv: &[u8]) -> Zeroizing<[u8; 32]> {
    concat_kdf_round(z, algorithm, apu, apv, 256)
}

/// One round of the Concat KDF for a key of `bits` (at most 256); the key
/// is the first `bits / 8` bytes.
fn concat_kdf_round(
    z: &[u8],
    algorithm: &str,
    apu: &[u8],
    apv: &[u8],
    bits: u32,
) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    for field in [algorithm.as_bytes(), apu, apv] {
        h.update((field.len() as u32).to_be_bytes());
        h.update(field);
    }
    h.update(bits.to_be_bytes());
    Zeroizing::new(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_kdf_matches_rfc_7518_appendix_c() {
        // RFC 7518 Appendix C: ECDH-ES with A128GCM, apu "Alice", apv "Bob".
        let z: [u8; 32] = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let out = concat_kdf_round(&z, "A128GCM", b"Alice", b"Bob", 128);
        assert_eq!(
            &out[..16],
            &[
                86, 170, 141, 234, 248, 35, 109, 32, 92, 34, 40, 205, 113, 167, 16, 26
            ]
        );
    }
}

#[cfg(test)]
mod differential {
    //! Our open against the JOSE library's, on what the library seals.
    use josekit::jwe::{ECDH_ES, ECDH_ES_A256KW, JweHeader};
    use josekit::jwk::KeyPair;
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};

    use super::*;

    fn setup(alg: KeyAlg) -> (Agreement, josekit::jwk::Jwk) {
        let pair = EcKeyPair::generate(EcCurve::P256).unwrap();
        let jwk = pair.to_jwk_key_pair();
        let s = |k: &str| jwk.parameter(k).unwrap().as_str().unwrap().to_string();
        let agreement = Agreement::from_jwk(&s("d"), &s("x"), &s("y")).unwrap();
        let _ = alg;
        (agreement, pair.to_jwk_public_key())
    }

    fn header_of(compact: &str) -> AgreementParams {
        let h = URL_SAFE_NO_PAD
            .decode(compact.split('.').next().unwrap())
            .unwrap();
        let h: serde_json::Value = serde_json::from_slice(&h).unwrap();
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        AgreementParams {
            x: text(&h["epk"]["x"]).unwrap(),
            y: text(&h["epk"]["y"]).unwrap(),
            apu: text(&h["apu"]),
            apv: text(&h["apv"]),
        }
    }

    #[test]
    fn opens_what_the_jose_library_seals_in_both_modes_with_party_info() {
        for alg in [KeyAlg::EcdhEsA256kw, KeyAlg::EcdhEs] {
            let (agreement, public) = setup(alg);
            let algorithm = match alg {
                KeyAlg::EcdhEsA256kw => &ECDH_ES_A256KW,
                KeyAlg::EcdhEs => &ECDH_ES,
            };
            for (i, payload) in [b"".as_slice(), b"x", &[7u8; 1000]].iter().enumerate() {
                let mut encrypter = algorithm.encrypter_from_jwk(&public).unwrap();
                if i == 2 {
                    encrypter.set_agreement_partyuinfo(b"Alice".to_vec());
                    encrypter.set_agreement_partyvinfo(b"Bob".to_vec());
                }
                let mut header = JweHeader::new();
                header.set_content_encryption("A256GCM");
                let compact =
                    josekit::jwe::serialize_compact(payload, &header, &encrypter).unwrap();
                let opened = agreement.open(alg, &compact, &header_of(&compact));
                assert_eq!(
                    opened.as_deref().map(Vec::as_slice),
                    Some(*payload),
                    "{alg:?} #{i}"
                );
                // The other mode's key derivation never opens it.
                let other = match alg {
                    KeyAlg::EcdhEs => KeyAlg::EcdhEsA256kw,
                    KeyAlg::EcdhEsA256kw => KeyAlg::EcdhEs,
                };
                assert!(
                    agreement
                        .open(other, &compact, &header_of(&compact))
                        .is_none()
                );
            }
        }
    }

    #[test]
    fn refuses_points_off_the_curve_and_the_wrong_key() {
        let (agreement, public) = setup(KeyAlg::EcdhEsA256kw);
        let encrypter = ECDH_ES_A256KW.encrypter_from_jwk(&public).unwrap();
        let mut header = JweHeader::new();
        header.set_content_encryption("A256GCM");
        let compact = josekit::jwe::serialize_compact(b"secret", &header, &encrypter).unwrap();
        let mut members = header_of(&compact);
        let mut bytes = URL_SAFE_NO_PAD.decode(&members.y).unwrap();
        bytes[31] ^= 1;
        members.y = URL_SAFE_NO_PAD.encode(&bytes);
        assert!(
            agreement
                .open(KeyAlg::EcdhEsA256kw, &compact, &members)
                .is_none()
        );
        let (stranger, _) = setup(KeyAlg::EcdhEsA256kw);
        assert!(
            stranger
                .open(KeyAlg::EcdhEsA256kw, &compact, &header_of(&compact))
                .is_none()
        );
        assert!(Agreement::from_jwk("AAAA", "AAAA", "AAAA").is_err());
    }
}
