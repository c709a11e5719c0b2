//! The catalogue as an operator builds it: built-in entries, `CONFIGFILE`,
//! `SECRETS`, `SERVICES`, and every problem reported at once.

use super::*;
use crate::secret::Sensitive;

fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn builtins_without_credentials_are_disabled_with_a_reason() {
    let cat = Catalogue::load(&CatalogueSource::default(), &env_with(&[])).unwrap();
    // Jottacloud's CLI client needs no secret.
    assert_eq!(
        cat.providers()
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>(),
        ["jottacloud"]
    );
    let (_, reason) = cat
        .disabled()
        .iter()
        .find(|(id, _)| id == "googledrive")
        .unwrap();
    assert!(reason.contains("GD_CLIENT_ID"), "{reason}");
}

#[test]
fn credentials_from_env_enable_builtins_and_aliases_resolve() {
    let env = env_with(&[
        ("GD_CLIENT_ID", "gid"),
        ("GD_CLIENT_SECRET", "gsecret"),
        ("BOX_CLIENT_ID", "bid"),
        ("BOX_CLIENT_SECRET", "bsecret"),
    ]);
    let cat = Catalogue::load(&CatalogueSource::default(), &env).unwrap();
    let drive = cat.get("googledrive").unwrap();
    assert_eq!(drive.client_id, "gid");
    assert_eq!(drive.client_secret.expose(), "gsecret");
    assert!(drive.pkce);
    assert_eq!(cat.get("box").unwrap().id, "box.com");
    assert_eq!(cat.get("box.com").unwrap().rotation, Rotation::SingleUse);
    assert!(cat.get("dropbox").is_none());
}

#[test]
fn services_filters_and_every_problem_is_reported() {
    let source = CatalogueSource {
        configfile: Some(
            r#"[{"id": "a", "clientId": "c", "authUrl": "http://example.com/t", "loginUrl": "ftp://x"},
                {"id": "b", "clientId": "c", "authUrl": "https://b/t", "loginUrl": "https://b/a", "rotation": "sometimes", "allowedHosts": ["Bad Host"]}]"#,
        ),
        secrets: None,
        services: Some("a,b,nosuch,googledrive"),
    };
    let problems = Catalogue::load(&source, &env_with(&[])).unwrap_err();
    let all = problems.join("\n");
    for needle in [
        "authUrl must be an https",
        "loginUrl must be an https",
        "rotation",
        "allowedHosts",
        "nosuch",
        "googledrive",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
}

#[test]
fn a_refresh_token_lifetime_outside_its_range_is_a_problem() {
    for (lifetime, ok) in [(0, false), (3599, false), (3600, true), (u64::MAX, false)] {
        let config = format!(
            r#"[{{"id": "a", "clientId": "c", "authUrl": "https://a/t", "loginUrl": "https://a/a", "refreshTokenLifetime": {lifetime}}}]"#
        );
        let source = CatalogueSource {
            configfile: Some(&config),
            secrets: None,
            services: Some("a"),
        };
        let loaded = Catalogue::load(&source, &env_with(&[]));
        assert_eq!(loaded.is_ok(), ok, "{lifetime}");
        if let Err(problems) = loaded {
            assert!(problems[0].contains("refreshTokenLifetime"), "{problems:?}");
        }
    }
}

#[test]
fn services_selects_a_subset() {
    let env = env_with(&[("GD_CLIENT_ID", "g"), ("GD_CLIENT_SECRET", "s")]);
    let source = CatalogueSource {
        services: Some("googledocs"),
        ..Default::default()
    };
    let cat = Catalogue::load(&source, &env).unwrap();
    assert!(cat.get("googledocs").is_some());
    assert!(cat.get("googledrive").is_none());
    assert!(cat.get("jottacloud").is_none());
}

fn ids(cat: &Catalogue) -> Vec<&str> {
    cat.providers().iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn services_matches_groups_ids_and_aliases_in_any_case() {
    let env = env_with(&[
        ("GD_CLIENT_ID", "g"),
        ("GD_CLIENT_SECRET", "s"),
        ("DROPBOX_CLIENT_ID", "d"),
        ("DROPBOX_CLIENT_SECRET", "s"),
        ("BOX_CLIENT_ID", "b"),
        ("BOX_CLIENT_SECRET", "s"),
    ]);
    let load = |services: &'static str| {
        Catalogue::load(
            &CatalogueSource {
                services: Some(services),
                ..Default::default()
            },
            &env,
        )
    };
    let cat = load("gd,DropBox").unwrap();
    assert_eq!(ids(&cat), ["googledrive", "googledocs", "dropbox"]);
    assert_eq!(cat.get("googledocs").unwrap().group.as_deref(), Some("GD"));
    assert!(cat.get("gd").is_none(), "a group is not an alias");
    assert_eq!(ids(&load("BOX").unwrap()), ["box.com"]);
    assert_eq!(ids(&load("box").unwrap()), ["box.com"]);
    let problems = load("gd,nosuch").unwrap_err();
    assert!(
        problems.iter().any(|p| p.contains("nosuch")),
        "{problems:?}"
    );
    let problems = load("msgraph").unwrap_err();
    assert!(
        problems.iter().any(|p| p.contains("MSGRAPH_CLIENT_ID")),
        "{problems:?}"
    );
}

