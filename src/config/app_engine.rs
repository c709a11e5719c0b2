//! The old App Engine service whose AuthIDs are migrated (SPEC 9): where
//! it is and the key its worker API takes, from `LEGACY_SERVICE_URL` and
//! `LEGACY_SERVICE_API_KEY`.

use url::Url;

use super::urls::is_loopback;
use crate::secret::Sensitive;

/// Where the old service is and the key its worker API takes.
#[derive(Debug, Clone)]
pub struct AppEngineServiceSettings {
    /// Base URL without a trailing slash; `/export` and `/import` are
    /// appended.
    pub url: Url,
    pub api_key: Sensitive,
}

/// The old service's API key must be at least this long: the old service
/// refuses every call when its own key is shorter.
const MIN_API_KEY_LEN: usize = 10;

/// `LEGACY_SERVICE_URL` and `LEGACY_SERVICE_API_KEY`: both or neither. The
/// URL is the old service's base (where `/export` and `/import` live),
/// https unless on loopback, as AuthIDs and the key travel to it.
pub fn parse_app_engine_service(
    url: Option<&str>,
    api_key: Option<&str>,
) -> Result<Option<AppEngineServiceSettings>, Vec<String>> {
    let url = url.map(str::trim).filter(|s| !s.is_empty());
    let api_key = api_key.map(str::trim).filter(|s| !s.is_empty());
    let mut problems = Vec::new();
    let parsed = url.and_then(|text| match Url::parse(text) {
        Ok(u) if u.query().is_some() || u.fragment().is_some() => {
            problems.push("LEGACY_SERVICE_URL must not have a query or fragment".to_string());
            None
        }
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Some(u),
        Ok(u) if u.scheme() == "http" && is_loopback(&u) => Some(u),
        Ok(_) => {
            problems.push(
                "LEGACY_SERVICE_URL must be an https URL (plain http only on loopback)".to_string(),
            );
            None
        }
        Err(_) => {
            problems.push(format!(
                "LEGACY_SERVICE_URL {text:?} is not an absolute URL"
            ));
            None
        }
    });
    match (url, api_key) {
        (Some(_), None) => problems.push("LEGACY_SERVICE_URL is set but LEGACY_SERVICE_API_KEY is not".into()),
        (None, Some(_)) => problems.push("LEGACY_SERVICE_API_KEY is set but LEGACY_SERVICE_URL is not".into()),
        (_, Some(key)) if key.len() < MIN_API_KEY_LEN => problems.push(format!(
            "LEGACY_SERVICE_API_KEY must have at least {MIN_API_KEY_LEN} characters (the old service refuses shorter keys)"
        )),
        _ => {}
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(parsed
        .zip(api_key)
        .map(|(url, key)| AppEngineServiceSettings {
            url,
            api_key: Sensitive::new(key),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_engine_service_settings() {
        assert!(parse_app_engine_service(None, None).unwrap().is_none());
        assert!(
            parse_app_engine_service(Some(" "), Some(""))
                .unwrap()
                .is_none()
        );
        let s = parse_app_engine_service(Some("https://old.appspot.com/"), Some("k-0123456789"))
            .unwrap()
            .unwrap();
        assert_eq!(s.url.as_str(), "https://old.appspot.com/");
        assert_eq!(s.api_key.expose(), "k-0123456789");
        assert!(!format!("{s:?}").contains("k-0123456789"));
        assert!(
            parse_app_engine_service(Some("http://127.0.0.1:9"), Some("k-0123456789"))
                .unwrap()
                .is_some()
        );
        for (url, key, needle) in [
            (
                Some("https://old.example"),
                None,
                "LEGACY_SERVICE_API_KEY is not",
            ),
            (None, Some("k-0123456789"), "LEGACY_SERVICE_URL is not"),
            (Some("http://old.example"), Some("k-0123456789"), "https"),
            (Some("nonsense"), Some("k-0123456789"), "absolute"),
            (
                Some("https://old.example/?x=1"),
                Some("k-0123456789"),
                "query",
            ),
            (Some("https://old.example"), Some("short"), "at least 10"),
        ] {
            let problems = parse_app_engine_service(url, key).unwrap_err();
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{url:?} {key:?}: {problems:?}"
            );
            assert!(!problems.iter().any(|p| p.contains("k-0123456789")));
        }
    }
}
