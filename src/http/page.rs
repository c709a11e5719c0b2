//! How an HTML page is made: rendering with the common context, and the
//! headers every page carries (a CSP with a per-response nonce, no caching
//! of anything that shows an AuthID, the login cookie). The handlers of
//! the site's pages are in `site`.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::ApiError;
use super::error::Report;
use super::state::HttpState;
use crate::cause::Cause;
use crate::login::FetchToken;
use crate::provider::Provider;
use crate::secret::random_id;

/// The cookie binding a login to the browser that started it.
pub const LOGIN_COOKIE: &str = "oauth_login";

/// A rendered page and the headers it needs.
pub struct Page {
    status: StatusCode,
    body: String,
    nonce: String,
    no_store: bool,
    cookie: Option<String>,
    /// `Retry-After` seconds, for a page that asks the user to wait.
    retry_after: Option<u64>,
    /// Why an error page is shown, for the log.
    cause: Option<Cause>,
}

impl Page {
    /// Marks the page as showing a secret: never cached.
    pub fn no_store(mut self) -> Self {
        self.no_store = true;
        self
    }

    pub fn with_cookie(mut self, cookie: String) -> Self {
        self.cookie = Some(cookie);
        self
    }

    pub fn with_retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after = seconds.map(|s| s.max(1));
        self
    }
}

/// The path part of `PUBLIC_URL`, without a trailing slash: links on pages
/// are prefixed with it.
pub fn base_path(app: &HttpState) -> String {
    app.settings()
        .public_url
        .path()
        .trim_end_matches('/')
        .to_string()
}

/// Renders a template with the common context (names, base path, nonce).
pub fn render(app: &HttpState, status: StatusCode, template: &str, context: Value) -> Page {
    let nonce = random_id();
    let mut map = match context {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    map.insert("app_name".into(), json!(app.settings().app_name));
    map.insert("display_name".into(), json!(app.settings().display_name));
    map.insert("base".into(), json!(base_path(app)));
    map.insert("nonce".into(), json!(nonce));
    let context = minijinja::Value::from_serialize(Value::Object(map));
    let body = app.templates.render(template, context).unwrap_or_else(|e| {
        tracing::error!(template, error = %e, "page template failed; answering a plain page");
        fallback_html(status, &base_path(app))
    });
    Page {
        status,
        body,
        nonce,
        no_store: false,
        cookie: None,
        retry_after: None,
        cause: None,
    }
}

/// `base` is a URL path as the `url` crate serializes it: quotes and angle
/// brackets are percent-encoded, so it is safe inside the attribute.
fn fallback_html(status: StatusCode, base: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title></head>\
         <body><h1>{0}</h1><p>This page cannot be shown right now. <a href=\"{base}/\">Start again</a>.</p></body></html>",
        status.as_u16()
    )
}

/// Where a provider's login starts: the OAuth redirect, or the token form.
pub fn login_href(app: &HttpState, provider: &Provider, fetch_token: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("id", &provider.id);
    if let Some(t) = fetch_token {
        query.append_pair("token", t);
    }
    let path = if provider.cli_token {
        "cli-token"
    } else {
        "login"
    };
    format!("{}/{path}?{}", base_path(app), query.finish())
}

/// The provider's entry on the provider list, carrying a fetch token: the
/// page that tells the user where the AuthID will go.
pub fn index_href(app: &HttpState, provider: &Provider, fetch_token: &FetchToken) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("type", &provider.id);
    query.append_pair("token", fetch_token.as_str());
    format!("{}/?{}", base_path(app), query.finish())
}

/// An error as a readable page: its title and text, a link to start the
/// login again where there is one, and where to remove the application's
/// access when that is the way out. Never cached; the cause goes to the
/// log with the answer.
pub fn error(app: &HttpState, error: impl Into<ApiError>) -> Page {
    let error = error.into();
    let provider = error
        .page
        .restart
        .as_deref()
        .and_then(|id| app.catalogue().get(id));
    let restart_href = provider.map(|p| login_href(app, p, None));
    let deauth = provider
        .filter(|_| error.page.deauth)
        .and_then(|p| p.deauth_link.clone());
    let mut page = render(
        app,
        error.status,
        "error.html",
        json!({
            "title": error.page.title,
            "message": error.text(Some(app.settings().public_base())),
            "restart_href": restart_href,
            "deauth_link": deauth,
            "deauth_name": provider.map(|p| p.name.clone()),
        }),
    )
    .no_store()
    .with_retry_after(error.retry_after);
    page.cause = error.cause().cloned();
    page
}

fn csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; \
         img-src 'self' https: data:; connect-src 'self'; form-action 'self' https:; \
         base-uri 'none'; frame-ancestors 'none'"
    )
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&csp(&self.nonce)) {
            headers.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if self.no_store {
            super::headers::no_store(headers);
        } else {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        if let Some(v) = self.cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.append(header::SET_COOKIE, v);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.cause.is_some() {
            response.extensions_mut().insert(Report::cause(self.cause));
        }
        response
    }
}

/// The login cookie: HttpOnly, SameSite=Lax (sent on the provider's
/// redirect back), only to `/logged-in`, for `max_age` seconds (the
/// lifetime of the login state).
pub fn login_cookie(app: &HttpState, nonce: &str, max_age: i64) -> String {
    let secure = if app.settings().secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{LOGIN_COOKIE}={nonce}; Path={}/logged-in; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        base_path(app)
    )
}

/// The value of a cookie in the request, if present.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Forms that log in or revoke are only taken from this site's own pages:
/// a cross-site POST could log a victim's browser into someone else's
/// account. `Origin: null` is what our `no-referrer` pages send.
pub fn same_site_form(app: &HttpState, headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get(HeaderName::from_static("sec-fetch-site"))
        .and_then(|v| v.to_str().ok());
    if fetch_site == Some("cross-site") {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None | Some("null") => true,
        Some(origin) => origin == app.settings().public_url.origin().ascii_serialization(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; oauth_login=xyz"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, LOGIN_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn csp_names_the_nonce() {
        let policy = csp("abc");
        assert!(policy.contains("script-src 'nonce-abc'"));
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(policy.starts_with("default-src 'none'"));
    }
}
