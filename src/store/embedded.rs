//! The embedded store (the default of `serve`): one redb file in
//! `DATA_DIR`, durable across restarts and crashes, for one instance.
//!
//! Every write goes through one writer thread that applies the queued
//! operations in order inside one write transaction and commits once
//! (group commit): each operation is atomic (its check and its change
//! happen in one transaction, with no other writer between them), and a
//! caller hears back only after the commit. Reads run on Tokio's blocking
//! pool in read transactions, concurrently with the writer.
//!
//! Entries carry their expiry instant (wall-clock milliseconds, so it
//! survives a restart); an expired entry is absent to every operation, and
//! the writer thread deletes expired entries a bounded number at a time.
//!
//! redb locks the file, so a second process on the same `DATA_DIR` is
//! refused at start with an error that says what to do instead.

use std::fs::{DirBuilder, OpenOptions};
use std::ops::Bound;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use redb::backends::FileBackend;
use redb::{
    Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageError, Table, TableDefinition,
};
use tokio::sync::oneshot;

use super::record::{Record, encode_plain, encode_versioned};
use super::{Space, Store, StoreError, StoreKey, StoreResult, Versioned, ttl_millis};

/// The store's file inside `DATA_DIR`.
pub const FILE_NAME: &str = "store.redb";

/// Key: `space:` and the 32-byte id. Value: expiry (Unix milliseconds,
/// 8 bytes big-endian), then the entry as `record` lays it out.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

/// Page cache; redb's default (1 GiB) is more than a broker should hold.
const CACHE_BYTES: usize = 64 << 20;

/// Most operations committed together.
const MAX_BATCH: usize = 256;

const EXPIRY_LEN: usize = 8;

/// How the background sweep of expired entries runs.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedOptions {
    /// Time between two sweeps.
    pub sweep_interval: Duration,
    /// Entries one sweep looks at (bounds the work of one write
    /// transaction); the next sweep goes on where this one stopped.
    pub sweep_limit: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(10),
            sweep_limit: 2_000,
        }
    }
}

pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

enum Op {
    Put(Vec<u8>, Vec<u8>),
    PutNew(Vec<u8>, Vec<u8>),
    Take(Vec<u8>),
    Delete(Vec<u8>),
    DeleteIf(Vec<u8>, Vec<u8>),
    PutVersioned(Vec<u8>, u64, Vec<u8>),
    Sweep,
}

enum Answer {
    Done,
    Flag(bool),
    Value(Option<Vec<u8>>),
    Swept(usize),
}

struct Job {
    op: Op,
    /// Whether the commit must reach the disk before the caller hears
    /// back. State that is lost harmlessly in a crash (locks, cached
    /// tokens, backoff windows) is committed without a flush, and made
    /// durable by the next durable commit.
    durable: bool,
    reply: oneshot::Sender<StoreResult<Answer>>,
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

        let db = Arc::new(db);
        let (writer, jobs) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let db = Arc::clone(&db);
                move || write_loop(&db, &jobs, options)
            })
            .map_err(|e| format!("cannot start the store's writer: {e}"))?;
        Ok(Self {
            db,
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

    /// The live record under `key`, mapped by `f` on the blocking pool.
    async fn read<T, F>(&self, key: &StoreKey, f: F) -> StoreResult<Option<T>>
    where
        T: Send + 'static,
        F: FnOnce(Record<'_>) -> Option<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let key = key_bytes(key);
        blocking(move || {
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

impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(self.read(key, |r| Some(r.value().to_vec())))
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let record = stored(expiry(ttl), &encode_plain(&value));
            match self
                .write(Op::Put(key_bytes(key), record), durable(key))
                .await?
            {
                Answer::Done => Ok(()),
                _ => Err(unexpected()),
            }
        })
    }

    fn put_new<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let record = stored(expiry(ttl), &encode_plain(&value));
            self.flag(Op::PutNew(key_bytes(key), record), durable(key))
                .await
        })
    }

    fn take<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            match self.write(Op::Take(key_bytes(key)), durable(key)).await? {
                Answer::Value(value) => Ok(value),
                _ => Err(unexpected()),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            match self.write(Op::Delete(key_bytes(key)), durable(key)).await? {
                Answer::Done => Ok(()),
                _ => Err(unexpected()),
            }
        })
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            self.flag(
                Op::DeleteIf(key_bytes(key), expected.to_vec()),
                durable(key),
            )
            .await
        })
    }

    fn get_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        Box::pin(self.read(key, |r| r.versioned()))
    }

    fn put_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Versioned,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let record = stored(
                expiry(ttl),
                &encode_versioned(value.generation, &value.value),
            );
            self.flag(
                Op::PutVersioned(key_bytes(key), value.generation, record),
                durable(key),
            )
            .await
        })
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let db = Arc::clone(&self.db);
            blocking(move || {
                let txn = db.begin_read().map_err(from_redb)?;
                txn.open_table(ENTRIES).map_err(from_redb)?;
                Ok(())
            })
            .await
        })
    }
}

