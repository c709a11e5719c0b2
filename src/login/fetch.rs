//! The fetch rendezvous: an older client opens the login page with a random
//! `token` and polls `/fetch?token=...` until the login completes there.
//! The store sits behind a trait so several instances can later share one.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::secret::Sensitive;

/// How long a registered token waits for its login.
pub const PENDING_TTL: i64 = 600;
/// How long a finished login's answer stays fetchable.
pub const RESULT_TTL: i64 = 300;
/// Most tokens held in memory at once.
const CAPACITY: u64 = 100_000;

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
#[derive(Debug, Clone)]
pub enum FetchState {
    /// Registered; the login has not finished.
    Pending,
    /// Finished with an AuthID.
    Ready { authid: Sensitive, fetched: bool },
    /// Finished without one; the reason is safe to show.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct FetchEntry {
    pub state: FetchState,
    pub expires_at: i64,
}

/// Storage of fetch tokens. `now` is passed in so expiry follows the
/// application clock.
pub trait FetchStore: Send + Sync + 'static {
    /// Registers a token as pending, unless it is known already.
    fn put<'a>(&'a self, token: &'a FetchToken, now: i64) -> BoxFuture<'a, ()>;
    /// The live entry of a token.
    fn get<'a>(&'a self, token: &'a FetchToken, now: i64) -> BoxFuture<'a, Option<FetchEntry>>;
    /// Records the outcome of the token's login.
    fn complete<'a>(
        &'a self,
        token: &'a FetchToken,
        outcome: Result<Sensitive, String>,
        now: i64,
    ) -> BoxFuture<'a, ()>;
    /// Notes that the client picked up the AuthID (for `/token-state`).
    fn mark_fetched<'a>(&'a self, token: &'a FetchToken, now: i64) -> BoxFuture<'a, ()>;
}

/// One instance's memory. Entries also expire on their own after
/// [`PENDING_TTL`], so an idle store shrinks.
pub struct MemoryFetchStore {
    entries: moka::sync::Cache<FetchToken, FetchEntry>,
}

impl Default for MemoryFetchStore {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(Duration::from_secs(PENDING_TTL as u64))
                .build(),
        }
    }
}

impl MemoryFetchStore {
    fn live(&self, token: &FetchToken, now: i64) -> Option<FetchEntry> {
        self.entries.get(token).filter(|e| e.expires_at > now)
    }
}

impl FetchStore for MemoryFetchStore {
    fn put<'a>(&'a self, token: &'a FetchToken, now: i64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if self.live(token, now).is_none() {
                self.entries.insert(
                    token.clone(),
                    FetchEntry {
                        state: FetchState::Pending,
                        expires_at: now + PENDING_TTL,
                    },
                );
            }
        })
    }

    fn get<'a>(&'a self, token: &'a FetchToken, now: i64) -> BoxFuture<'a, Option<FetchEntry>> {
        Box::pin(async move { self.live(token, now) })
    }

    fn complete<'a>(
        &'a self,
        token: &'a FetchToken,
        outcome: Result<Sensitive, String>,
        now: i64,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let state = match outcome {
                Ok(authid) => FetchState::Ready {
                    authid,
                    fetched: false,
                },
                Err(reason) => FetchState::Failed(reason),
            };
            self.entries.insert(
                token.clone(),
                FetchEntry {
                    state,
                    expires_at: now + RESULT_TTL,
                },
            );
        })
    }

    fn mark_fetched<'a>(&'a self, token: &'a FetchToken, now: i64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(mut entry) = self.live(token, now) {
                if let FetchState::Ready { fetched, .. } = &mut entry.state {
                    *fetched = true;
                    self.entries.insert(token.clone(), entry);
                }
            }
        })
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

    #[tokio::test]
    async fn pending_ready_fetched_and_expiry() {
        let store = MemoryFetchStore::default();
        let t = FetchToken::parse("abcdefghijklmnop").unwrap();
        assert!(store.get(&t, 100).await.is_none());
        store.put(&t, 100).await;
        assert!(matches!(
            store.get(&t, 101).await.unwrap().state,
            FetchState::Pending
        ));
        store.complete(&t, Ok(Sensitive::new("v3:x")), 200).await;
        // A late `put` (page reload) does not reset a finished login.
        store.put(&t, 201).await;
        store.mark_fetched(&t, 202).await;
        match store.get(&t, 203).await.unwrap().state {
            FetchState::Ready { authid, fetched } => {
                assert_eq!(authid.expose(), "v3:x");
                assert!(fetched);
            }
            other => panic!("{other:?}"),
        }
        assert!(store.get(&t, 200 + RESULT_TTL).await.is_none());
        store.put(&t, 100).await;
        assert!(store.get(&t, 100 + PENDING_TTL).await.is_none());
    }
}
