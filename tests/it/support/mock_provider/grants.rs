//! The provider's grants: each login makes a grant (a family of refresh
//! and access tokens, revoked together), and the grant types of `/token`
//! (`refresh_token`, `authorization_code`, `password`) act on them with the
//! rotation, PKCE and scope rules the provider is set to.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use rand::distributions::Alphanumeric;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::endpoints::{json_response, oauth_error};
use super::{Inner, MockProvider, PCLOUD_LOCATION_ID, PCLOUD_UID, RedirectRule, Rotation};

#[derive(Debug, Clone)]
pub(super) struct RefreshTokenInfo {
    pub(super) family: u64,
    pub(super) client_id: String,
    /// Refused from now on (single-use rotation).
    pub(super) spent: bool,
    /// A newer refresh token of the same grant exists.
    pub(super) superseded: bool,
}

#[derive(Debug, Clone)]
pub(super) struct AccessTokenInfo {
    pub(super) family: u64,
    pub(super) expires_at: Instant,
    pub(super) revoked: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Family {
    pub(super) scope: Option<String>,
    pub(super) revoked: bool,
}

#[derive(Debug, Clone)]
pub(super) struct CodeInfo {
    pub(super) client_id: String,
    pub(super) redirect_uri: Option<String>,
    pub(super) challenge: Option<(String, String)>,
    pub(super) scope: Option<String>,
    pub(super) used: bool,
    /// Grant created when the code was exchanged; revoked if the code is
    /// replayed (RFC 6749 section 4.1.2).
    pub(super) family: Option<u64>,
}

/// Every grant, token and code the provider has handed out.
#[derive(Debug)]
pub(super) struct Grants {
    next_family: u64,
    families: HashMap<u64, Family>,
    pub(super) refresh_tokens: HashMap<String, RefreshTokenInfo>,
    pub(super) access_tokens: HashMap<String, AccessTokenInfo>,
    pub(super) codes: HashMap<String, CodeInfo>,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            next_family: 1,
            families: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            codes: HashMap::new(),
        }
    }
}

impl Grants {
    pub(super) fn new_family(&mut self, scope: Option<String>) -> u64 {
        let id = self.next_family;
        self.next_family += 1;
        self.families.insert(
            id,
            Family {
                scope,
                revoked: false,
            },
        );
        id
    }

    pub(super) fn mint_refresh_token(&mut self, family: u64, client_id: &str) -> String {
        let token = random_token("rt-");
        self.refresh_tokens.insert(
            token.clone(),
            RefreshTokenInfo {
                family,
                client_id: client_id.to_owned(),
                spent: false,
                superseded: false,
            },
        );
        token
    }

    pub(super) fn mint_access_token(&mut self, family: u64, lifetime: u64) -> String {
        let token = random_token("at-");
        self.access_tokens.insert(
            token.clone(),
            AccessTokenInfo {
                family,
                expires_at: Instant::now() + Duration::from_secs(lifetime),
                revoked: false,
            },
        );
        token
    }

    pub(super) fn revoke_family(&mut self, family: u64) {
        if let Some(f) = self.families.get_mut(&family) {
            f.revoked = true;
        }
    }

    pub(super) fn family_alive(&self, family: u64) -> bool {
        self.families.get(&family).is_some_and(|f| !f.revoked)
    }

    /// The standard successful token answer for a grant.
    pub(super) fn token_answer(
        &mut self,
        family: u64,
        refresh_token: Option<String>,
        lifetime: u64,
    ) -> Value {
        let access_token = self.mint_access_token(family, lifetime);
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
        });
        if let Some(scope) = self.families.get(&family).and_then(|f| f.scope.clone()) {
            body["scope"] = Value::String(scope);
        }
        if let Some(rt) = refresh_token {
            body["refresh_token"] = Value::String(rt);
        }
        body
    }

    /// The scope the grant was given.
    pub(super) fn granted_scope(&self, family: u64) -> Option<String> {
        self.families.get(&family).and_then(|f| f.scope.clone())
    }

    /// The grant of an access token that exists, is not expired and not
    /// revoked.
    pub(super) fn live_access_token(&self, at: &str) -> Option<u64> {
        self.access_tokens
            .get(at)
            .filter(|i| !i.revoked && Instant::now() < i.expires_at && self.family_alive(i.family))
            .map(|i| i.family)
    }

    /// A new authorization code for a consented `/authorize` request.
    pub(super) fn issue_code(
        &mut self,
        client_id: String,
        redirect_uri: String,
        challenge: Option<(String, String)>,
        scope: Option<String>,
    ) -> String {
        let code = random_token("code-");
        self.codes.insert(
            code.clone(),
            CodeInfo {
                client_id,
                redirect_uri: Some(redirect_uri),
                challenge,
                scope,
                used: false,
                family: None,
            },
        );
        code
    }
}