/// Whether writes to this key's space must be on disk before they are
/// acknowledged: the newest refresh token, a finished login waiting for
/// `/fetch`, a used login state, a migrated grant and a revocation must
/// survive a crash; a lock, a cached access token, a backoff window or
/// knowing a legacy login may be lost.
fn durable(key: &StoreKey) -> bool {
    match key.space {
        Space::Rotation
        | Space::Fetch
        | Space::UsedState
        | Space::Legacy
        | Space::Interrupted
        | Space::Revoked => true,
        Space::Token | Space::Lock | Space::Backoff | Space::Known => false,
    }
}

fn key_bytes(key: &StoreKey) -> Vec<u8> {
    let space = key.space.name().as_bytes();
    let mut out = Vec::with_capacity(space.len() + 1 + key.id.len());
    out.extend_from_slice(space);
    out.push(b':');
    out.extend_from_slice(&key.id);
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn expiry(ttl: Duration) -> u64 {
    now_ms().saturating_add(ttl_millis(ttl))
}

fn stored(expires_at: u64, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(EXPIRY_LEN + record.len());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(record);
    out
}

fn expires_at(bytes: &[u8]) -> StoreResult<u64> {
    let head = bytes
        .get(..EXPIRY_LEN)
        .ok_or_else(|| StoreError::Failed("an entry in the store is corrupt".into()))?;
    let mut be = [0u8; EXPIRY_LEN];
    be.copy_from_slice(head);
    Ok(u64::from_be_bytes(be))
}

/// The record in `bytes` unless it has expired.
fn live(bytes: &[u8], now: u64) -> StoreResult<Option<Record<'_>>> {
    if expires_at(bytes)? <= now {
        return Ok(None);
    }
    Record::decode(&bytes[EXPIRY_LEN..]).map(Some)
}

