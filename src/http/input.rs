//! Request parameters from the query string and url-encoded form bodies,
//! read with our limits and turned into our error format: as extractors,
//! [`Params`] for handlers that answer JSON, [`PageParams`] for those that
//! answer with a page, and [`OwnForm`] for forms only this site may post.

use std::collections::HashMap;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};

use super::ApiError;
use super::headers::{SentAuthId, is_form, sent_authid};
use super::page::{self, Page};
use super::state::AppState;

/// Largest form body read.
pub const FORM_LIMIT: usize = 32 * 1024;

/// Query and form parameters (form wins), plus the request headers.
pub struct Params {
    headers: HeaderMap,
    values: HashMap<String, String>,
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn into_map(self) -> HashMap<String, String> {
        self.values
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The AuthID from `X-AuthID`, else `authid` in the form or query.
    /// Borrowed from the request: the cache-hit path copies nothing.
    pub fn authid(&self) -> Result<Option<&str>, ApiError> {
        let value = match self.headers.get("x-authid") {
            Some(v) => Some(v.to_str().map_err(|_| {
                ApiError::bad_request("The AuthID contains characters an AuthID never has")
            })?),
            None => self.get("authid"),
        };
        // The form or query may hold other whitespace around it than a
        // header can; trimmed here, the rest are the rules of the fast path.
        let Some(value) = value.map(str::trim) else {
            return Ok(None);
        };
        match sent_authid(value.as_bytes()) {
            SentAuthId::Blank => Ok(None),
            SentAuthId::TooLong => Err(ApiError::bad_request("The AuthID is too long")),
            SentAuthId::Given(_) => Ok(Some(value)),
        }
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.values.keys().collect();
        names.sort();
        f.debug_struct("Params").field("names", &names).finish()
    }
}

/// Reads the query and, for url-encoded bodies, the form.
async fn read_params(request: Request) -> Result<Params, ApiError> {
    let (parts, body) = request.into_parts();
    let mut values = HashMap::new();
    if let Some(query) = parts.uri.query() {
        values.extend(url::form_urlencoded::parse(query.as_bytes()).into_owned());
    }
    if is_form(parts.headers.get(header::CONTENT_TYPE)) {
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is too large",
            )
        })?;
        values.extend(url::form_urlencoded::parse(&bytes).into_owned());
    }
    Ok(Params {
        headers: parts.headers,
        values,
    })
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        read_params(request).await
    }
}

/// [`Params`] for a handler that answers with a page: a request that cannot
/// be read gets the error page.
pub struct PageParams(pub Params);

impl FromRequest<AppState> for PageParams {
    type Rejection = Page;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Page> {
        read_params(request)
            .await
            .map(Self)
            .map_err(|e| page::error(app, e.titled("Bad request")))
    }
}

/// [`Params`] of a form posted from this site's own page (see
/// [`page::same_site_form`]); anything else gets an error page.
pub struct OwnForm(pub Params);

impl FromRequest<AppState> for OwnForm {
    type Rejection = Page;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Page> {
        if !page::same_site_form(app, request.headers()) {
            return Err(page::error(
                app,
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "This form can only be sent from this site's own page",
                )
                .titled("Refused"),
            ));
        }
        PageParams::from_request(request, app)
            .await
            .map(|PageParams(params)| Self(params))
    }
}