impl MockProvider {
    /// Creates a new grant for the current client and returns its refresh
    /// token.
    pub fn issue_refresh_token(&self) -> String {
        let mut s = self.lock();
        let scope = s.settings.default_scope.clone();
        let client_id = s.settings.client_id.clone();
        let family = s.grants.new_family(scope);
        s.grants.mint_refresh_token(family, &client_id)
    }

    /// Revokes the grant a refresh or access token belongs to, as a user
    /// de-authorizing the application at the provider would.
    pub fn revoke_grant_of(&self, token: &str) {
        let mut s = self.lock();
        let grants = &mut s.grants;
        let family = grants
            .refresh_tokens
            .get(token)
            .map(|i| i.family)
            .or_else(|| grants.access_tokens.get(token).map(|i| i.family));
        if let Some(f) = family {
            grants.revoke_family(f);
        }
    }

    /// True when the refresh token would be accepted now.
    pub fn is_valid_refresh_token(&self, rt: &str) -> bool {
        let s = self.lock();
        s.grants
            .refresh_tokens
            .get(rt)
            .is_some_and(|i| !i.spent && s.grants.family_alive(i.family))
    }

    /// True when the access token exists, is not expired and not revoked.
    pub fn is_valid_access_token(&self, at: &str) -> bool {
        self.lock().grants.live_access_token(at).is_some()
    }

    /// Every refresh token, access token and authorization code the mock
    /// has handed out, to search logs and stores for.
    pub fn issued_tokens(&self) -> Vec<String> {
        let s = self.lock();
        let grants = &s.grants;
        grants
            .refresh_tokens
            .keys()
            .chain(grants.access_tokens.keys())
            .chain(grants.codes.keys())
            .cloned()
            .collect()
    }
}

// ---- grant types at /token ------------------------------------------------

pub(super) fn refresh_grant(
    s: &mut Inner,
    client_id: &str,
    form: &BTreeMap<String, String>,
) -> Response {
    match (s.settings.redirect_rule, form.contains_key("redirect_uri")) {
        (RedirectRule::Forbidden, true) => {
            return oauth_error(
                400,
                "invalid_request",
                "redirect_uri is not allowed on a refresh request.",
            );
        }
        (RedirectRule::Required, false) => {
            return oauth_error(400, "invalid_request", "Missing redirect_uri.");
        }
        _ => {}
    }
    let Some(rt) = form.get("refresh_token") else {
        return oauth_error(400, "invalid_request", "Missing refresh_token.");
    };
    let Some(info) = s.grants.refresh_tokens.get(rt).cloned() else {
        return oauth_error(400, "invalid_grant", "Invalid refresh token.");
    };
    if info.client_id != client_id {
        return oauth_error(
            400,
            "invalid_grant",
            "Refresh token was issued to another client.",
        );
    }
    if !s.grants.family_alive(info.family) {
        return oauth_error(400, "invalid_grant", "Refresh token has been revoked.");
    }
    if info.spent {
        s.calls.spent_token_presentations += 1;
        if s.settings.rotation == Rotation::SingleUseReuseDetection {
            s.grants.revoke_family(info.family);
        }
        return oauth_error(400, "invalid_grant", "Refresh token has already been used.");
    }
    if info.superseded {
        s.calls.spent_token_presentations += 1;
    }
    if let Some(requested) = form.get("scope") {
        let granted = s.grants.granted_scope(info.family);
        if !scope_subset(requested, granted.as_deref()) {
            return oauth_error(
                400,
                "invalid_scope",
                "Requested scope exceeds the granted scope.",
            );
        }
    }
    let new_rt = match s.settings.rotation {
        Rotation::None => None,
        Rotation::Rotating | Rotation::SingleUse | Rotation::SingleUseReuseDetection => {
            let single_use = s.settings.rotation != Rotation::Rotating;
            if let Some(old) = s.grants.refresh_tokens.get_mut(rt) {
                old.superseded = true;
                old.spent = single_use;
            }
            Some(s.grants.mint_refresh_token(info.family, client_id))
        }
    };
    let lifetime = s.settings.access_token_lifetime;
    json_response(200, &s.grants.token_answer(info.family, new_rt, lifetime))
}

