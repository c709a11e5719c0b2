//! The state every handler gets: the core [`App`] and what only the web
//! edge needs (the page templates, when the forwarded-header warning was
//! last logged). Built by [`super::router`]; the core knows nothing of it.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use super::templates::Templates;
use crate::app::{App, SharedApp};

pub struct HttpState {
    app: SharedApp,
    /// The page templates and static assets.
    pub(super) templates: Templates,
    /// When (clock seconds) the last warning about `X-Forwarded-For` from
    /// an untrusted peer was logged; 0 before the first.
    pub(super) forwarded_warned: AtomicI64,
}

/// What axum's `State` carries.
pub type AppState = Arc<HttpState>;

impl HttpState {
    pub fn new(app: SharedApp) -> Self {
        let templates = Templates::new(app.settings().templates_dir.as_deref());
        Self {
            app,
            templates,
            forwarded_warned: AtomicI64::new(0),
        }
    }
}

/// Handlers call the core's methods on the state directly.
impl Deref for HttpState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}
