//! Faults: canned answers of the token endpoint that replace normal
//! processing (errors, throttling, broken or huge bodies) or change its
//! timing (delays, hangs), queued for the next requests or sticky.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::MockProvider;
use super::endpoints::{json_response, oauth_error, status, with_retry_after};

/// A canned answer of the token endpoint, used instead of normal processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Exactly this status and body (`Content-Type: application/json` when
    /// the body starts with `{`, else `text/plain`), with `Retry-After` when
    /// given.
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// Throttling (`429` or `503`): `{"error":"temporarily_unavailable"}`
    /// plus `Retry-After` when given.
    Throttle {
        status: u16,
        retry_after: Option<String>,
    },
    /// An OAuth error answer: `{"error": .., "error_description": ..}`.
    OAuthError {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// Never answers; the request stays open until the client gives up.
    Hang,
    /// Waits, then processes the request normally.
    Delay(Duration),
    /// `200` with a truncated JSON body.
    BrokenJson,
    /// An HTML error page with this status.
    Html(u16),
    /// `200` with a JSON body of exactly this many bytes (or filler bytes
    /// when too small for JSON).
    HugeBody(usize),
    /// pCloud style error: `200 {"result": .., "error": ..}`.
    PcloudError { result: u32, error: String },
}

/// The faults set for the token endpoint.
#[derive(Debug, Default)]
pub(super) struct Faults {
    queue: VecDeque<Fault>,
    sticky: Option<Fault>,
}

impl Faults {
    /// The fault for the next request: queued ones first, each used once.
    pub(super) fn next(&mut self) -> Option<Fault> {
        match self.queue.pop_front() {
            Some(f) => Some(f),
            None => self.sticky.clone(),
        }
    }
}

impl MockProvider {
    /// The next token endpoint request answers with this fault (FIFO, each
    /// used once). Queued faults win over the sticky one.
    pub fn push_fault(&self, f: Fault) {
        self.lock().faults.queue.push_back(f);
    }

    /// Every token endpoint request answers with this fault until cleared.
    pub fn set_sticky_fault(&self, f: Option<Fault>) {
        self.lock().faults.sticky = f;
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.queue.len()
    }
}

/// The answer of a fault that replaces normal processing; `None` for the
/// faults that only change timing.
pub(super) fn canned_response(fault: Fault) -> Option<Response> {
    let resp = match fault {
        Fault::Status {
            status: code,
            body,
            retry_after,
        } => status_response(code, body, retry_after.as_deref()),
        Fault::Throttle {
            status: code,
            retry_after,
        } => with_retry_after(
            oauth_error(
                code,
                "temporarily_unavailable",
                "Too many requests, try again later.",
            ),
            retry_after.as_deref(),
        ),
        Fault::OAuthError {
            status: code,
            error,
            description,
        } => {
            let mut body = json!({ "error": error });
            if let Some(d) = description {
                body["error_description"] = Value::String(d);
            }
            json_response(code, &body)
        }
        Fault::BrokenJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"access_token\":\"at-trunc",
        )
            .into_response(),
        Fault::Html(code) => (
            status(code),
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!(
                "<!DOCTYPE html>\n<html><head><title>Error {code}</title></head>\
                 <body><h1>Error {code}</h1><p>The server encountered a problem.</p></body></html>\n"
            ),
        )
            .into_response(),
        Fault::HugeBody(n) => huge_body(n),
        Fault::PcloudError { result, error } => {
            json_response(200, &json!({ "result": result, "error": error }))
        }
        Fault::Hang | Fault::Delay(_) => return None,
    };
    Some(resp)
}

/// A plain answer with `code`, typed JSON when the body looks like it.
fn status_response(code: u16, body: String, retry_after: Option<&str>) -> Response {
    let ct = if body.trim_start().starts_with('{') {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let resp = (
        status(code),
        [(header::CONTENT_TYPE, HeaderValue::from_static(ct))],
        body,
    )
        .into_response();
    with_retry_after(resp, retry_after)
}

/// A JSON answer of `n` bytes (padding inside one string field).
fn huge_body(n: usize) -> Response {
    let prefix = "{\"padding\":\"";
    let suffix = "\"}";
    let body = if n >= prefix.len() + suffix.len() {
        let mut b = String::with_capacity(n);
        b.push_str(prefix);
        b.extend(std::iter::repeat_n('x', n - prefix.len() - suffix.len()));
        b.push_str(suffix);
        b
    } else {
        "x".repeat(n)
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}
