//! The embedded store (the default of `serve`): one redb file in
//! `DATA_DIR`, durable across restarts and crashes, for one instance.
//!
//! Every write goes through one writer thread that applies the queued
//! operations in order inside one write transaction and commits once
//! (group commit): each operation is atomic (its check and its change
//! happen in one transaction, with no other writer between them), and a
//! caller hears back only after the commit. Reads run on Tokio's blocking
//! pool in read transactions, concurrently with the writer, but for keys
//! of a space held in memory that are not there.
//!
//! Entries carry their expiry instant (wall-clock milliseconds, so it
//! survives a restart); an expired entry is absent to every operation, and
//! the writer thread deletes expired entries a bounded number at a time.
//!
//! redb locks the file, so a second process on the same `DATA_DIR` is
//! refused at start with an error that says what to do instead.
//!
//! The files: `writer` is the group-commit writer thread and its sweep,
//! `format` the on-disk layout of keys and entries, `mirror` the spaces
//! also held in memory (revocation marks, looked for on every miss), `ops`
//! the [`Store`] operations; opening the file and the handle are here.

mod format;
mod mirror;
mod ops;
mod writer;

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use redb::backends::FileBackend;
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTableMetadata};
use tokio::sync::oneshot;

use super::record::Record;
use super::{StoreError, StoreKey, StoreResult};
use format::{ENTRIES, key_bytes, live, now_ms};
use mirror::Mirror;
use writer::{Answer, Job, Op, Upkeep, write_loop};

/// The store's file inside `DATA_DIR`.
pub const FILE_NAME: &str = "store.redb";

/// Page cache; redb's default (1 GiB) is more than a broker should hold.
const CACHE_BYTES: usize = 64 << 20;

/// The database, shared by readers and the writer thread; only a
/// compaction (which needs no transaction open) takes it exclusively.
type Shared = Arc<RwLock<Database>>;

/// The database for a transaction (a poisoned lock still guards a
/// database redb keeps consistent itself).
pub(super) fn shared(db: &RwLock<Database>) -> RwLockReadGuard<'_, Database> {
    db.read().unwrap_or_else(PoisonError::into_inner)
}

/// How the background sweep of expired entries runs.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Time between two sweeps.
    pub sweep_interval: Duration,
    /// Entries one sweep looks at (bounds the work of one write
    /// transaction); the next sweep goes on where this one stopped.
    pub sweep_limit: usize,
    /// Set to the file's size after each sweep pass
    /// (`oauth_broker_store_file_bytes`).
    pub file_bytes: Gauge,
    /// A file of at least this many bytes is compacted after a sweep pass
    /// when most of it is free.
    pub compact_above: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(10),
            sweep_limit: 2_000,
            file_bytes: Gauge::default(),
            compact_above: 8 << 20,
        }
    }
}

