//! The store's operations on Redis: each one command or one script on
//! one key; values are size-checked both ways.

use std::time::Duration;

use futures::future::BoxFuture;

use super::{MAX_VALUE_LEN, RedisStore};
use crate::store::record::{Record, encode_plain, encode_versioned};
use crate::store::{Store, StoreError, StoreKey, StoreResult, Versioned, ttl_millis};

fn decode_value(bytes: Option<Vec<u8>>) -> StoreResult<Option<Vec<u8>>> {
    bytes
        .map(|b| Record::decode(&b).map(|r| r.value().to_vec()))
        .transpose()
}

/// Refuses a value larger than any the store gives back.
pub(super) fn check_len(value: &[u8]) -> StoreResult<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(StoreError::Failed(
            "a value is larger than the store keeps".into(),
        ));
    }
    Ok(())
}

impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move { decode_value(self.read(key, "GET").await?) })
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            check_len(&value)?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key_name(key))
                .arg(encode_plain(&value))
                .arg("PX")
                .arg(ttl_millis(ttl));
            self.query::<()>(cmd).await
        })
    }

    fn put_new<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            check_len(&value)?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key_name(key))
                .arg(encode_plain(&value))
                .arg("NX")
                .arg("PX")
                .arg(ttl_millis(ttl));
            let answer: Option<String> = self.query(cmd).await?;
            Ok(answer.is_some())
        })
    }

    fn take<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move { decode_value(self.read(key, "GETDEL").await?) })
    }

    fn delete<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.key_name(key));
            self.query::<()>(cmd).await
        })
    }

    fn delete_if<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let name = self.key_name(key);
            let deleted: i64 = self
                .run(|mut c| async move {
                    self.delete_if
                        .key(name)
                        .arg(expected)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            Ok(deleted == 1)
        })
    }

    fn get_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
    ) -> BoxFuture<'a, StoreResult<Option<Versioned>>> {
        Box::pin(async move {
            match self.read(key, "GET").await? {
                Some(b) => Ok(Record::decode(&b)?.versioned()),
                None => Ok(None),
            }
        })
    }

    fn put_versioned<'a>(
        &'a self,
        key: &'a StoreKey,
        value: Versioned,
        ttl: Duration,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            check_len(&value.value)?;
            let record = encode_versioned(value.generation, &value.value);
            self.write_versioned(key, record, ttl).await
        })
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.check_server().await?;
            self.query::<String>(redis::cmd("PING")).await.map(|_| ())
        })
    }

    fn details(&self) -> Option<serde_json::Value> {
        Some(self.facts.details(self.link.topology()))
    }
}
