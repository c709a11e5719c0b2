//! The answer of a refresh: what `/refresh` returns, and how a new access
//! token becomes one (re-sealing the AuthID when the client should switch,
//! and caching it here).

use std::sync::Arc;

use super::cache::CachedToken;
use super::records::{LoginRecords, Newest};
use super::{Inner, OpenedAuthId, RefreshError};
use crate::authid;
use crate::cause::Cause;
use crate::secret::Sensitive;

/// What `/refresh` answers on success: the cached answer itself (shared,
/// not copied) and the seconds it has left.
#[derive(Debug, Clone)]
pub struct RefreshAnswer {
    token: Arc<CachedToken>,
    /// Whole seconds left.
    pub expires: u64,
}

impl RefreshAnswer {
    pub fn access_token(&self) -> Sensitive {
        self.token.access_token()
    }

    /// The provider id.
    pub fn provider(&self) -> &str {
        self.token.provider()
    }

    /// Present when the client should switch to a new AuthID.
    pub fn new_authid(&self) -> Option<&str> {
        self.token.new_authid.as_deref()
    }

    /// The `/refresh` success body, from the JSON the cache prepared.
    pub fn json_body(&self) -> bytes::Bytes {
        self.token.json_body(self.expires)
    }
}

pub(super) fn answer(token: Arc<CachedToken>, now: i64) -> RefreshAnswer {
    RefreshAnswer {
        expires: token.seconds_left(now),
        token,
    }
}

impl Inner {
    /// Builds the answer, re-sealing the AuthID when the client should
    /// switch (a newer refresh token, the `v2:` form, an old key), and
    /// caches it here. `records` are the login's (their vault gives the
    /// id of the revocation mark the cached answer watches, derived once
    /// per flight).
    pub(super) fn conclude(
        &self,
        records: &LoginRecords<'_>,
        login: &OpenedAuthId,
        access_token: Sensitive,
        expires_at: i64,
        update: Option<Newest>,
        rotated: bool,
    ) -> Result<Arc<CachedToken>, RefreshError> {
        let deps = &self.deps;
        let new_authid = if update.is_some() || login.reseal {
            let mut claims = login.claims.clone();
            claims.pin_login_secret();
            if let Some(update) = update {
                claims.rt = update.refresh_token;
                authid::set_generation(&mut claims, update.generation);
            }
            claims.iat = deps.clock.now();
            let sealed = deps
                .keyring
                .seal(&claims)
                .map_err(|e| RefreshError::Seal(Cause::new(e)))?;
            Some(Arc::<str>::from(sealed))
        } else {
            None
        };
        let token = Arc::new(
            CachedToken::new(
                access_token,
                expires_at,
                login.provider.id.clone(),
                new_authid.clone(),
                login.key,
                rotated,
            )
            .watching(records.revoked_key(), deps.clock.now()),
        );
        self.cache.insert_login(login.key, Arc::clone(&token));
        if let Some(text) = &new_authid {
            // The new AuthID hits the cache straight away.
            self.cache
                .insert_text(self.cache.text_key(text), Arc::clone(&token));
        }
        Ok(token)
    }
}
