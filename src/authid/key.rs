//! One server key: a P-256 private JWK with its pinned algorithm, and the
//! JOSE encrypter and the key-agreement key built from it once at load.

use hkdf::Hkdf;
use josekit::jwe::alg::ecdh_es::{EcdhEsJweAlgorithm, EcdhEsJweEncrypter};
use josekit::jwe::{ECDH_ES, ECDH_ES_A256KW, JweHeader};
use josekit::jwk::Jwk;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use serde_json::{Map, Value};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::decrypt::Agreement;
use super::jwe::{CONTENT_ENCRYPTION, KeyAlg};

/// josekit's encrypter for a key-management algorithm.
fn encrypter_algorithm(alg: KeyAlg) -> &'static EcdhEsJweAlgorithm {
    match alg {
        KeyAlg::EcdhEsA256kw => &ECDH_ES_A256KW,
        KeyAlg::EcdhEs => &ECDH_ES,
    }
}

/// A loaded private key. The private scalar is kept only as derived key
/// material (zeroized on drop) and inside OpenSSL's key object.
pub struct ServerKey {
    kid: String,
    alg: KeyAlg,
    created: Option<i64>,
    encrypter: EcdhEsJweEncrypter,
    agreement: Agreement,
    public_jwk: Jwk,
    derivation_secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Key ids appear in headers, file names and metric labels: keep them plain.
pub fn is_valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !kid.starts_with('.')
}

impl ServerKey {
    /// Makes a new P-256 key. Returns the key and its private JWK JSON, to
    /// be written to a file by the caller.
    pub fn generate(kid: &str, created: i64) -> Result<(Self, Zeroizing<String>), String> {
        if !is_valid_kid(kid) {
            return Err("invalid key id".into());
        }
        let pair = EcKeyPair::generate(EcCurve::P256).map_err(|e| e.to_string())?;
        let mut jwk = josekit::jwk::KeyPair::to_jwk_key_pair(&pair);
        jwk.set_key_id(kid);
        jwk.set_algorithm(KeyAlg::EcdhEsA256kw.name());
        jwk.set_key_use("enc");
        jwk.set_parameter("created", Some(Value::from(created)))
            .map_err(|e| e.to_string())?;
        let json = Zeroizing::new(jwk.to_string());
        let key = Self::from_jwk(jwk)?;
        Ok((key, json))
    }

