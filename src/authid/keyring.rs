//! The keyring: every loaded server key, one of them primary. The running
//! server holds it in a [`KeyringHandle`] and swaps the whole keyring
//! atomically on reload, so in-flight requests finish with the keys they
//! started with.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use zeroize::Zeroizing;

use super::jwe;
use super::keystats::KeyStats;
use super::{AuthIdError, Claims, ServerKey, V3_PREFIX};

/// A set of keys with one primary. Immutable once built.
#[derive(Debug)]
pub struct Keyring {
    keys: HashMap<String, Arc<ServerKey>>,
    primary: Arc<ServerKey>,
    retired: HashSet<String>,
    /// Retired keys that may have been exposed: their carry-overs end.
    compromised: HashSet<String>,
}

/// An opened v3 AuthID.
#[derive(Debug)]
pub struct Opened {
    pub claims: Claims,
    /// The key that opened it.
    pub kid: String,
    /// False when the key is not primary: the client should get a re-sealed
    /// AuthID so it migrates off the old key.
    pub by_primary: bool,
}

impl Keyring {
    /// Builds a keyring. `primary` must be one of `keys`; kids are unique.
    pub fn new(
        keys: impl IntoIterator<Item = impl Into<Arc<ServerKey>>>,
        primary: &str,
        retired: HashSet<String>,
    ) -> Result<Self, String> {
        let mut map = HashMap::new();
        for key in keys {
            let key: Arc<ServerKey> = key.into();
            let kid = key.kid().to_string();
            if map.insert(kid.clone(), key).is_some() {
                return Err(format!("two keys have the kid {kid}"));
            }
        }
        let primary = map
            .get(primary)
            .cloned()
            .ok_or_else(|| format!("the primary key {primary} is not loaded"))?;
        Ok(Self {
            keys: map,
            primary,
            retired,
            compromised: HashSet::new(),
        })
    }

    /// Marks retired keys as compromised (`keys retire KID --compromised`).
    pub fn with_compromised(mut self, compromised: HashSet<String>) -> Self {
        self.compromised = compromised;
        self
    }

    /// True for a kid retired here (its file in `retired/`, or marked
    /// compromised).
    pub fn is_retired(&self, kid: &str) -> bool {
        self.retired.contains(kid) || self.compromised.contains(kid)
    }

    pub fn is_compromised(&self, kid: &str) -> bool {
        self.compromised.contains(kid)
    }

    pub fn compromised(&self) -> &HashSet<String> {
        &self.compromised
    }

    /// A keyring of one fresh key held only in memory (demo mode, tests).
    pub fn ephemeral() -> Result<Self, String> {
        let kid = format!("ephemeral-{}", &crate::secret::random_id()[..8]);
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let (key, _json) = ServerKey::generate(&kid, now)?;
        Self::new([key], &kid, HashSet::new())
    }

    pub fn primary(&self) -> &Arc<ServerKey> {
        &self.primary
    }

    pub fn get(&self, kid: &str) -> Option<&Arc<ServerKey>> {
        self.keys.get(kid)
    }

    /// Keys sorted by kid.
    pub fn keys(&self) -> Vec<&Arc<ServerKey>> {
        let mut keys: Vec<_> = self.keys.values().collect();
        keys.sort_by(|a, b| a.kid().cmp(b.kid()));
        keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals claims with the primary key: `v3:<compact JWE>`.
    pub fn seal(&self, claims: &Claims) -> Result<String, String> {
        let payload = Zeroizing::new(serde_json::to_vec(claims).map_err(|e| e.to_string())?);
        let compact = self.primary.seal(&payload)?;
        Ok(format!("{V3_PREFIX}{compact}"))
    }

    /// Opens the compact JWE of a v3 AuthID (the text after `v3:`).
    pub fn open(&self, compact: &str) -> Result<Opened, AuthIdError> {
        let header = jwe::inspect(compact)?;
        let key = match self.keys.get(&header.kid) {
            Some(key) => key,
            None if self.compromised.contains(&header.kid) => {
                return Err(AuthIdError::CompromisedKey);
            }
            None if self.retired.contains(&header.kid) => return Err(AuthIdError::RetiredKey),
            None => return Err(AuthIdError::UnknownKey),
        };
        if header.alg != key.alg() {
            return Err(AuthIdError::Algorithm);
        }
        let payload = header
            .params
            .as_ref()
            .and_then(|params| key.open(compact, params))
            .ok_or(AuthIdError::Decrypt)?;
        let claims = Claims::from_payload(&payload)?;
        Ok(Opened {
            claims,
            kid: key.kid().to_string(),
            by_primary: Arc::ptr_eq(key, &self.primary),
        })
    }
}

/// The kid named in the header of a v3 AuthID's compact JWE, without
/// opening it.
pub fn sealing_kid(compact: &str) -> Result<String, AuthIdError> {
    Ok(jwe::inspect(compact)?.kid)
}

/// The live keyring of a running server.
#[derive(Debug)]
pub struct KeyringHandle {
    current: ArcSwap<Keyring>,
    stats: KeyStats,
}

impl KeyringHandle {
    pub fn new(keyring: Keyring) -> Self {
        Self {
            current: ArcSwap::from_pointee(keyring),
            stats: KeyStats::default(),
        }
    }

