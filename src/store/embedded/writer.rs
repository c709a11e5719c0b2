//! The writer thread of the embedded store: it takes every queued
//! operation (up to a batch), applies them in order inside one write
//! transaction and commits once (group commit), then answers each caller;
//! between batches it sweeps expired entries a bounded number at a time.

use std::ops::Bound;
use std::sync::mpsc;
use std::time::Instant;

use redb::{Database, Durability, ReadableTable, StorageError, Table};
use tokio::sync::oneshot;

use super::format::{ENTRIES, live, now_ms};
use super::{EmbeddedOptions, from_redb};
use crate::store::StoreResult;

/// Most operations committed together.
const MAX_BATCH: usize = 256;

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
pub(super) fn write_loop(db: &Database, jobs: &mpsc::Receiver<Job>, options: EmbeddedOptions) {
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
