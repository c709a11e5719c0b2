//! The fetch rendezvous: an older client opens the login page with a random
//! `token` and polls `/fetch?token=...` until the login completes there.
//! The rendezvous lives in the store, so the login and the polling may
//! happen on different instances. Only the fetch token finds and opens an
//! entry (its id is an HMAC under the token, its value encrypted under a
//! key derived from it), and the AuthID is handed out once: the first
//! successful `/fetch` replaces it with a marker that `/token-state`
//! reports as fetched.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::secret::Sensitive;
use crate::store::{Space, Store, StoreResult, Versioned};
use crate::vault::{Vault, encrypt_failed};

/// How long a registered token waits for its login.
pub const PENDING_TTL: i64 = 600;
/// How long a finished login's answer stays fetchable.
pub const RESULT_TTL: i64 = 300;

/// Shortest fetch token accepted. Duplicati's web UIs join two
/// `Math.random().toString(36)` fractions: 17 to 25 characters, about half
/// of them under 22, so a longer minimum would refuse their logins. Sixteen
/// random characters of the alphabet carry over 80 bits, beyond any
/// guessing through `/fetch`.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest fetch token accepted.
pub const MAX_TOKEN_LEN: usize = 128;

/// A client-chosen fetch token, checked: [`MIN_TOKEN_LEN`] to
/// [`MAX_TOKEN_LEN`] of `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FetchToken(String);

