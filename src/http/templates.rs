//! Page templates (minijinja, autoescaped): built-in defaults compiled into
//! the binary, each overridable by a file of the same name in
//! `TEMPLATES_DIR`. Static assets follow the same rule.

use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value};

/// Built-in templates, by name.
const BUILTIN: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("index.html", include_str!("../../templates/index.html")),
    (
        "logged_in.html",
        include_str!("../../templates/logged_in.html"),
    ),
    ("error.html", include_str!("../../templates/error.html")),
    (
        "cli_token.html",
        include_str!("../../templates/cli_token.html"),
    ),
    ("revoke.html", include_str!("../../templates/revoke.html")),
    ("revoked.html", include_str!("../../templates/revoked.html")),
    ("privacy.html", include_str!("../../templates/privacy.html")),
];

/// Built-in static assets: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "site.css",
        "text/css; charset=utf-8",
        include_str!("../../templates/static/site.css"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../../templates/static/login.js"),
    ),
];

/// A static asset, ready to serve.
pub struct Asset {
    pub content_type: &'static str,
    pub body: String,
}

pub struct Templates {
    env: Environment<'static>,
    dir: Option<PathBuf>,
}

impl Templates {
    pub fn new(dir: Option<&Path>) -> Self {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // minijinja's HTML escaping also turns `/` into `&#x2f;`, which is
        // safe but makes every link unreadable in the page source.
        env.set_formatter(|out, state, value| {
            if state.auto_escape() == AutoEscape::Html
                && !value.is_safe()
                && !value.is_undefined()
                && !value.is_none()
            {
                out.write_str(&escape_html(&value.to_string()))
                    .map_err(|std::fmt::Error| Error::from(ErrorKind::WriteFailure))
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        let dir_for_loader = dir.map(Path::to_path_buf);
        env.set_loader(move |name| {
            if let Some(text) = read_override(dir_for_loader.as_deref(), name) {
                return Ok(Some(text));
            }
            Ok(BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| (*text).to_string()))
        });
        Self {
            env,
            dir: dir.map(Path::to_path_buf),
        }
    }

    /// Renders a template; the error text is for the log.
    pub fn render(&self, name: &str, context: Value) -> Result<String, String> {
        let template = self.env.get_template(name).map_err(|e| e.to_string())?;
        template.render(context).map_err(|e| e.to_string())
    }

    /// Loads every template, so a broken override is reported at start.
    pub fn check(&self) -> Vec<String> {
        BUILTIN
            .iter()
            .filter_map(|(name, _)| {
                self.env
                    .get_template(name)
                    .err()
                    .map(|e| format!("TEMPLATES_DIR: template {name}: {e}"))
            })
            .collect()
    }

    /// A static asset by file name (`static/<name>` in `TEMPLATES_DIR`
    /// overrides the built-in one).
    pub fn asset(&self, name: &str) -> Option<Asset> {
        let (_, content_type, builtin) = ASSETS.iter().find(|(n, _, _)| *n == name)?;
        let body = read_override(self.dir.as_deref(), &format!("static/{name}"))
            .unwrap_or_else(|| (*builtin).to_string());
        Some(Asset { content_type, body })
    }
}

/// Escapes the five characters that matter in HTML text and attributes:
/// for templates, and for the few pages written without one.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A file from the override directory. Names come from this module and
/// from templates (`extends`, `include`); anything path-like is refused.
fn read_override(dir: Option<&Path>, name: &str) -> Option<String> {
    let dir = dir?;
    let safe = !name.is_empty()
        && !name.starts_with('/')
        && name.split('/').all(|part| !part.is_empty() && part != "..");
    if !safe {
        return None;
    }
    std::fs::read_to_string(dir.join(name)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_and_escape() {
        let t = Templates::new(None);
        assert!(t.check().is_empty(), "{:?}", t.check());
        let html = t
            .render(
                "error.html",
                minijinja::context! { title => "<b>x</b>", message => "<script>", nonce => "n", app_name => "a", display_name => "d" },
            )
            .unwrap();
        assert!(html.contains("&lt;script&gt;"));
        let html = t
            .render(
                "error.html",
                minijinja::context! { title => "t", message => "m", restart_href => "/login?id=a&b=\"'" },
            )
            .unwrap();
        assert!(
            html.contains("href=\"/login?id=a&amp;b=&quot;&#x27;\""),
            "{html}"
        );
        assert!(!html.contains("<script>\n"));
        assert!(t.asset("site.css").is_some());
        assert!(t.asset("../Cargo.toml").is_none());
    }

    #[test]
    fn files_in_the_directory_override() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("privacy.html"), "custom {{ app_name }}").unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        std::fs::write(dir.path().join("static/site.css"), "body{}").unwrap();
        let t = Templates::new(Some(dir.path()));
        let html = t
            .render("privacy.html", minijinja::context! { app_name => "<X>" })
            .unwrap();
        assert_eq!(html, "custom &lt;X&gt;");
        assert_eq!(t.asset("site.css").unwrap().body, "body{}");
        std::fs::write(dir.path().join("index.html"), "{% broken").unwrap();
        assert_eq!(Templates::new(Some(dir.path())).check().len(), 1);
    }
}