pub struct EmbeddedStore {
    db: Shared,
    /// The spaces also held in memory (see `mirror`).
    mirror: Arc<Mirror>,
    /// Reads that went to the file.
    #[cfg(test)]
    file_reads: std::sync::atomic::AtomicUsize,
    writer: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`. Blocking: call it
    /// from `spawn_blocking` or before the runtime starts.
    pub fn open(dir: &Path) -> Result<Self, String> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self, String> {
        let shown = dir.display();
        prepare_dir(dir).map_err(|e| format!("DATA_DIR {shown}: cannot create it: {e}"))?;
        let path = dir.join(FILE_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("DATA_DIR {shown}: cannot open {}: {e}", path.display()))?;
        warn_if_open_to_others(&path, &file);
        let backend = FileBackend::new(file)
            .map_err(|e| format!("DATA_DIR {shown}: cannot open {}: {e}", path.display()))?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_repair_callback(|session| {
                if session.progress() == 0.0 {
                    tracing::warn!("the store was not closed cleanly; checking and repairing it");
                }
            })
            .create_with_backend(backend)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => format!(
                    "DATA_DIR {shown} is in use by another oauth-broker process: one DATA_DIR \
                     serves one instance; to run several instances, give each its own DATA_DIR \
                     or share a Redis with STORE=redis://..."
                ),
                other => format!("DATA_DIR {shown}: cannot open the store: {other}"),
            })?;
        // Create the table once, so readers never find it missing.
        let create = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            txn.open_table(ENTRIES)?;
            txn.commit()?;
            Ok(())
        };
        create().map_err(|e| format!("DATA_DIR {shown}: cannot write the store: {e}"))?;
        let mirror = Arc::new(
            Mirror::load(&db, now_ms())
                .map_err(|e| format!("DATA_DIR {shown}: cannot read the store: {e}"))?,
        );

        let db: Shared = Arc::new(RwLock::new(db));
        let (writer, jobs) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let db = Arc::clone(&db);
                let path = path.clone();
                let mirror = Arc::clone(&mirror);
                move || write_loop(&db, &jobs, &Upkeep::new(options, path), &mirror)
            })
            .map_err(|e| format!("cannot start the store's writer: {e}"))?;
        Ok(Self {
            db,
            mirror,
            #[cfg(test)]
            file_reads: std::sync::atomic::AtomicUsize::new(0),
            writer: Some(writer),
            thread: Some(thread),
            path,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one sweep of expired entries now; returns how many it removed.
    pub async fn sweep(&self) -> StoreResult<usize> {
        match self.write(Op::Sweep, false).await? {
            Answer::Swept(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    /// Entries in the file, expired ones not yet swept included.
    pub async fn entry_count(&self) -> StoreResult<u64> {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let db = shared(&db);
            let txn = db.begin_read().map_err(from_redb)?;
            let table = txn.open_table(ENTRIES).map_err(from_redb)?;
            table.len().map_err(from_redb)
        })
        .await
    }

    async fn write(&self, op: Op, durable: bool) -> StoreResult<Answer> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .as_ref()
            .and_then(|w| w.send(Job { op, durable, reply }).ok())
            .ok_or_else(writer_gone)?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn flag(&self, op: Op, durable: bool) -> StoreResult<bool> {
        match self.write(op, durable).await? {
            Answer::Flag(flag) => Ok(flag),
            _ => Err(unexpected()),
        }
    }

    /// The live record under `key`, mapped by `f` on the blocking pool; a
    /// key of a space held in memory that is not there is absent at once.
    async fn read<T, F>(&self, key: &StoreKey, f: F) -> StoreResult<Option<T>>
    where
        T: Send + 'static,
        F: FnOnce(Record<'_>) -> Option<T> + Send + 'static,
    {
        let key = key_bytes(key);
        if mirror::is_mirrored(&key) && !self.mirror.may_hold(&key, now_ms()) {
            return Ok(None);
        }
        #[cfg(test)]
        self.file_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let db = Arc::clone(&self.db);
        blocking(move || {
            let db = shared(&db);
            let txn = db.begin_read().map_err(from_redb)?;
            let table = txn.open_table(ENTRIES).map_err(from_redb)?;
            let Some(guard) = table.get(key.as_slice()).map_err(from_redb)? else {
                return Ok(None);
            };
            Ok(live(guard.value(), now_ms())?.and_then(f))
        })
        .await
    }
}

impl Drop for EmbeddedStore {
    // Closing the channel ends the writer after its last batch; joining it
    // releases the file (and its lock) before the drop returns, so the
    // directory can be opened again at once.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn prepare_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        // The mode above is reduced by the umask; set it exactly.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    } else if let Ok(meta) = std::fs::metadata(dir)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            dir = %dir.display(),
            "DATA_DIR is open to other users; chmod 700 it"
        );
    }
    Ok(())
}

fn warn_if_open_to_others(path: &Path, file: &std::fs::File) {
    if let Ok(meta) = file.metadata()
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "the store file is open to other users; chmod 600 it"
        );
    }
}

pub(super) async fn blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::Failed("a store read stopped".into()))?
}

pub(super) fn from_redb(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(e) => StoreError::Unavailable(format!("the store file: {e}")),
        other => StoreError::Failed(format!("the store file: {other}")),
    }
}

pub(super) fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

pub(super) fn unexpected() -> StoreError {
    StoreError::Failed("the store's writer answered another operation".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_directory_and_file_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/data");
        let store = EmbeddedStore::open(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(store.path()), 0o600);
    }

    /// Revocation marks are held in memory as well as in the file: a look
    /// for one that is not there reads nothing from the file, and marks
    /// written, expired, deleted and reloaded after a restart are found
    /// exactly as the file holds them.
    #[tokio::test]
    async fn revocation_marks_are_found_in_memory_and_absent_ones_cost_no_read() {
        use crate::store::{Space, Store};
        use std::sync::atomic::Ordering;
        let tmp = tempfile::tempdir().unwrap();
        let marked = StoreKey::new(Space::Revoked, [1; 32]);
        let short = StoreKey::new(Space::Revoked, [2; 32]);
        let other = StoreKey::new(Space::Revoked, [3; 32]);
        {
            let store = EmbeddedStore::open(tmp.path()).unwrap();
            store
                .put(&marked, vec![1], Duration::from_secs(3600))
                .await
                .unwrap();
            store
                .put(&short, vec![1], Duration::from_millis(1))
                .await
                .unwrap();
            assert_eq!(store.get(&marked).await.unwrap(), Some(vec![1]));
            let reads = store.file_reads.load(Ordering::SeqCst);
            for _ in 0..10 {
                assert_eq!(store.get(&other).await.unwrap(), None);
            }
            assert_eq!(
                store.file_reads.load(Ordering::SeqCst),
                reads,
                "no file read"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(store.get(&short).await.unwrap(), None, "expired");
        }
        let store = EmbeddedStore::open(tmp.path()).unwrap();
        assert_eq!(store.mirror.len(), 1, "reloaded, the expired mark left out");
        assert_eq!(store.get(&marked).await.unwrap(), Some(vec![1]));
        // Conditional writes change the memory only when they change the file.
        let ttl = Duration::from_secs(60);
        assert!(!store.put_new(&marked, vec![2], ttl).await.unwrap());
        assert!(!store.delete_if(&marked, &[9]).await.unwrap());
        assert_eq!(store.get(&marked).await.unwrap(), Some(vec![1]));
        assert!(store.delete_if(&marked, &[1]).await.unwrap());
        assert_eq!(store.get(&marked).await.unwrap(), None);
        assert!(store.put_new(&other, vec![3], ttl).await.unwrap());
        assert_eq!(store.get(&other).await.unwrap(), Some(vec![3]));
        store.delete(&other).await.unwrap();
        assert_eq!(store.get(&other).await.unwrap(), None);
        assert_eq!(
            store.file_reads.load(Ordering::SeqCst),
            3,
            "only marks held"
        );
    }
}