/// The writer thread: takes every queued operation (up to a batch),
/// applies them in order in one transaction, commits, then answers each.
/// Sweeps expired entries between batches.
fn write_loop(db: &Database, jobs: &mpsc::Receiver<Job>, options: EmbeddedOptions) {
    let mut sweeper = Sweeper {
        cursor: None,
        limit: options.sweep_limit.max(1),
    };
    let mut next_sweep = Instant::now() + options.sweep_interval;
    loop {
        let wait = next_sweep.saturating_duration_since(Instant::now());
        match jobs.recv_timeout(wait) {
            Ok(first) => {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                commit_batch(db, batch, &mut sweeper);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= next_sweep {
            let swept = (|| -> Result<usize, redb::Error> {
                let mut txn = db.begin_write()?;
                txn.set_durability(Durability::None)?;
                let swept = {
                    let mut table = txn.open_table(ENTRIES)?;
                    sweeper.sweep(&mut table, now_ms())?
                };
                txn.commit()?;
                Ok(swept)
            })();
            match swept {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "swept expired store entries"),
                Err(e) => tracing::warn!(error = %e, "sweeping expired store entries failed"),
            }
            next_sweep = Instant::now() + options.sweep_interval;
        }
    }
}

fn commit_batch(db: &Database, batch: Vec<Job>, sweeper: &mut Sweeper) {
    let durable = batch.iter().any(|j| j.durable);
    let now = now_ms();
    let result = (|| -> Result<Vec<StoreResult<Answer>>, redb::Error> {
        let mut txn = db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        let answers = {
            let mut table = txn.open_table(ENTRIES)?;
            batch
                .iter()
                .map(|job| apply(&mut table, &job.op, now, sweeper))
                .collect::<Result<Vec<_>, StorageError>>()?
        };
        txn.commit()?;
        Ok(answers)
    })();
    match result {
        Ok(answers) => {
            for (job, answer) in batch.into_iter().zip(answers) {
                let _ = job.reply.send(answer);
            }
        }
        Err(e) => {
            let error = from_redb(e);
            tracing::warn!(error = %error, operations = batch.len(), "a store write failed");
            for job in batch {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
    }
}

/// One operation inside the batch's transaction. The outer error (the
/// file) fails the whole batch; the inner one (a corrupt entry) only this
/// operation, which then changed nothing.
fn apply(
    table: &mut Table<&[u8], &[u8]>,
    op: &Op,
    now: u64,
    sweeper: &mut Sweeper,
) -> Result<StoreResult<Answer>, StorageError> {
    // The live record under `key`, as (generation, value), or an error.
    type Current = Result<StoreResult<Option<(u64, Vec<u8>)>>, StorageError>;
    let current = |table: &Table<&[u8], &[u8]>, key: &[u8]| -> Current {
        let Some(guard) = table.get(key)? else {
            return Ok(Ok(None));
        };
        Ok(live(guard.value(), now).map(|r| r.map(|r| (r.generation(), r.value().to_vec()))))
    };
    Ok(match op {
        Op::Put(key, record) => {
            table.insert(key.as_slice(), record.as_slice())?;
            Ok(Answer::Done)
        }
        Op::PutNew(key, record) => match current(table, key)? {
            Ok(Some(_)) => Ok(Answer::Flag(false)),
            Ok(None) => {
                table.insert(key.as_slice(), record.as_slice())?;
                Ok(Answer::Flag(true))
            }
            Err(e) => Err(e),
        },
        Op::Take(key) => {
            let value = match table.remove(key.as_slice())? {
                Some(guard) => live(guard.value(), now).map(|r| r.map(|r| r.value().to_vec())),
                None => Ok(None),
            };
            value.map(Answer::Value)
        }
        Op::Delete(key) => {
            table.remove(key.as_slice())?;
            Ok(Answer::Done)
        }
        Op::DeleteIf(key, expected) => match current(table, key)? {
            Ok(Some((_, value))) if value == *expected => {
                table.remove(key.as_slice())?;
                Ok(Answer::Flag(true))
            }
            Ok(_) => Ok(Answer::Flag(false)),
            Err(e) => Err(e),
        },
        Op::PutVersioned(key, generation, record) => match current(table, key)? {
            Ok(Some((held, _))) if held >= *generation => Ok(Answer::Flag(false)),
            Ok(_) => {
                table.insert(key.as_slice(), record.as_slice())?;
                Ok(Answer::Flag(true))
            }
            Err(e) => Err(e),
        },
        Op::Sweep => Ok(Answer::Swept(sweeper.sweep(table, now)?)),
    })
}

/// Walks the table a bounded number of entries at a time, in key order,
/// resuming after the last key it looked at, and removes what has expired.
/// Keys are HMACs, so any stretch of the table is a fair sample.
struct Sweeper {
    cursor: Option<Vec<u8>>,
    limit: usize,
}

impl Sweeper {
    fn sweep(&mut self, table: &mut Table<&[u8], &[u8]>, now: u64) -> Result<usize, StorageError> {
        let start = match &self.cursor {
            Some(key) => Bound::Excluded(key.as_slice()),
            None => Bound::Unbounded,
        };
        let mut expired = Vec::new();
        let mut seen = 0;
        let mut last = None;
        for item in table.range::<&[u8]>((start, Bound::Unbounded))? {
            let (key, value) = item?;
            seen += 1;
            // A corrupt entry is removed too: nothing can read it.
            if !matches!(live(value.value(), now), Ok(Some(_))) {
                expired.push(key.value().to_vec());
            }
            if seen >= self.limit {
                last = Some(key.value().to_vec());
                break;
            }
        }
        for key in &expired {
            table.remove(key.as_slice())?;
        }
        // At the end of the table the next sweep starts over.
        self.cursor = last;
        Ok(expired.len())
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

async fn blocking<T, F>(f: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::Failed("a store read stopped".into()))?
}

fn from_redb(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(e) => StoreError::Unavailable(format!("the store file: {e}")),
        other => StoreError::Failed(format!("the store file: {other}")),
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

fn unexpected() -> StoreError {
    StoreError::Failed("the store's writer answered another operation".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_space_apart() {
        let id = [7u8; 32];
        let a = key_bytes(&StoreKey::new(Space::Token, id));
        let b = key_bytes(&StoreKey::new(Space::Lock, id));
        assert_ne!(a, b);
        assert!(a.starts_with(b"token:"));
    }

    #[test]
    fn an_entry_at_its_expiry_is_gone() {
        let bytes = stored(1_000, &encode_plain(b"x"));
        assert!(live(&bytes, 999).unwrap().is_some());
        assert!(live(&bytes, 1_000).unwrap().is_none());
        assert!(live(b"short", 0).is_err());
    }

    #[test]
    fn new_directory_and_file_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/data");
        let store = EmbeddedStore::open(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(store.path()), 0o600);
    }
}