#[test]
fn the_csharp_secret_names_are_read_and_todays_still_work() {
    let csharp = env_with(&[
        ("GD_CLIENT_ID", "gd-id"),
        ("GD_CLIENT_SECRET", "gd-s"),
        ("GCS_CLIENT_ID", "gcs-id"),
        ("GCS_CLIENT_SECRET", "gcs-s"),
        ("MSGRAPH_CLIENT_ID", "ms-id"),
        ("MSGRAPH_CLIENT_SECRET", "ms-s"),
        ("MS_CLIENT_ID", "old-ms-id"),
        ("MS_CLIENT_SECRET", "old-ms-s"),
    ]);
    let cat = Catalogue::load(&CatalogueSource::default(), &csharp).unwrap();
    let gcs = cat.get("gcs").unwrap();
    assert_eq!(
        (gcs.client_id.as_str(), gcs.client_secret.expose()),
        ("gcs-id", "gcs-s")
    );
    let ms = cat.get("sharepoint").unwrap();
    assert_eq!(
        (ms.client_id.as_str(), ms.client_secret.expose()),
        ("ms-id", "ms-s")
    );

    let today = env_with(&[
        ("GD_CLIENT_ID", "gd-id"),
        ("GD_CLIENT_SECRET", "gd-s"),
        ("GCS_CLIENT_SECRET", "stray"),
        ("MS_CLIENT_ID", "old-ms-id"),
        ("MS_CLIENT_SECRET", "old-ms-s"),
    ]);
    let cat = Catalogue::load(&CatalogueSource::default(), &today).unwrap();
    let gcs = cat.get("gcs").unwrap();
    assert_eq!(
        (gcs.client_id.as_str(), gcs.client_secret.expose()),
        ("gd-id", "gd-s"),
        "the secret follows the client id's family"
    );
    let ms = cat.get("onedrivev2").unwrap();
    assert_eq!(
        (ms.client_id.as_str(), ms.client_secret.expose()),
        ("old-ms-id", "old-ms-s")
    );
}

#[test]
fn a_retired_group_loads_disabled_with_the_reason() {
    let source = CatalogueSource {
        configfile: Some(
            r#"[{"id": "onedrive", "serviceId": "WL", "name": "Microsoft OneDrive (Live Connect API)",
                 "clientId": "%WL_CLIENT_ID%", "clientSecret": "%WL_CLIENT_SECRET%"},
                {"id": "jottacloud", "serviceId": "JOTTA", "clientId": "jottacli",
                 "clientSecret": "%JOTTA_CLIENT_SECRET%"}]"#,
        ),
        services: Some("wl,jotta"),
        ..Default::default()
    };
    let cat = Catalogue::load(&source, &env_with(&[])).unwrap();
    let (_, reason) = cat
        .disabled()
        .iter()
        .find(|(id, _)| id == "onedrive")
        .unwrap();
    assert!(
        reason.contains("retired") && reason.contains("WL"),
        "{reason}"
    );
    let jotta = cat.get("jottacloud").unwrap();
    assert!(
        jotta.client_secret.is_empty(),
        "a public client needs no secret"
    );
    assert_eq!(ids(&cat), ["jottacloud"]);
}

#[test]
fn previous_clients_are_registrations_an_authid_can_name() {
    let source = CatalogueSource {
        configfile: Some(
            r#"[{"id": "onedrivev2", "previousClients": [
                    {"clientId": "%OLD_MS_ID%", "clientSecret": "%OLD_MS_SECRET%", "legacy": true},
                    {"clientId": "older", "clientSecret": "s", "authUrl": "https://login.live.com/oauth20_token.srf", "revokeUrl": "https://r.example/revoke"}]}]"#,
        ),
        secrets: Some(r#"{"OLD_MS_ID": "old-id", "OLD_MS_SECRET": "old-secret"}"#),
        services: None,
    };
    let env = env_with(&[
        ("MSGRAPH_CLIENT_ID", "new-id"),
        ("MSGRAPH_CLIENT_SECRET", "new-s"),
    ]);
    let cat = Catalogue::load(&source, &env).unwrap();
    let ms = cat.get("onedrivev2").unwrap();
    let current = ms.registration(None).unwrap();
    assert_eq!((current.client_id, current.previous), ("new-id", false));
    assert_eq!(ms.registration(Some("new-id")).unwrap().client_id, "new-id");
    let old = ms.registration(Some("old-id")).unwrap();
    assert!(old.previous);
    assert_eq!(old.client_secret.expose(), "old-secret");
    assert_eq!(
        old.token_url, &ms.token_url,
        "the provider's endpoint by default"
    );
    let older = ms.registration(Some("older")).unwrap();
    assert_eq!(
        older.token_url.as_str(),
        "https://login.live.com/oauth20_token.srf"
    );
    assert_eq!(
        older.revoke_url.unwrap().as_str(),
        "https://r.example/revoke"
    );
    assert!(ms.registration(Some("unknown")).is_none());
    assert_eq!(ms.app_engine_client().unwrap().client_id, "old-id");
    let form = ms.refresh_form_with(&old, &Sensitive::new("rt"), "https://b/logged-in");
    let sent: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_ref(), v.expose())).collect();
    assert!(
        sent.contains(&("client_id", "old-id")) && sent.contains(&("client_secret", "old-secret"))
    );
    assert!(!format!("{:?}", ms.previous_clients).contains("old-secret"));
}