pub(super) fn code_grant(
    s: &mut Inner,
    client_id: &str,
    form: &BTreeMap<String, String>,
) -> Response {
    let Some(code) = form.get("code") else {
        return oauth_error(400, "invalid_request", "Missing code.");
    };
    let Some(info) = s.grants.codes.get(code).cloned() else {
        return oauth_error(400, "invalid_grant", "Invalid authorization code.");
    };
    if info.used {
        if let Some(f) = info.family {
            s.grants.revoke_family(f);
        }
        return oauth_error(
            400,
            "invalid_grant",
            "Authorization code has already been used.",
        );
    }
    if info.client_id != client_id {
        return oauth_error(
            400,
            "invalid_grant",
            "Authorization code was issued to another client.",
        );
    }
    if info.redirect_uri.is_some() && form.get("redirect_uri") != info.redirect_uri.as_ref() {
        return oauth_error(400, "invalid_grant", "redirect_uri mismatch.");
    }
    match (&info.challenge, form.get("code_verifier")) {
        (Some((challenge, method)), Some(verifier)) => {
            if !pkce_matches(method, challenge, verifier) {
                return oauth_error(400, "invalid_grant", "PKCE verification failed.");
            }
        }
        (Some(_), None) => {
            return oauth_error(400, "invalid_grant", "Missing code_verifier.");
        }
        (None, Some(_)) => {
            return oauth_error(
                400,
                "invalid_grant",
                "code_verifier given but the authorization request had no code_challenge.",
            );
        }
        (None, None) => {
            if s.settings.require_pkce {
                return oauth_error(400, "invalid_grant", "Missing code_verifier.");
            }
        }
    }

    let scope = info
        .scope
        .clone()
        .or_else(|| s.settings.default_scope.clone());
    let family = s.grants.new_family(scope);
    if let Some(c) = s.grants.codes.get_mut(code) {
        c.used = true;
        c.family = Some(family);
    }
    if s.settings.access_token_only {
        let access_token = s
            .grants
            .mint_access_token(family, s.settings.access_token_lifetime);
        return json_response(
            200,
            &json!({
                "result": 0,
                "access_token": access_token,
                "token_type": "bearer",
                "uid": PCLOUD_UID,
                "locationid": PCLOUD_LOCATION_ID,
            }),
        );
    }
    let rt = s.grants.mint_refresh_token(family, client_id);
    let lifetime = s.settings.access_token_lifetime;
    json_response(200, &s.grants.token_answer(family, Some(rt), lifetime))
}

pub(super) fn password_grant(
    s: &mut Inner,
    client_id: &str,
    form: &BTreeMap<String, String>,
) -> Response {
    let (Some(user), Some(pass)) = (form.get("username"), form.get("password")) else {
        return oauth_error(400, "invalid_request", "Missing username or password.");
    };
    if s.settings.password_logins.get(user) != Some(pass) {
        return oauth_error(400, "invalid_grant", "Invalid user credentials.");
    }
    let scope = form
        .get("scope")
        .cloned()
        .or_else(|| s.settings.default_scope.clone());
    let offline = scope
        .as_deref()
        .is_some_and(|sc| sc.split_whitespace().any(|x| x == "offline_access"));
    let family = s.grants.new_family(scope);
    let rt = offline.then(|| s.grants.mint_refresh_token(family, client_id));
    let lifetime = s.settings.access_token_lifetime;
    json_response(200, &s.grants.token_answer(family, rt, lifetime))
}

fn pkce_matches(method: &str, challenge: &str, verifier: &str) -> bool {
    match method {
        "S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge,
        "plain" => verifier == challenge,
        _ => false,
    }
}

fn scope_subset(requested: &str, granted: Option<&str>) -> bool {
    let granted: Vec<&str> = granted.unwrap_or("").split_whitespace().collect();
    requested.split_whitespace().all(|s| granted.contains(&s))
}

pub(super) fn random_token(prefix: &str) -> String {
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{prefix}{body}")
}
