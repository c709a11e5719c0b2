//! The writer thread of the embedded store: it takes every queued
//! operation (up to a batch), applies them in order inside one write
//! transaction and commits once (group commit), then answers each caller;
//! between batches it sweeps expired entries a bounded number at a time,
//! going on at once (after the jobs queued meanwhile) while it finds
//! expired ones, so a flood of short-lived entries cannot outrun it. After
//! each pass it reports the file's size and compacts the file when most of
//! it is free.

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::{PoisonError, RwLock, mpsc};
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, StorageError, Table};
use tokio::sync::oneshot;

use super::format::{ENTRIES, live, now_ms};
use super::mirror::Mirror;
use super::{EmbeddedOptions, from_redb, shared};
use crate::store::StoreResult;

/// Most operations committed together.
const MAX_BATCH: usize = 256;
/// Most steps of one compaction (each moves what it can to the front).
const COMPACTION_STEPS: usize = 16;

pub(super) enum Op {
    Put(Vec<u8>, Vec<u8>),
    PutNew(Vec<u8>, Vec<u8>),
    Take(Vec<u8>),
    Delete(Vec<u8>),
    DeleteIf(Vec<u8>, Vec<u8>),
    PutVersioned(Vec<u8>, u64, Vec<u8>),
    Sweep,
}

pub(super) enum Answer {
    Done,
    Flag(bool),
    Value(Option<Vec<u8>>),
    Swept(usize),
}

pub(super) struct Job {
    pub(super) op: Op,
    /// Whether the commit must reach the disk before the caller hears
    /// back. State that is lost harmlessly in a crash (locks, cached
    /// tokens, backoff windows) is committed without a flush, and made
    /// durable by the next durable commit.
    pub(super) durable: bool,
    pub(super) reply: oneshot::Sender<StoreResult<Answer>>,
}

/// The writer thread: takes every queued operation (up to a batch),
/// applies them in order in one transaction, commits, then answers each.
/// Sweeps expired entries between batches.
pub(super) fn write_loop(
    db: &RwLock<Database>,
    jobs: &mpsc::Receiver<Job>,
    upkeep: &Upkeep,
    mirror: &Mirror,
) {
    let options = &upkeep.options;
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
                let swept = batch.iter().any(|job| matches!(job.op, Op::Sweep));
                let answered = commit_batch(&shared(db), batch, &mut sweeper);
                // Committed: the memory learns it before anyone hears back.
                for (job, answer) in &answered {
                    mirror_committed(mirror, &job.op, answer);
                }
                // Whoever asked for a sweep hears back once it is all done.
                if swept {
                    upkeep.after_pass(db);
                }
                for (job, answer) in answered {
                    let _ = job.reply.send(answer);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if Instant::now() >= next_sweep {
            let swept = (|| -> Result<(usize, bool), redb::Error> {
                let db = shared(db);
                let mut txn = db.begin_write()?;
                txn.set_durability(Durability::None)?;
                let swept = {
                    let mut table = txn.open_table(ENTRIES)?;
                    sweeper.sweep(&mut table, now_ms())?
                };
                txn.commit()?;
                Ok(swept)
            })();
            next_sweep = Instant::now() + options.sweep_interval;
            mirror.prune(now_ms());
            match swept {
                // More may have expired just past this stretch: go on at
                // once, after what is queued.
                Ok((n, false)) if n > 0 => {
                    tracing::debug!(removed = n, "swept expired store entries");
                    next_sweep = Instant::now();
                }
                Ok(_) => upkeep.after_pass(db),
                Err(e) => tracing::warn!(error = %e, "sweeping expired store entries failed"),
            }
        }
    }
}

/// What the writer does after a sweep pass: the file's size for the
/// metric, and a compaction when most of the file is free.
pub(super) struct Upkeep {
    options: EmbeddedOptions,
    path: PathBuf,
}

impl Upkeep {
    pub(super) fn new(options: EmbeddedOptions, path: PathBuf) -> Self {
        Self { options, path }
    }

    fn file_len(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Pages freed by commits that were not flushed stay allocated until a
    /// durable commit, so a file that could be worth compacting gets one
    /// (empty) first; then, when most of it is free, compaction, a step at
    /// a time while it moves anything (bounded).
    fn after_pass(&self, db: &RwLock<Database>) {
        let len = self.file_len();
        if len >= self.options.compact_above {
            let used = (|| -> Result<u64, redb::Error> {
                let db = shared(db);
                db.begin_write()?.commit()?;
                let txn = db.begin_write()?;
                let stats = txn.stats()?;
                txn.abort()?;
                Ok(stats.allocated_pages() * stats.page_size() as u64)
            })();
            match used {
                Ok(used) if len.saturating_sub(used) > len / 2 => self.compact(db, len),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "measuring the store file failed"),
            }
        }
        self.options.file_bytes.set(self.file_len() as i64);
    }

    fn compact(&self, db: &RwLock<Database>, before: u64) {
        // Waits for reads in progress; none start until it is done.
        let mut db = db.write().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..COMPACTION_STEPS {
            match db.compact() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "compacting the store file failed");
                    return;
                }
            }
        }
        // The file shrinks at the commit after the last step.
        let _ = db.begin_write().map(|txn| txn.commit());
        tracing::info!(before, after = self.file_len(), "compacted the store file");
    }
}

/// After a commit: what an operation changed, for keys held in memory
/// (an operation that failed, or whose condition did not hold, changed
/// nothing).
fn mirror_committed(mirror: &Mirror, op: &Op, answer: &StoreResult<Answer>) {
    let Ok(answer) = answer else {
        return;
    };
    let done = matches!(answer, Answer::Flag(true));
    match op {
        Op::Put(key, record) => mirror.hold(key, record),
        Op::PutNew(key, record) | Op::PutVersioned(key, _, record) if done => {
            mirror.hold(key, record);
        }
        Op::DeleteIf(key, _) if done => mirror.drop_key(key),
        Op::Take(key) | Op::Delete(key) => mirror.drop_key(key),
        _ => {}
    }
}

/// Applies a batch in one transaction; returns each job with its answer.
fn commit_batch(
    db: &Database,
    batch: Vec<Job>,
    sweeper: &mut Sweeper,
) -> Vec<(Job, StoreResult<Answer>)> {
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
        Ok(answers) => batch.into_iter().zip(answers).collect(),
        Err(e) => {
            let error = from_redb(e);
            tracing::warn!(error = %error, operations = batch.len(), "a store write failed");
            batch
                .into_iter()
                .map(|job| (job, Err(error.clone())))
                .collect()
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
        Op::Sweep => Ok(Answer::Swept(sweeper.pass(table, now)?)),
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
    /// One stretch: returns how many entries it removed, and whether it
    /// reached the end of the table (the next one starts over).
    fn sweep(
        &mut self,
        table: &mut Table<&[u8], &[u8]>,
        now: u64,
    ) -> Result<(usize, bool), StorageError> {
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
        let ended = last.is_none();
        self.cursor = last;
        Ok((expired.len(), ended))
    }

    /// Stretch after stretch while they find expired entries, up to the
    /// end of the table: one pass. Returns how many it removed.
    fn pass(&mut self, table: &mut Table<&[u8], &[u8]>, now: u64) -> Result<usize, StorageError> {
        let mut removed = 0;
        loop {
            let (n, ended) = self.sweep(table, now)?;
            removed += n;
            if n == 0 || ended {
                return Ok(removed);
            }
        }
    }
}