#[test]
fn authids_naming_no_client_belong_to_the_one_marked_unlabelled() {
    let load = |previous: &str| {
        let config = format!(
            r#"[{{"id": "x", "clientId": "new", "clientSecret": "s", "authUrl": "https://x/t", "loginUrl": "https://x/a", "previousClients": [{previous}]}}]"#
        );
        let source = CatalogueSource {
            configfile: Some(Box::leak(config.into_boxed_str())),
            secrets: None,
            services: None,
        };
        Catalogue::load(&source, &|_| None)
    };
    // The current client moved into previousClients and marked: AuthIDs
    // without cid go on with it, new logins use the new one.
    let cat = load(r#"{"clientId": "moved", "clientSecret": "t", "unlabelled": true}"#).unwrap();
    let x = cat.get("x").unwrap();
    let owner = x.registration(None).unwrap();
    assert_eq!((owner.client_id, owner.previous), ("moved", true));
    assert_eq!(x.current().client_id, "new");
    assert_eq!(x.registration(Some("new")).unwrap().client_id, "new");
    // None marked: the entry's own client.
    let cat = load(r#"{"clientId": "older", "clientSecret": "t"}"#).unwrap();
    assert_eq!(
        cat.get("x").unwrap().registration(None).unwrap().client_id,
        "new"
    );
    // Two marked: refused at start.
    let problems =
        load(r#"{"clientId": "a", "unlabelled": true}, {"clientId": "b", "unlabelled": true}"#)
            .unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("unlabelled"), "{problems:?}");
}

#[test]
fn previous_clients_problems_are_reported() {
    let source = CatalogueSource {
        configfile: Some(
            r#"[{"id": "x", "clientId": "c", "authUrl": "https://x/t", "loginUrl": "https://x/a", "previousClients": [
                    {"clientId": "c"},
                    {"clientId": "p1", "legacy": true},
                    {"clientId": "p2", "legacy": true, "clientSecret": "%NOT_SET%"},
                    {"clientId": "p3", "legacy": true, "authUrl": "http://x.example/t"},
                    {"clientId": "p4", "legacy": true}]}]"#,
        ),
        ..Default::default()
    };
    let all = Catalogue::load(&source, &env_with(&[]))
        .unwrap_err()
        .join("\n");
    for needle in [
        "previousClients[0]: the client id is already",
        "previousClients[2]: clientSecret needs NOT_SET",
        "previousClients[3]: authUrl must be an https",
        "only one of previousClients may be marked legacy",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
    let typo = CatalogueSource {
        configfile: Some(
            r#"[{"id": "x", "clientId": "c", "authUrl": "https://x/t", "loginUrl": "https://x/a",
                 "previousClients": [{"clientId": "p", "surprise": 1}]}]"#,
        ),
        ..Default::default()
    };
    let problems = Catalogue::load(&typo, &env_with(&[])).unwrap_err();
    assert!(problems[0].contains("surprise"), "{problems:?}");
}

#[test]
fn duplicate_alias_is_a_problem() {
    let source = CatalogueSource {
        configfile: Some(
            r#"[{"id": "x", "clientId": "c", "authUrl": "https://x/t", "loginUrl": "https://x/a", "aliases": ["jottacloud"]}]"#,
        ),
        ..Default::default()
    };
    let problems = Catalogue::load(&source, &env_with(&[])).unwrap_err();
    assert!(problems[0].contains("already used"), "{problems:?}");
}

#[test]
fn debug_hides_inline_secrets_and_config() {
    let source = CatalogueSource {
        configfile: Some(r#"[{"id": "x", "clientSecret": "secret-cs"}]"#),
        secrets: Some(r#"{"X_SECRET": "secret-xs"}"#),
        services: None,
    };
    assert!(!format!("{source:?}").contains("secret-"));
}

#[test]
fn allowed_hosts_are_kept_in_lowercase() {
    let source = CatalogueSource {
        configfile: Some(
            r#"[{"id": "x", "clientId": "c", "authUrl": "https://x/t", "loginUrl": "https://x/a", "allowedHosts": ["API.Example.com", "eu.example.com:8443"]}]"#,
        ),
        ..Default::default()
    };
    let cat = Catalogue::load(&source, &env_with(&[])).unwrap();
    let hosts = &cat.get("x").unwrap().allowed_hosts;
    assert_eq!(hosts, &["api.example.com", "eu.example.com:8443"]);
}
