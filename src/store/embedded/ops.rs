//! The [`Store`] operations of the embedded store: reads go straight to a
//! read transaction, writes to the writer thread, durable or not by the
//! key's space.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redb::ReadableDatabase;

use super::format::{ENTRIES, expiry, key_bytes, stored};
use super::writer::{Answer, Op};
use super::{EmbeddedStore, blocking, from_redb, unexpected};
use crate::store::record::{encode_plain, encode_versioned};
use crate::store::{Space, Store, StoreKey, StoreResult, Versioned};

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
/// `/fetch`, a used login state, a migrated grant, a carry-over and a revocation must
/// survive a crash; a lock, a cached access token, a backoff window or
/// knowing a legacy login may be lost.
fn durable(key: &StoreKey) -> bool {
    match key.space {
        Space::Rotation
        | Space::Fetch
        | Space::UsedState
        | Space::Legacy
        | Space::Interrupted
        | Space::Revoked
        | Space::CarryOver => true,
        Space::Token | Space::Lock | Space::Backoff | Space::Known => false,
    }
}
