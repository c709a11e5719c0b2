//! Secrets for `%NAME%` references in provider entries: the `SECRETS` JSON
//! (a file or `base64:...`), with environment variables of the same name
//! taking precedence.

use std::collections::HashMap;

use crate::secret::{Sensitive, read_file_or_inline};

/// Looks a variable up in the environment (or a test's stand-in for it).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Default)]
pub struct Secrets {
    from_file: HashMap<String, Sensitive>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.from_file.keys().collect();
        names.sort();
        f.debug_struct("Secrets").field("names", &names).finish()
    }
}

impl Secrets {
    /// Parses `SECRETS`: a path to a JSON file, or `base64:` JSON, or JSON
    /// text itself. Values must be strings.
    pub fn load(spec: Option<&str>) -> Result<Self, String> {
        let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(Self::default());
        };
        let bytes = read_file_or_inline(spec).map_err(|e| format!("SECRETS: {e}"))?;
        let map: HashMap<String, serde_json::Value> = serde_json::from_slice(&bytes)
            .map_err(|_| "SECRETS: not a JSON object of NAME: value".to_string())?;
        let mut from_file = HashMap::new();
        let mut bad = Vec::new();
        for (name, value) in map {
            match value {
                serde_json::Value::String(s) => {
                    from_file.insert(name, Sensitive::new(s));
                }
                _ => bad.push(name),
            }
        }
        if !bad.is_empty() {
            bad.sort();
            return Err(format!(
                "SECRETS: values must be strings: {}",
                bad.join(", ")
            ));
        }
        Ok(Self { from_file })
    }

    pub fn get(&self, name: &str, env: EnvLookup<'_>) -> Option<Sensitive> {
        env(name)
            .map(Sensitive::new)
            .or_else(|| self.from_file.get(name).cloned())
    }
}

/// Replaces every `%NAME%` in `text`. Returns the names that had no value.
pub fn substitute(
    text: &str,
    secrets: &Secrets,
    env: EnvLookup<'_>,
) -> Result<Sensitive, Vec<String>> {
    substitute_choosing(text, secrets, env, None).map(|(value, _)| value)
}

/// Like [`substitute`], with alternatives: `%A|B%` takes the first of `A`
/// and `B` that has a value. Returns the value and the position of the
/// alternative the first such reference took. With `choice`, every
/// reference takes the alternative at that position (or its last), so a
/// client secret comes from the same family of names as its client id and
/// two registrations are never mixed.
pub fn substitute_choosing(
    text: &str,
    secrets: &Secrets,
    env: EnvLookup<'_>,
    choice: Option<usize>,
) -> Result<(Sensitive, Option<usize>), Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut chosen = None;
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if is_reference(&after[..end]) => {
                let names: Vec<&str> = after[..end].split('|').collect();
                let found = match choice {
                    Some(i) => {
                        let i = i.min(names.len() - 1);
                        secrets.get(names[i], env).map(|v| (i, v))
                    }
                    None => names
                        .iter()
                        .enumerate()
                        .find_map(|(i, name)| secrets.get(name, env).map(|v| (i, v))),
                };
                match found {
                    Some((i, value)) => {
                        out.push_str(value.expose());
                        if names.len() > 1 {
                            chosen = chosen.or(Some(i));
                        }
                    }
                    None => missing.push(match choice {
                        Some(i) => names[i.min(names.len() - 1)].to_string(),
                        None => names.join(" or "),
                    }),
                }
                rest = &after[end + 1..];
            }
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok((Sensitive::new(out), chosen))
    } else {
        Err(missing)
    }
}

/// `NAME` or `NAME|NAME...`, names of letters, digits and `_`.
fn is_reference(text: &str) -> bool {
    !text.is_empty()
        && text.split('|').all(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn substitutes_from_file_and_env_wins() {
        let secrets = Secrets::load(Some(r#"{"A":"from-file","B":"b"}"#)).unwrap();
        let env = |n: &str| (n == "A").then(|| "from-env".to_string());
        let v = substitute("x-%A%-%B%-100%", &secrets, &env).unwrap();
        assert_eq!(v.expose(), "x-from-env-b-100%");
        let v = substitute("%A%", &secrets, &no_env).unwrap();
        assert_eq!(v.expose(), "from-file");
        assert_eq!(substitute("%C%", &secrets, &no_env).unwrap_err(), vec!["C"]);
    }

    #[test]
    fn alternatives_take_the_first_set_and_pair_by_position() {
        let secrets = Secrets::load(Some(
            r#"{"GD_ID":"gd-id","GD_SECRET":"gd-s","GCS_SECRET":"gcs-s"}"#,
        ))
        .unwrap();
        let (id, chosen) = substitute_choosing("%GCS_ID|GD_ID%", &secrets, &no_env, None).unwrap();
        assert_eq!((id.expose(), chosen), ("gd-id", Some(1)));
        // The secret follows the id's family, though GCS_SECRET is set.
        let (secret, _) =
            substitute_choosing("%GCS_SECRET|GD_SECRET%", &secrets, &no_env, chosen).unwrap();
        assert_eq!(secret.expose(), "gd-s");
        assert_eq!(
            substitute_choosing("%GCS_X|GD_X%", &secrets, &no_env, None).unwrap_err(),
            ["GCS_X or GD_X"]
        );
        assert_eq!(
            substitute_choosing("%GCS_X|GD_X%", &secrets, &no_env, Some(1)).unwrap_err(),
            ["GD_X"]
        );
        let (plain, chosen) = substitute_choosing("%GD_ID%", &secrets, &no_env, None).unwrap();
        assert_eq!((plain.expose(), chosen), ("gd-id", None));
        assert_eq!(
            substitute("50%|%", &secrets, &no_env).unwrap().expose(),
            "50%|%"
        );
    }

    #[test]
    fn base64_and_bad_values() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(r#"{"A":"1"}"#);
        let s = Secrets::load(Some(&format!("base64:{b64}"))).unwrap();
        assert_eq!(s.get("A", &no_env).unwrap().expose(), "1");
        assert!(Secrets::load(Some(r#"{"A":1}"#)).is_err());
        assert!(Secrets::load(Some("/nonexistent/secrets.json")).is_err());
        let err = Secrets::load(Some(r#"{"A":"topsecret","B":2}"#)).unwrap_err();
        assert!(!err.contains("topsecret"));
    }
}
