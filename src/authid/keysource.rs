//! Where the server takes its keys from: a key directory (`KEYS_DIR`), or
//! a JWK Set passed in the environment (`KEYS`), read here. Also the public
//! JWK Set of a keyring, the same format the other way.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::keydir::KeyDir;
use super::{Keyring, ServerKey};
use crate::secret::{Sensitive, decode_inline};

/// Where the server takes its keys from.
#[derive(Debug, Clone)]
pub enum KeySource {
    Dir(PathBuf),
    /// A JWK Set as JSON text, or `base64:` followed by it.
    Set(Sensitive),
}

impl KeySource {
    /// `KEYS` wins over `KEYS_DIR` when both are given.
    pub fn from_settings(keys: Option<&str>, keys_dir: &Path) -> Self {
        match keys.map(str::trim).filter(|k| !k.is_empty()) {
            Some(set) => Self::Set(Sensitive::new(set)),
            None => Self::Dir(keys_dir.to_path_buf()),
        }
    }

    /// Loads every key, or reports every problem found.
    pub fn load(&self) -> Result<Keyring, Vec<String>> {
        match self {
            Self::Dir(dir) => KeyDir::new(dir).load(),
            Self::Set(text) => load_set(text.expose()),
        }
    }
}

fn load_set(text: &str) -> Result<Keyring, Vec<String>> {
    let bytes = decode_inline(text).map_err(|e| vec![format!("KEYS: {e}")])?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| vec!["KEYS: not JSON (expected a JWK Set {\"keys\": [...]})".to_string()])?;
    let (entries, named_primary) = match value {
        Value::Object(mut map) if map.contains_key("keys") => {
            let primary = map
                .get("primary")
                .and_then(Value::as_str)
                .map(str::to_string);
            match map.remove("keys") {
                Some(Value::Array(keys)) => (keys, primary),
                _ => return Err(vec!["KEYS: \"keys\" must be an array".to_string()]),
            }
        }
        Value::Object(map) => (vec![Value::Object(map)], None),
        _ => {
            return Err(vec![
                "KEYS: expected a JWK Set {\"keys\": [...]}".to_string(),
            ]);
        }
    };
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        match entry {
            Value::Object(map) => match ServerKey::from_map(map) {
                Ok(key) => keys.push(key),
                Err(e) => problems.push(format!("KEYS: key #{i}: {e}")),
            },
            _ => problems.push(format!("KEYS: key #{i}: not a JSON object")),
        }
    }
    if keys.is_empty() && problems.is_empty() {
        problems.push("KEYS: the set holds no keys".to_string());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // The first key of the set is primary unless the set names one.
    let primary = named_primary.unwrap_or_else(|| keys[0].kid().to_string());
    Keyring::new(keys, &primary, HashSet::new()).map_err(|e| vec![format!("KEYS: {e}")])
}

/// Builds the public JWK Set of a keyring's keys (for `keys public`).
pub fn public_set(keyring: &Keyring) -> Value {
    let keys: Vec<Value> = keyring
        .keys()
        .iter()
        .map(|k| Value::Object(Into::<Map<String, Value>>::into(k.public_jwk().clone())))
        .collect();
    serde_json::json!({ "keys": keys })
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn jwk_set_raw_and_base64() {
        let (_, a) = ServerKey::generate("a", 1).unwrap();
        let (_, b) = ServerKey::generate("b", 2).unwrap();
        let set = format!("{{\"keys\":[{},{}]}}", a.as_str(), b.as_str());
        let ring = load_set(&set).unwrap();
        assert_eq!(ring.primary().kid(), "a");
        assert_eq!(ring.len(), 2);
        let b64 = format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(set.as_bytes())
        );
        assert_eq!(load_set(&b64).unwrap().len(), 2);
        let named = format!(
            "{{\"primary\":\"b\",\"keys\":[{},{}]}}",
            a.as_str(),
            b.as_str()
        );
        assert_eq!(load_set(&named).unwrap().primary().kid(), "b");
        assert!(load_set("{\"keys\":[]}").is_err());
        assert!(load_set("base64:!!!").is_err());
        let bad = format!("{{\"keys\":[{},{{\"kty\":\"EC\"}}, 5]}}", a.as_str());
        assert_eq!(load_set(&bad).unwrap_err().len(), 2);
        // No problem text ever contains private key material.
        let d = serde_json::from_str::<Value>(&a).unwrap()["d"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(load_set(&bad).unwrap_err().iter().all(|p| !p.contains(&d)));
    }

    #[test]
    fn debug_hides_the_key_set() {
        let source =
            KeySource::from_settings(Some(r#"{"keys":[{"d":"secret-d"}]}"#), Path::new("k"));
        assert!(!format!("{source:?}").contains("secret-d"));
    }
}