impl FetchToken {
    pub fn parse(text: &str) -> Option<Self> {
        let ok = (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for FetchToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchToken([redacted])")
    }
}

/// Where a polled login stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "s", content = "v", rename_all = "lowercase")]
pub enum FetchState {
    /// Registered; the login has not finished.
    Pending,
    /// Finished with an AuthID nobody has fetched yet.
    Ready(Sensitive),
    /// The AuthID was fetched (and is gone from the store).
    Fetched,
    /// Finished without one; the reason is safe to show.
    Failed(String),
}

impl FetchState {
    /// Each step has a higher generation, so a versioned write moves an
    /// entry only forward: a reload cannot reset a finished login, of two
    /// concurrent fetches only one turns `Ready` into `Fetched`, a login
    /// started again with the same token after a failure replaces the
    /// failure with its AuthID, and no failure replaces an AuthID.
    fn generation(&self) -> u64 {
        match self {
            Self::Pending => 1,
            Self::Failed(_) => 2,
            Self::Ready(_) => 3,
            Self::Fetched => 4,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    state: FetchState,
    /// Unix seconds, on the application clock.
    expires_at: i64,
}

/// The rendezvous on the store. `now` is passed in so expiry follows the
/// application clock.
pub struct FetchStore {
    store: Arc<dyn Store>,
}

impl FetchStore {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    async fn write(
        &self,
        token: &FetchToken,
        state: FetchState,
        now: i64,
        ttl: i64,
    ) -> StoreResult<bool> {
        let vault = Vault::for_fetch_token(token.as_str());
        let key = vault.key(Space::Fetch);
        let generation = state.generation();
        let entry = Entry {
            state,
            expires_at: now + ttl,
        };
        let plain = Zeroizing::new(serde_json::to_vec(&entry).map_err(encrypt_failed)?);
        let value = vault
            .seal(&key, generation, &plain)
            .map_err(encrypt_failed)?;
        self.store
            .put_versioned(
                &key,
                Versioned { generation, value },
                Duration::from_secs(ttl as u64),
            )
            .await
    }

    async fn read(&self, token: &FetchToken, now: i64) -> StoreResult<Option<FetchState>> {
        let vault = Vault::for_fetch_token(token.as_str());
        let key = vault.key(Space::Fetch);
        let Some(stored) = self.store.get_versioned(&key).await? else {
            return Ok(None);
        };
        Ok(vault
            .open(&key, stored.generation, &stored.value)
            .and_then(|plain| serde_json::from_slice::<Entry>(&plain).ok())
            .filter(|e| e.expires_at > now)
            .map(|e| e.state))
    }

    /// Registers a token as pending, unless it is known already.
    pub async fn register(&self, token: &FetchToken, now: i64) -> StoreResult<()> {
        self.write(token, FetchState::Pending, now, PENDING_TTL)
            .await
            .map(drop)
    }

    /// Records the outcome of the token's login.
    pub async fn complete(
        &self,
        token: &FetchToken,
        outcome: Result<Sensitive, String>,
        now: i64,
    ) -> StoreResult<()> {
        let state = match outcome {
            Ok(authid) => FetchState::Ready(authid),
            Err(reason) => FetchState::Failed(reason),
        };
        self.write(token, state, now, RESULT_TTL).await.map(drop)
    }

    /// Where the token's login stands (`/token-state`); changes nothing.
    pub async fn state(&self, token: &FetchToken, now: i64) -> StoreResult<Option<FetchState>> {
        self.read(token, now).await
    }

    /// `/fetch`: the AuthID the first time it is asked for, after which
    /// the token is spent (`None`, as if unknown). Pending and failed
    /// logins are reported as they are.
    pub async fn fetch(&self, token: &FetchToken, now: i64) -> StoreResult<Option<FetchState>> {
        match self.read(token, now).await? {
            Some(FetchState::Ready(authid)) => {
                let won = self
                    .write(token, FetchState::Fetched, now, RESULT_TTL)
                    .await?;
                Ok(won.then_some(FetchState::Ready(authid)))
            }
            Some(FetchState::Fetched) | None => Ok(None),
            Some(other) => Ok(Some(other)),
        }
    }
}

/// The longest JSONP callback name accepted.
pub const MAX_CALLBACK_LEN: usize = 128;

/// A JSONP callback must be a plain JavaScript identifier path, such as
/// `angular.callbacks._0`: anything else could inject script.
pub fn is_jsonp_callback(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_CALLBACK_LEN {
        return false;
    }
    name.split('.').all(|part| {
        let mut bytes = part.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$');
        first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format() {
        assert!(FetchToken::parse("abcdefghijklmnop").is_some());
        // Shapes Duplicati's UIs make (two base-36 fractions joined).
        for duplicati in ["k3j5h2g8f9d0s1a2q", "0x8rkq2m7tz5d1v9w3hc4"] {
            assert!(FetchToken::parse(duplicati).is_some(), "{duplicati}");
        }
        assert!(
            FetchToken::parse("abcdefghijklmno").is_none(),
            "15 characters"
        );
        assert!(FetchToken::parse(&"a-_9".repeat(32)).is_some());
        for bad in [
            "",
            "short",
            "abcdefghijklmno!",
            "abcdefghijklmnop ",
            "ÄbcdefghijklmnopÄ",
        ] {
            assert!(FetchToken::parse(bad).is_none(), "{bad}");
        }
        assert!(FetchToken::parse(&"a".repeat(129)).is_none());
        assert!(!format!("{:?}", FetchToken::parse("abcdefghijklmnop")).contains("abcdef"));
    }

    #[test]
    fn callbacks() {
        for good in ["cb", "angular.callbacks._0", "$jsonp", "a1.b2.$c", "_"] {
            assert!(is_jsonp_callback(good), "{good}");
        }
        for bad in [
            "alert(1);x",
            "",
            "a..b",
            ".a",
            "a.",
            "1a",
            "a b",
            "a[0]",
            "a-b",
            "</script>",
        ] {
            assert!(!is_jsonp_callback(bad), "{bad}");
        }
        assert!(!is_jsonp_callback(&"a".repeat(MAX_CALLBACK_LEN + 1)));
    }

    fn store() -> (FetchStore, Arc<crate::store::MemoryStore>) {
        let memory = Arc::new(crate::store::MemoryStore::default());
        (FetchStore::new(memory.clone()), memory)
    }

    #[tokio::test]
    async fn pending_ready_fetched_once_and_expiry() {
        let (store, _) = store();
        let t = FetchToken::parse("abcdefghijklmnop").unwrap();
        assert!(store.state(&t, 100).await.unwrap().is_none());
        store.register(&t, 100).await.unwrap();
        assert!(matches!(
            store.fetch(&t, 101).await.unwrap(),
            Some(FetchState::Pending)
        ));
        store
            .complete(&t, Ok(Sensitive::new("v3:x")), 200)
            .await
            .unwrap();
        // A late registration (page reload) does not reset a finished login.
        store.register(&t, 201).await.unwrap();
        assert!(matches!(
            store.state(&t, 202).await.unwrap(),
            Some(FetchState::Ready(_))
        ));
        match store.fetch(&t, 203).await.unwrap() {
            Some(FetchState::Ready(authid)) => assert_eq!(authid.expose(), "v3:x"),
            other => panic!("{other:?}"),
        }
        assert!(store.fetch(&t, 204).await.unwrap().is_none(), "single use");
        assert!(matches!(
            store.state(&t, 205).await.unwrap(),
            Some(FetchState::Fetched)
        ));
        assert!(store.state(&t, 203 + RESULT_TTL).await.unwrap().is_none());
        let u = FetchToken::parse("abcdefghijklmnoq").unwrap();
        store.register(&u, 100).await.unwrap();
        assert!(store.state(&u, 100 + PENDING_TTL).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_authid_replaces_a_failure_and_no_failure_replaces_an_authid() {
        let (store, _) = store();
        let t = FetchToken::parse("abcdefghijklmnop").unwrap();
        store.register(&t, 0).await.unwrap();
        store.complete(&t, Err("declined".into()), 1).await.unwrap();
        assert!(matches!(
            store.state(&t, 2).await.unwrap(),
            Some(FetchState::Failed(_))
        ));
        // The login started again with the same token, and finished.
        store
            .complete(&t, Ok(Sensitive::new("v3:x")), 3)
            .await
            .unwrap();
        // A late failure (another browser, a replay) changes nothing.
        store.complete(&t, Err("late".into()), 4).await.unwrap();
        match store.fetch(&t, 5).await.unwrap() {
            Some(FetchState::Ready(authid)) => assert_eq!(authid.expose(), "v3:x"),
            other => panic!("{other:?}"),
        }
        store.complete(&t, Err("later".into()), 6).await.unwrap();
        assert!(matches!(
            store.state(&t, 7).await.unwrap(),
            Some(FetchState::Fetched)
        ));
    }

    #[tokio::test]
    async fn of_concurrent_fetches_one_gets_the_authid() {
        let (store, _) = store();
        let store = Arc::new(store);
        let t = FetchToken::parse("abcdefghijklmnop").unwrap();
        store
            .complete(&t, Ok(Sensitive::new("v3:x")), 0)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (store, t) = (Arc::clone(&store), t.clone());
                tokio::spawn(async move { store.fetch(&t, 1).await.unwrap() })
            })
            .collect();
        let mut got = 0;
        for task in tasks {
            if matches!(task.await.unwrap(), Some(FetchState::Ready(_))) {
                got += 1;
            }
        }
        assert_eq!(got, 1);
    }

    #[tokio::test]
    async fn the_store_holds_neither_token_nor_authid() {
        let (store, memory) = store();
        let t = FetchToken::parse("abcdefghijklmnop").unwrap();
        store
            .complete(&t, Ok(Sensitive::new("v3:secret-authid")), 0)
            .await
            .unwrap();
        assert_eq!(memory.entry_count(), 1);
        let key = Vault::for_fetch_token(t.as_str()).key(Space::Fetch);
        let raw = memory.get_versioned(&key).await.unwrap().unwrap();
        assert!(!raw.value.windows(6).any(|w| w == b"secret"));
        assert!(!key.name().contains("abcdefghijklmnop"));
    }
}
