//! Structural checks on a compact JWE before any cryptography: five
//! base64url parts of plausible sizes and a protected header naming only
//! the algorithms we accept. Everything refused here costs no key agreement.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::AuthIdError;

/// The only content encryption this broker produces or accepts.
pub const CONTENT_ENCRYPTION: &str = "A256GCM";

/// Key-management algorithm, pinned per key by the JWK's `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    EcdhEsA256kw,
    EcdhEs,
}

impl KeyAlg {
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdhEsA256kw => "ECDH-ES+A256KW",
            Self::EcdhEs => "ECDH-ES",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ECDH-ES+A256KW" => Some(Self::EcdhEsA256kw),
            "ECDH-ES" => Some(Self::EcdhEs),
            _ => None,
        }
    }
}

/// Header members a standard JOSE library may write for ECDH-ES. Anything
/// else (`zip`, `crit`, `jku`, `jwk`, `x5u`, ...) is refused.
const ALLOWED_HEADER_MEMBERS: &[&str] = &["alg", "enc", "kid", "epk", "typ", "cty", "apu", "apv"];
const MAX_HEADER_LEN: usize = 1024;

/// What the key agreement takes from the header (base64url texts, not
/// decoded yet). Absent when the header's `epk`, `apu` or `apv` cannot
/// serve (not an EC P-256 key, not texts): opening then fails as a
/// decryption does.
#[derive(Debug)]
pub(super) struct AgreementParams {
    pub x: String,
    pub y: String,
    pub apu: Option<String>,
    pub apv: Option<String>,
}

/// What the protected header says, once checked.
#[derive(Debug)]
pub(super) struct Header {
    pub alg: KeyAlg,
    pub kid: String,
    pub params: Option<AgreementParams>,
}

/// The members every header has, as texts.
struct Named {
    alg: String,
    enc: String,
    kid: String,
    /// Whether `epk` is a JSON object.
    epk_object: bool,
    params: Option<AgreementParams>,
}

pub(super) fn inspect(compact: &str) -> Result<Header, AuthIdError> {
    let mut parts = compact.split('.');
    let (Some(header), Some(encrypted_key), Some(iv), Some(ciphertext), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(AuthIdError::Malformed(
            "expected five parts separated by dots",
        ));
    };
    for part in [header, encrypted_key, iv, ciphertext, tag] {
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthIdError::Malformed("a part is not base64url"));
        }
    }
    // A256GCM: 96-bit IV, 128-bit tag.
    if iv.len() != 16 || tag.len() != 22 {
        return Err(AuthIdError::Malformed("the IV or tag has the wrong length"));
    }
    if ciphertext.is_empty() {
        return Err(AuthIdError::Malformed("the ciphertext is empty"));
    }
    if header.is_empty() || header.len() > MAX_HEADER_LEN {
        return Err(AuthIdError::Malformed("the header is missing or too long"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthIdError::Malformed("the header is not base64url"))?;
    let named = match typed(&bytes) {
        Some(named) => named,
        None => general(&bytes)?,
    };
    if named.enc != CONTENT_ENCRYPTION || !named.epk_object {
        return Err(AuthIdError::Algorithm);
    }
    let alg = KeyAlg::from_name(&named.alg).ok_or(AuthIdError::Algorithm)?;
    // ECDH-ES has no encrypted key; ECDH-ES+A256KW wraps a 256-bit key (40 bytes).
    let expected_key_len = match alg {
        KeyAlg::EcdhEs => 0,
        KeyAlg::EcdhEsA256kw => 54,
    };
    if encrypted_key.len() != expected_key_len {
        return Err(AuthIdError::Malformed(
            "the encrypted key has the wrong length",
        ));
    }
    Ok(Header {
        alg,
        kid: named.kid,
        params: named.params,
    })
}

/// The header as the JOSE libraries write it, read straight into its
/// fields (every AuthID takes this way). `None` for anything else (an
/// unknown or repeated member, a member of another type), which
/// [`general`] then judges.
fn typed(bytes: &[u8]) -> Option<Named> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Typed {
        alg: String,
        enc: String,
        kid: String,
        epk: Epk,
        #[serde(default)]
        #[allow(dead_code)]
        typ: Option<IgnoredAny>,
        #[serde(default)]
        #[allow(dead_code)]
        cty: Option<IgnoredAny>,
        // Present members are kept as they are, `null` included.
        #[serde(default, deserialize_with = "present")]
        apu: Option<Value>,
        #[serde(default, deserialize_with = "present")]
        apv: Option<Value>,
    }
    #[derive(Deserialize)]
    struct Epk {
        kty: String,
        crv: String,
        x: String,
        y: String,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Value::deserialize(d).map(Some)
    }
    let h: Typed = serde_json::from_slice(bytes).ok()?;
    let p256 = h.epk.kty == "EC" && h.epk.crv == "P-256";
    let params = party(h.apu.as_ref())
        .zip(party(h.apv.as_ref()))
        .filter(|_| p256)
        .map(|(apu, apv)| AgreementParams {
            x: h.epk.x,
            y: h.epk.y,
            apu,
            apv,
        });
    Some(Named {
        alg: h.alg,
        enc: h.enc,
        kid: h.kid,
        epk_object: true,
        params,
    })
}