    /// Loads a private JWK. Errors name the problem but never echo key
    /// material.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let jwk = Jwk::from_bytes(bytes).map_err(|_| "not a JSON Web Key".to_string())?;
        Self::from_jwk(jwk)
    }

    /// Loads a private JWK from an already parsed JSON object.
    pub fn from_map(map: Map<String, Value>) -> Result<Self, String> {
        let jwk = Jwk::from_map(map).map_err(|_| "not a JSON Web Key".to_string())?;
        Self::from_jwk(jwk)
    }

    fn from_jwk(jwk: Jwk) -> Result<Self, String> {
        let kid = jwk.key_id().ok_or("the key has no \"kid\"")?.to_string();
        if !is_valid_kid(&kid) {
            return Err("the \"kid\" must be 1-64 letters, digits, '.', '_' or '-'".into());
        }
        if jwk.key_type() != "EC" || jwk.curve() != Some("P-256") {
            return Err("the key must be an EC key on P-256 (kty EC, crv P-256)".into());
        }
        let alg = match jwk.algorithm() {
            None => KeyAlg::EcdhEsA256kw,
            Some(name) => KeyAlg::from_name(name)
                .ok_or("the key's \"alg\" must be ECDH-ES+A256KW or ECDH-ES")?,
        };
        if jwk.key_use().is_some_and(|u| u != "enc") {
            return Err("the key's \"use\" must be \"enc\"".into());
        }
        let created = match jwk.parameter("created") {
            None => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or("\"created\" must be a number of seconds")?,
            ),
        };
        let d = match jwk.parameter("d") {
            Some(Value::String(d)) => Zeroizing::new(d.clone()),
            _ => return Err("the file holds no private key (\"d\")".into()),
        };
        let coordinate = |name: &str| match jwk.parameter(name) {
            Some(Value::String(v)) => Ok(v.clone()),
            _ => Err("the key lacks its public coordinates (\"x\", \"y\")".to_string()),
        };
        let agreement = Agreement::from_jwk(&d, &coordinate("x")?, &coordinate("y")?)?;
        let mut public_jwk = jwk
            .to_public_key()
            .map_err(|_| "the public key cannot be derived".to_string())?;
        let encrypter = encrypter_algorithm(alg)
            .encrypter_from_jwk(&public_jwk)
            .map_err(|_| "the public key is invalid".to_string())?;
        // `to_public_key` keeps only kty, use, crv, x and y. A system minting
        // AuthIDs from the published key needs the kid for the header and
        // the pinned algorithm.
        public_jwk.set_key_id(kid.as_str());
        public_jwk.set_algorithm(alg.name());
        let derivation_secret = Zeroizing::new(d.as_bytes().to_vec());
        scrub(jwk);
        Ok(Self {
            kid,
            alg,
            created,
            encrypter,
            agreement,
            public_jwk,
            derivation_secret,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    pub fn created(&self) -> Option<i64> {
        self.created
    }

    /// The public JWK: what another system needs to mint AuthIDs.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public_jwk
    }

    /// A 256-bit key for another purpose (e.g. login state), derived with
    /// HKDF-SHA256 from the private scalar and a purpose label.
    pub fn derive_key(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(
            Some(b"oauth-broker key derivation"),
            &self.derivation_secret,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        // 32 bytes is always a valid HKDF-SHA256 output length.
        if hk.expand(purpose.as_bytes(), out.as_mut()).is_err() {
            unreachable!("32-byte HKDF output");
        }
        out
    }

    /// Seals a payload as a compact JWE with this key's pinned algorithm.
    pub(super) fn seal(&self, payload: &[u8]) -> Result<String, String> {
        let mut header = JweHeader::new();
        header.set_content_encryption(CONTENT_ENCRYPTION);
        header.set_key_id(self.kid.as_str());
        josekit::jwe::serialize_compact(payload, &header, &self.encrypter)
            .map_err(|e| e.to_string())
    }

    /// Opens a compact JWE whose header has already been checked.
    pub(super) fn open(
        &self,
        compact: &str,
        params: &super::jwe::AgreementParams,
    ) -> Option<Zeroizing<Vec<u8>>> {
        self.agreement.open(self.alg, compact, params)
    }
}

/// Overwrites the private scalar left in a parsed JWK before it is dropped.
fn scrub(jwk: Jwk) {
    let mut map: Map<String, Value> = jwk.into();
    if let Some(Value::String(d)) = map.get_mut("d") {
        d.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_reloads_from_its_json() {
        let (key, json) = ServerKey::generate("k1", 42).unwrap();
        let again = ServerKey::from_json(json.as_bytes()).unwrap();
        assert_eq!(again.kid(), "k1");
        assert_eq!(again.created(), Some(42));
        assert_eq!(again.alg(), KeyAlg::EcdhEsA256kw);
        assert_eq!(*key.derive_key("x"), *again.derive_key("x"));
        assert_ne!(*key.derive_key("x"), *key.derive_key("y"));
        let public = key.public_jwk();
        assert!(public.parameter("d").is_none());
        assert_eq!(public.key_id(), Some("k1"));
        assert_eq!(public.algorithm(), Some("ECDH-ES+A256KW"));
        assert_eq!(public.key_use(), Some("enc"));
    }

    #[test]
    fn refuses_keys_it_cannot_use() {
        let (_, json) = ServerKey::generate("k1", 1).unwrap();
        let good: Map<String, Value> = serde_json::from_str(&json).unwrap();
        let with = |k: &str, v: Value| {
            let mut m = good.clone();
            m.insert(k.into(), v);
            ServerKey::from_map(m)
        };
        let without = |k: &str| {
            let mut m = good.clone();
            m.remove(k);
            ServerKey::from_map(m)
        };
        assert!(with("alg", "RSA-OAEP".into()).is_err());
        assert!(with("alg", "dir".into()).is_err());
        assert!(with("crv", "P-384".into()).is_err());
        assert!(with("use", "sig".into()).is_err());
        assert!(with("kid", "../etc".into()).is_err());
        assert!(with("created", "yesterday".into()).is_err());
        assert!(without("kid").is_err());
        assert!(without("d").is_err());
        assert!(with("alg", "ECDH-ES".into()).is_ok());
        assert!(ServerKey::from_json(b"{}").is_err());
        assert!(ServerKey::from_json(b"garbage").is_err());
    }

    #[test]
    fn errors_never_contain_key_material() {
        let (_, json) = ServerKey::generate("k1", 1).unwrap();
        let mut m: Map<String, Value> = serde_json::from_str(&json).unwrap();
        let d = m["d"].as_str().unwrap().to_string();
        m.insert("x".into(), "AAAA".into());
        let err = ServerKey::from_map(m).unwrap_err();
        assert!(!err.contains(&d));
    }
}