    /// The keyring as it is now; hold it for the length of one request.
    pub fn current(&self) -> Arc<Keyring> {
        self.current.load_full()
    }

    /// Replaces the keyring atomically.
    pub fn replace(&self, keyring: Keyring) {
        self.current.store(Arc::new(keyring));
    }

    pub fn stats(&self) -> &KeyStats {
        &self.stats
    }

    /// Opens with the current keyring and counts the key that opened it.
    pub fn open(&self, compact: &str) -> Result<Opened, AuthIdError> {
        let opened = self.current.load().open(compact)?;
        self.stats.record_open(&opened.kid);
        Ok(opened)
    }

    pub fn seal(&self, claims: &Claims) -> Result<String, String> {
        self.current.load().seal(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authid::{AuthIdText, parse};
    use crate::secret::Sensitive;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    fn ring(kids: &[&str], primary: &str, retired: &[&str]) -> Keyring {
        let keys: Vec<ServerKey> = kids
            .iter()
            .map(|k| ServerKey::generate(k, 1).unwrap().0)
            .collect();
        Keyring::new(
            keys,
            primary,
            retired.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap()
    }

    fn claims() -> Claims {
        Claims::new(
            "googledrive",
            Sensitive::new("1//refresh-token"),
            1_700_000_000,
        )
    }

    fn jwe_of(authid: &str) -> &str {
        match parse(authid).unwrap() {
            AuthIdText::V3(jwe) => jwe,
            _ => panic!("not v3"),
        }
    }

    fn parts(authid: &str) -> Vec<String> {
        jwe_of(authid).split('.').map(str::to_string).collect()
    }

    fn header_of(authid: &str) -> serde_json::Map<String, Value> {
        let h = URL_SAFE_NO_PAD.decode(&parts(authid)[0]).unwrap();
        serde_json::from_slice(&h).unwrap()
    }

    fn with_header(authid: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
        let mut header = header_of(authid);
        edit(&mut header);
        let mut p = parts(authid);
        p[0] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        p.join(".")
    }

    #[test]
    fn round_trip() {
        let ring = ring(&["a"], "a", &[]);
        let c = claims();
        let authid = ring.seal(&c).unwrap();
        assert!(authid.starts_with("v3:"));
        assert!(!authid.contains("refresh-token"));
        let opened = ring.open(jwe_of(&authid)).unwrap();
        assert_eq!(opened.claims.provider, "googledrive");
        assert_eq!(opened.claims.rt.expose(), "1//refresh-token");
        assert_eq!(opened.claims.jti, c.jti);
        assert_eq!(opened.claims.iat, 1_700_000_000);
        assert_eq!(opened.kid, "a");
        assert!(opened.by_primary);
    }

    #[test]
    fn header_is_pinned() {
        let ring = ring(&["a"], "a", &[]);
        let authid = ring.seal(&claims()).unwrap();
        let h = header_of(&authid);
        assert_eq!(h["alg"], "ECDH-ES+A256KW");
        assert_eq!(h["enc"], "A256GCM");
        assert_eq!(h["kid"], "a");
    }

    #[test]
    fn any_loaded_key_opens_and_reports_non_primary() {
        let old = ring(&["old"], "old", &[]);
        let authid = old.seal(&claims()).unwrap();
        let old_key = Arc::clone(old.get("old").unwrap());
        let new_key = Arc::new(ServerKey::generate("new", 2).unwrap().0);
        let keys = vec![old_key, new_key];
        let both = Keyring::new(keys, "new", HashSet::new()).unwrap();
        let opened = both.open(jwe_of(&authid)).unwrap();
        assert_eq!(opened.kid, "old");
        assert!(!opened.by_primary);
    }

    #[test]
    fn unknown_and_retired_keys_are_unauthorized() {
        let a = ring(&["a"], "a", &[]);
        let authid = a.seal(&claims()).unwrap();
        let b = ring(&["b"], "b", &[]);
        assert_eq!(
            b.open(jwe_of(&authid)).unwrap_err(),
            AuthIdError::UnknownKey
        );
        let b_retired_a = ring(&["b"], "b", &["a"]);
        let err = b_retired_a.open(jwe_of(&authid)).unwrap_err();
        assert_eq!(err, AuthIdError::RetiredKey);
        assert!(err.is_unauthorized());
    }

    #[test]
    fn same_kid_different_key_fails_to_decrypt() {
        let a1 = ring(&["a"], "a", &[]);
        let a2 = ring(&["a"], "a", &[]);
        let authid = a1.seal(&claims()).unwrap();
        assert_eq!(a2.open(jwe_of(&authid)).unwrap_err(), AuthIdError::Decrypt);
    }

    #[test]
    fn foreign_algorithms_are_refused_before_decryption() {
        let ring = ring(&["a"], "a", &[]);
        let authid = ring.seal(&claims()).unwrap();
        for (name, value) in [
            ("alg", json!("none")),
            ("alg", json!("HS256")),
            ("alg", json!("dir")),
            ("alg", json!("RSA-OAEP-256")),
            ("alg", json!("ECDH-ES+A128KW")),
            ("alg", json!("A256KW")),
            ("enc", json!("A128GCM")),
            ("enc", json!("A256CBC-HS512")),
            ("zip", json!("DEF")),
            ("crit", json!(["exp"])),
            ("jku", json!("https://attacker.example/jwks")),
            ("jwk", json!({"kty": "EC"})),
            ("epk", json!("not an object")),
        ] {
            let forged = with_header(&authid, |h| {
                h.insert(name.into(), value.clone());
            });
            let err = ring.open(&forged).unwrap_err();
            assert!(
                matches!(err, AuthIdError::Algorithm | AuthIdError::Malformed(_)),
                "{name}={value}: {err:?}"
            );
        }
    }

    #[test]
    fn a_key_pinned_to_ecdh_es_refuses_the_other_mode() {
        let (key, json) = ServerKey::generate("a", 1).unwrap();
        let mut map: serde_json::Map<String, Value> = serde_json::from_str(&json).unwrap();
        map.insert("alg".into(), "ECDH-ES".into());
        let direct =
            Keyring::new(vec![ServerKey::from_map(map).unwrap()], "a", HashSet::new()).unwrap();
        let wrapped = Keyring::new(vec![key], "a", HashSet::new()).unwrap();
        let authid = wrapped.seal(&claims()).unwrap();
        assert_eq!(
            direct.open(jwe_of(&authid)).unwrap_err(),
            AuthIdError::Algorithm
        );
        let authid = direct.seal(&claims()).unwrap();
        assert!(parts(&authid)[1].is_empty());
        assert!(direct.open(jwe_of(&authid)).is_ok());
    }

    #[test]
    fn tampering_any_part_is_refused() {
        let ring = ring(&["a"], "a", &[]);
        let authid = ring.seal(&claims()).unwrap();
        for i in 0..5 {
            let mut p = parts(&authid);
            let flipped: String = p[i]
                .chars()
                .enumerate()
                .map(|(j, c)| {
                    if j == 3 {
                        if c == 'A' { 'B' } else { 'A' }
                    } else {
                        c
                    }
                })
                .collect();
            p[i] = flipped;
            assert!(ring.open(&p.join(".")).is_err(), "part {i}");
        }
        // A changed but still valid header (typ added) breaks the AAD.
        let forged = with_header(&authid, |h| {
            h.insert("typ".into(), "JWE".into());
        });
        assert_eq!(ring.open(&forged).unwrap_err(), AuthIdError::Decrypt);
    }

    #[test]
    fn structural_errors_are_bad_requests() {
        let ring = ring(&["a"], "a", &[]);
        let authid = ring.seal(&claims()).unwrap();
        let p = parts(&authid);
        for bad in [
            String::new(),
            "a.b.c.d".into(),
            "a.b.c.d.e.f".into(),
            format!("{}.{}.{}.{}", p[0], p[1], p[2], p[3]),
            format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], p[3], "!!!!"),
            format!("{}.{}.{}.{}.{}", "e30", p[1], p[2], p[3], p[4]),
            format!("{}.{}.{}.{}.{}", "bm90IGpzb24", p[1], p[2], p[3], p[4]),
            format!("{}.{}.{}.{}.{}", p[0], p[1], "short", p[3], p[4]),
            format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], "", p[4]),
            format!("{}.{}.{}.{}.{}", p[0], "", p[2], p[3], p[4]),
        ] {
            let err = ring.open(&bad).unwrap_err();
            assert!(!err.is_unauthorized(), "{bad}: {err:?}");
        }
    }

    #[test]
    fn handle_counts_opens_per_key_across_reloads() {
        let handle = KeyringHandle::new(ring(&["a"], "a", &[]));
        let authid = handle.seal(&claims()).unwrap();
        handle.open(jwe_of(&authid)).unwrap();
        let key_a = Arc::clone(handle.current().get("a").unwrap());
        let b = Arc::new(ServerKey::generate("b", 2).unwrap().0);
        handle.replace(Keyring::new(vec![key_a, b], "b", HashSet::new()).unwrap());
        let opened = handle.open(jwe_of(&authid)).unwrap();
        assert!(!opened.by_primary);
        assert_eq!(handle.stats().opened("a"), 2);
        assert_eq!(handle.stats().opened("b"), 0);
    }
}