/// `apu` or `apv`: absent, or a text (`None` when it is something else).
fn party(member: Option<&Value>) -> Option<Option<String>> {
    match member {
        None => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

/// Any JSON object as a header: only the allowed members (else the
/// algorithm is refused), `alg`, `enc` and `kid` as texts.
fn general(bytes: &[u8]) -> Result<Named, AuthIdError> {
    let map: Map<String, Value> = serde_json::from_slice(bytes)
        .map_err(|_| AuthIdError::Malformed("the header is not a JSON object"))?;
    if map
        .keys()
        .any(|k| !ALLOWED_HEADER_MEMBERS.contains(&k.as_str()))
    {
        return Err(AuthIdError::Algorithm);
    }
    let text = |name: &str| match map.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(AuthIdError::Malformed("the header lacks alg, enc or kid")),
    };
    let (alg, enc, kid) = (text("alg")?, text("enc")?, text("kid")?);
    let epk = map.get("epk").and_then(Value::as_object);
    let member = |o: &Map<String, Value>, name: &str| o.get(name)?.as_str().map(str::to_string);
    let params = epk
        .filter(|e| member(e, "kty").as_deref() == Some("EC"))
        .filter(|e| member(e, "crv").as_deref() == Some("P-256"))
        .and_then(|e| Some((member(e, "x")?, member(e, "y")?)))
        .and_then(|(x, y)| {
            let (apu, apv) = (party(map.get("apu"))?, party(map.get("apv"))?);
            Some(AgreementParams { x, y, apu, apv })
        });
    Ok(Named {
        alg,
        enc,
        kid,
        epk_object: epk.is_some(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Summary = (String, String, String, bool, Option<[Option<String>; 4]>);

    fn summary(n: &Named) -> Summary {
        let params = n.params.as_ref().map(|p| {
            [
                Some(p.x.clone()),
                Some(p.y.clone()),
                p.apu.clone(),
                p.apv.clone(),
            ]
        });
        (
            n.alg.clone(),
            n.enc.clone(),
            n.kid.clone(),
            n.epk_object,
            params,
        )
    }

    const EPK: &str = r#""epk":{"kty":"EC","crv":"P-256","x":"eA","y":"eQ"}"#;

    #[test]
    fn the_typed_reading_agrees_with_the_general_one() {
        let head = r#""alg":"ECDH-ES","enc":"A256GCM","kid":"k""#;
        for json in [
            format!("{{{head},{EPK}}}"),
            format!(r#"{{{head},{EPK},"apu":"QQ","apv":"Qg","typ":"JWE","cty":7}}"#),
            format!(r#"{{{head},"epk":{{"kty":"EC","crv":"P-384","x":"eA","y":"eQ","kid":1}}}}"#),
            format!(r#"{{{head},{EPK},"apu":null}}"#),
            format!(r#"{{{head},{EPK},"apv":5}}"#),
        ] {
            let fast = typed(json.as_bytes()).unwrap_or_else(|| panic!("{json}"));
            let slow = general(json.as_bytes()).unwrap();
            assert_eq!(summary(&fast), summary(&slow), "{json}");
        }
        let plain = typed(format!("{{{head},{EPK}}}").as_bytes()).unwrap();
        assert!(plain.params.is_some());
        let null_apu = typed(format!(r#"{{{head},{EPK},"apu":null}}"#).as_bytes()).unwrap();
        assert!(null_apu.params.is_none(), "apu must be a text");
    }

    #[test]
    fn what_the_typed_reading_leaves_is_judged_by_the_general_one() {
        let epk = EPK;
        for json in [
            format!(r#"{{"alg":"ECDH-ES","enc":"A256GCM","kid":"k",{epk},"zip":"DEF"}}"#),
            format!(
                r#"{{"alg":"ECDH-ES","alg":"ECDH-ES+A256KW","enc":"A256GCM","kid":"k",{epk}}}"#
            ),
            format!(r#"{{"alg":1,"enc":"A256GCM","kid":"k",{epk}}}"#),
            r#"{"alg":"ECDH-ES","enc":"A256GCM","kid":"k","epk":"x"}"#.to_string(),
            r#"{"alg":"ECDH-ES","enc":"A256GCM","kid":"k","epk":{"kty":"EC"}}"#.to_string(),
            "[1]".to_string(),
        ] {
            assert!(typed(json.as_bytes()).is_none(), "{json}");
        }
        let judged = |json: &str| general(json.as_bytes()).map(|n| summary(&n));
        assert_eq!(
            judged(&format!(
                r#"{{"alg":"ECDH-ES","enc":"A256GCM","kid":"k",{epk},"zip":"DEF"}}"#
            )),
            Err(AuthIdError::Algorithm)
        );
        assert_eq!(
            judged(&format!(r#"{{"alg":1,"enc":"A256GCM","kid":"k",{epk}}}"#)),
            Err(AuthIdError::Malformed("the header lacks alg, enc or kid"))
        );
        let repeated = judged(&format!(
            r#"{{"alg":"ECDH-ES","alg":"ECDH-ES+A256KW","enc":"A256GCM","kid":"k",{epk}}}"#
        ))
        .unwrap();
        assert_eq!(repeated.0, "ECDH-ES+A256KW", "the last one, as before");
        let not_object = judged(r#"{"alg":"ECDH-ES","enc":"A256GCM","kid":"k","epk":"x"}"#);
        assert!(!not_object.unwrap().3);
        let partial = judged(r#"{"alg":"ECDH-ES","enc":"A256GCM","kid":"k","epk":{"kty":"EC"}}"#);
        assert!(partial.unwrap().4.is_none());
    }
}
