//! A key directory (`KEYS_DIR`): the private JWK files the server loads
//! and watches, and the admin operations on them (generate, list,
//! activate, retire).
//!
//! Directory layout: `<kid>.json` per key (mode 0600), `primary` holding the
//! primary kid, and `retired/<kid>.json` for keys taken out of service. A
//! Kubernetes Secret mounted as the directory works as it is: its entries
//! are symlinks into a `..data` folder that the kubelet swaps atomically.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::RngCore;
use zeroize::Zeroizing;

use super::{Keyring, ServerKey};

const PRIMARY_FILE: &str = "primary";
const RETIRED_DIR: &str = "retired";
/// The marker of a key retired with `--compromised`, in `retired/`.
const COMPROMISED_SUFFIX: &str = ".compromised";
/// The link a Kubernetes Secret (or ConfigMap) volume swaps on update.
const KUBERNETES_DATA_LINK: &str = "..data";

/// Key directories already warned about loose file modes: the warning is
/// worth reading once, not on every reload.
static WARNED_MODES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// One row of `keys list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: String,
    pub created: Option<i64>,
    pub primary: bool,
}

/// A key directory.
#[derive(Debug, Clone)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn key_path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.json"))
    }

    /// Reads every `*.json` key file. Each problem names its file.
    fn read_keys(&self) -> Result<Vec<ServerKey>, Vec<String>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| {
            vec![format!(
                "KEYS_DIR {}: cannot read the directory ({e}); create a key with `oauth-broker keys generate --activate`",
                self.dir.display()
            )]
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        let mut keys = Vec::new();
        let mut problems = Vec::new();
        for path in &files {
            match read_key_file(path) {
                Ok(key) => keys.push(key),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
        self.warn_loose_modes(&files);
        if problems.is_empty() {
            Ok(keys)
        } else {
            Err(problems)
        }
    }

    /// Warns, once per directory and process, about key files that others
    /// (or the group) may read. In a Kubernetes Secret volume the kubelet
    /// sets the modes: with `defaultMode: 0400` and an `fsGroup` the files
    /// are 0440, as good as that layout allows, so only "others" counts.
    fn warn_loose_modes(&self, files: &[PathBuf]) {
        let kubernetes = self.dir.join(KUBERNETES_DATA_LINK).is_symlink();
        let mask = if kubernetes { 0o007 } else { 0o077 };
        let loose: Vec<String> = files
            .iter()
            .filter(|p| fs::metadata(p).is_ok_and(|m| m.permissions().mode() & mask != 0))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if loose.is_empty() {
            return;
        }
        let mut warned = WARNED_MODES.lock().unwrap_or_else(|e| e.into_inner());
        if warned.contains(&self.dir) {
            return;
        }
        warned.push(self.dir.clone());
        let files = loose.join(", ");
        if kubernetes {
            tracing::warn!(
                dir = %self.dir.display(),
                files = %files,
                "key files are readable by others; mount the keys Secret with defaultMode: 0400"
            );
        } else {
            tracing::warn!(
                dir = %self.dir.display(),
                files = %files,
                "key files are readable by group or others; run chmod 600 on them"
            );
        }
    }

    fn retired_kids(&self) -> HashSet<String> {
        self.kids_in_retired(".json")
    }

    /// Kids retired with `--compromised`: a marker file that outlives the
    /// key's own file, so deleting the retired key keeps its carry-overs
    /// ended. Read in `retired/` and beside the keys, where a flat
    /// Kubernetes Secret puts it.
    fn compromised_kids(&self) -> HashSet<String> {
        let mut kids = self.kids_in_retired(COMPROMISED_SUFFIX);
        kids.extend(kids_in(&self.dir, COMPROMISED_SUFFIX));
        kids
    }

    fn kids_in_retired(&self, suffix: &str) -> HashSet<String> {
        kids_in(&self.dir.join(RETIRED_DIR), suffix)
    }

    fn named_primary(&self) -> Option<String> {
        fs::read_to_string(self.dir.join(PRIMARY_FILE))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// The primary kid: the one named in `primary`, else the newest key.
    fn choose_primary(&self, keys: &[ServerKey]) -> Result<String, String> {
        if let Some(kid) = self.named_primary() {
            return if keys.iter().any(|k| k.kid() == kid) {
                Ok(kid)
            } else {
                Err(format!(
                    "{}: names key {kid}, which is not in the directory",
                    self.dir.join(PRIMARY_FILE).display()
                ))
            };
        }
        let newest = keys
            .iter()
            .max_by_key(|k| (k.created().unwrap_or(0), k.kid().to_string()))
            .ok_or("no keys")?;
        if keys.len() > 1 {
            tracing::warn!(
                kid = newest.kid(),
                "no primary file in the key directory; using the newest key as primary"
            );
        }
        Ok(newest.kid().to_string())
    }

    /// Loads the directory as a keyring.
    pub fn load(&self) -> Result<Keyring, Vec<String>> {
        let keys = self.read_keys()?;
        if keys.is_empty() {
            return Err(vec![format!(
                "KEYS_DIR {}: no keys; create one with `oauth-broker keys generate --activate`",
                self.dir.display()
            )]);
        }
        let primary = self.choose_primary(&keys).map_err(|e| vec![e])?;
        Keyring::new(keys, &primary, self.retired_kids())
            .map(|ring| ring.with_compromised(self.compromised_kids()))
            .map_err(|e| vec![format!("KEYS_DIR {}: {e}", self.dir.display())])
    }

    /// Every key with its creation time and whether it is primary.
    pub fn list(&self) -> Result<Vec<KeyInfo>, Vec<String>> {
        let keys = self.read_keys()?;
        let primary = if keys.is_empty() {
            None
        } else {
            self.choose_primary(&keys).ok()
        };
        let mut rows: Vec<KeyInfo> = keys
            .iter()
            .map(|k| KeyInfo {
                kid: k.kid().to_string(),
                created: k.created(),
                primary: primary.as_deref() == Some(k.kid()),
            })
            .collect();
        rows.sort_by(|a, b| a.created.cmp(&b.created).then(a.kid.cmp(&b.kid)));
        Ok(rows)
    }

    /// Makes a new key file; returns its kid. The kid starts with the UTC
    /// date so a listing reads in order of age.
    pub fn generate(&self, now: i64, activate: bool) -> Result<String, String> {
        self.ensure_dir()?;
        let date = time::OffsetDateTime::from_unix_timestamp(now)
            .map_err(|e| e.to_string())?
            .format(time::macros::format_description!("[year][month][day]"))
            .map_err(|e| e.to_string())?;
        let mut suffix = [0u8; 4];
        rand::thread_rng().fill_bytes(&mut suffix);
        let kid = format!("{date}-{}", hex::encode(suffix));
        let (_key, json) = ServerKey::generate(&kid, now)?;
        write_private(&self.key_path(&kid), json.as_bytes())?;
        if activate
            || self.named_primary().is_none() && self.list().map(|l| l.len()).unwrap_or(0) == 1
        {
            self.activate(&kid)?;
        }
        Ok(kid)
    }

    /// Makes `kid` the primary key.
    pub fn activate(&self, kid: &str) -> Result<(), String> {
        if !super::key::is_valid_kid(kid) || !self.key_path(kid).is_file() {
            return Err(format!("no key {kid} in {}", self.dir.display()));
        }
        read_key_file(&self.key_path(kid)).map_err(|e| format!("key {kid}: {e}"))?;
        write_private(&self.dir.join(PRIMARY_FILE), format!("{kid}\n").as_bytes())
    }

    /// Takes `kid` out of service: its file moves to `retired/`, and AuthIDs
    /// sealed with it are answered from their carry-over, or with 401 "key
    /// retired". `compromised` also leaves a marker that ends the
    /// carry-overs of the key (on every instance, at its next reload); it
    /// may be given for a key already retired or deleted.
    pub fn retire(&self, kid: &str, compromised: bool) -> Result<(), String> {
        let valid = super::key::is_valid_kid(kid);
        let present = valid && self.key_path(kid).is_file();
        if !valid || !present && !compromised {
            return Err(format!("no key {kid} in {}", self.dir.display()));
        }
        if present {
            let keys = self.read_keys().map_err(|e| e.join("; "))?;
            if self.choose_primary(&keys).ok().as_deref() == Some(kid) {
                return Err(format!(
                    "{kid} is the primary key; activate another key first (`oauth-broker keys activate KID`)"
                ));
            }
        }
        let retired = self.dir.join(RETIRED_DIR);
        fs::create_dir_all(&retired).map_err(|e| format!("{}: {e}", retired.display()))?;
        fs::set_permissions(&retired, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", retired.display()))?;
        if compromised {
            // Written first: a key file moved without its marker would let
            // the carry-overs of a compromised key go on.
            write_private(&retired.join(format!("{kid}{COMPROMISED_SUFFIX}")), b"")?;
        }
        if present {
            fs::rename(self.key_path(kid), retired.join(format!("{kid}.json")))
                .map_err(|e| format!("cannot move {kid} to {}: {e}", retired.display()))?;
        }
        Ok(())
    }

    fn ensure_dir(&self) -> Result<(), String> {
        if !self.dir.exists() {
            fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        }
        Ok(())
    }

    /// A cheap summary of the directory's state (names, sizes, mtimes), to
    /// notice changes without reading keys. Symlinks count by what they
    /// point to (a Kubernetes Secret's entries are links into `..data`).
    pub fn fingerprint(&self) -> String {
        let mut parts = Vec::new();
        for dir in [self.dir.clone(), self.dir.join(RETIRED_DIR)] {
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.filter_map(|e| e.ok()) {
                    if let Ok(meta) = fs::metadata(e.path()).or_else(|_| e.metadata()) {
                        let mtime = meta
                            .modified()
                            .ok()
                            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                            .map(|d| d.as_nanos())
                            .unwrap_or(0);
                        parts.push(format!("{}:{}:{}", e.path().display(), meta.len(), mtime));
                    }
                }
            }
        }
        parts.sort();
        parts.join("|")
    }
}

/// The kids of the files in `dir` named `<kid><suffix>`.
fn kids_in(dir: &Path, suffix: &str) -> HashSet<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(suffix).map(str::to_string)
                })
                .filter(|kid| super::key::is_valid_kid(kid))
                .collect()
        })
        .unwrap_or_default()
}

fn read_key_file(path: &Path) -> Result<ServerKey, String> {
    let bytes = Zeroizing::new(fs::read(path).map_err(|e| e.to_string())?);
    let key = ServerKey::from_json(&bytes)?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if stem.as_deref() != Some(key.kid()) {
        return Err(format!(
            "the file holds key {}; name it {}.json",
            key.kid(),
            key.kid()
        ));
    }
    Ok(key)
}

/// Writes a file readable only by its owner, atomically (temp + rename).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut suffix = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut suffix);
    let tmp = dir.join(format!(".tmp-{}", hex::encode(suffix)));
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
