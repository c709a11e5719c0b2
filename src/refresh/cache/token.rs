//! One cached answer: the access token, its prepared `/refresh` JSON, and
//! the marks that end it (retired, revoked elsewhere).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use bytes::Bytes;
use zeroize::Zeroizing;

use super::{CacheKey, MIN_REMAINING_SECS};
use crate::secret::Sensitive;
use crate::store::StoreKey;

/// A cached answer for one login.
///
/// The answer's JSON is prepared when the token arrives, and the token and
/// the provider id are read back out of it: one allocation holds all the
/// entry's text (wiped on drop, as it holds the token).
pub struct CachedToken {
    /// Unix seconds.
    pub expires_at: i64,
    /// The AuthID the client should switch to, if any.
    pub new_authid: Option<Arc<str>>,
    /// The login this answer belongs to (for per-login limits on hits).
    pub login_key: CacheKey,
    /// The provider rotated the refresh token in this answer.
    pub rotated: bool,
    /// `{"access_token":"…","expires":` | `,"type":"…"[,"v2_authid":"…"]}`
    json: Zeroizing<Box<[u8]>>,
    /// Where the seconds left go in `json`.
    split: u32,
    /// Where the token and the provider id are in `json`; `None` when
    /// JSON had to escape them (never seen in practice), then kept apart.
    token_at: Option<(u32, u32)>,
    provider_at: Option<(u32, u32)>,
    escaped: Option<Box<(Sensitive, String)>>,
    /// Set once this is no longer its login's current entry (forgotten,
    /// replaced or evicted): texts still pointing here miss, so forgetting
    /// a login reaches every AuthID text of it through the one entry.
    retired: AtomicBool,
    /// Where the store marks the login revoked: a hit looks there now and
    /// then, so a revocation on another instance ends this one's answers.
    revoked_key: Option<StoreKey>,
    /// When (clock seconds) the mark was last looked for.
    checked_at: AtomicI64,
}

// By hand: the token and the new AuthID must never reach a log.
impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("provider", &self.provider())
            .field("expires_at", &self.expires_at)
            .field(
                "new_authid",
                &self.new_authid.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// The `/refresh` success answer, as serde writes it: `expires` comes
/// second so the prepared JSON splits in two around it.
#[derive(serde::Serialize)]
struct Head<'a> {
    access_token: &'a str,
}

#[derive(serde::Serialize)]
struct Tail<'a> {
    #[serde(rename = "type")]
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    v2_authid: Option<&'a str>,
}

const HEAD_START: &[u8] = br#"{"access_token":""#;
const TAIL_START: &[u8] = br#","type":""#;

impl CachedToken {
    pub fn new(
        access_token: Sensitive,
        expires_at: i64,
        provider: String,
        new_authid: Option<Arc<str>>,
        login_key: CacheKey,
        rotated: bool,
    ) -> Self {
        let head = Zeroizing::new(json_object(&Head {
            access_token: access_token.expose(),
        }));
        let tail = Zeroizing::new(json_object(&Tail {
            provider: &provider,
            v2_authid: new_authid.as_deref(),
        }));
        let mut json = Vec::with_capacity(head.len() + tail.len() + 11);
        json.extend_from_slice(&head[..head.len() - 1]);
        json.extend_from_slice(b",\"expires\":");
        let split = json.len();
        json.push(b',');
        json.extend_from_slice(&tail[1..]);
        // Unescaped exactly when JSON added nothing but the quotes.
        let token = access_token.expose().len();
        let token_at = (head.len() == HEAD_START.len() + token + 2)
            .then_some((HEAD_START.len(), HEAD_START.len() + token));
        let provider_start = split + TAIL_START.len();
        let provider_at = json[split..]
            .starts_with(TAIL_START)
            .then_some((provider_start, provider_start + provider.len()))
            .filter(|&(a, b)| {
                json.get(a..b) == Some(provider.as_bytes()) && json.get(b) == Some(&b'"')
            });
        let escaped = (token_at.is_none() || provider_at.is_none())
            .then(|| Box::new((access_token, provider)));
        let at = |r: Option<(usize, usize)>| r.map(|(a, b)| (a as u32, b as u32));
        Self {
            expires_at,
            new_authid,
            login_key,
            rotated,
            json: Zeroizing::new(json.into_boxed_slice()),
            split: split as u32,
            token_at: at(token_at),
            provider_at: at(provider_at),
            escaped,
            retired: AtomicBool::new(false),
            revoked_key: None,
            checked_at: AtomicI64::new(i64::MAX),
        }
    }

    /// Has hits look for the login's revocation mark at `revoked_key`,
    /// first [`recheck_due`](Self::recheck_due) an interval after `now`.
    pub fn watching(mut self, revoked_key: StoreKey, now: i64) -> Self {
        self.revoked_key = Some(revoked_key);
        self.checked_at = AtomicI64::new(now);
        self
    }

    /// Where the login's revocation mark would be, if hits look for it.
    pub fn revoked_key(&self) -> Option<&StoreKey> {
        self.revoked_key.as_ref()
    }

    /// True when a hit should look for a revocation (without claiming the
    /// look: the fast path leaves it to the full one).
    pub fn recheck_pending(&self, now: i64, interval: i64) -> bool {
        self.revoked_key.is_some()
            && now.saturating_sub(self.checked_at.load(Ordering::Relaxed)) >= interval
    }

    /// True for one caller per `interval`: the one that should look for a
    /// revocation now.
    pub fn recheck_due(&self, now: i64, interval: i64) -> bool {
        let last = self.checked_at.load(Ordering::Relaxed);
        self.revoked_key.is_some()
            && now.saturating_sub(last) >= interval
            && self
                .checked_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn text(&self, at: Option<(u32, u32)>) -> Option<&str> {
        let (a, b) = at?;
        std::str::from_utf8(self.json.get(a as usize..b as usize)?).ok()
    }

    /// The access token, copied (for the few callers that send it on).
    pub fn access_token(&self) -> Sensitive {
        match (self.text(self.token_at), &self.escaped) {
            (Some(token), _) => Sensitive::new(token),
            (None, Some(escaped)) => escaped.0.clone(),
            (None, None) => Sensitive::new(""),
        }
    }

    /// The provider id.
    pub fn provider(&self) -> &str {
        match (self.text(self.provider_at), &self.escaped) {
            (Some(provider), _) => provider,
            (None, Some(escaped)) => &escaped.1,
            (None, None) => "",
        }
    }

    pub fn fresh_at(&self, now: i64) -> bool {
        self.expires_at - now > MIN_REMAINING_SECS
    }

    /// Whole seconds left at `now`.
    pub fn seconds_left(&self, now: i64) -> u64 {
        (self.expires_at - now).max(0) as u64
    }

    /// The `/refresh` answer's JSON body with `expires` seconds left:
    /// `{"access_token", "expires", "type"[, "v2_authid"]}`.
    pub fn json_body(&self, expires: u64) -> Bytes {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(expires).as_bytes();
        let (head, tail) = self.json.split_at(self.split as usize);
        let mut body = Vec::with_capacity(self.json.len() + digits.len());
        body.extend_from_slice(head);
        body.extend_from_slice(digits);
        body.extend_from_slice(tail);
        Bytes::from(body)
    }

    pub(super) fn live_at(&self, now: i64) -> bool {
        self.fresh_at(now) && !self.retired.load(Ordering::Relaxed)
    }

    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

/// A struct of strings as a JSON object; cannot fail.
fn json_object<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}
