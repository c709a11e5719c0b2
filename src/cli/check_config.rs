//! `oauth-broker check-config`: the effective provider table, secrets
//! masked, and every configuration problem.

use std::io::Write;

use super::serve::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings();
    let catalogue = args.providers.load();
    let mut out = std::io::stdout().lock();
    if let Ok(settings) = &settings {
        writeln!(out, "redirect URI: {}", settings.redirect_uri())?;
        writeln!(out, "store: {}", settings.store.describe())?;
        if let Some(line) = crate::store::redis::check_line(&settings.store) {
            writeln!(out, "{line}")?;
        }
    }
    if let Ok(catalogue) = &catalogue {
        writeln!(
            out,
            "{:<12} {:<8} {:<8} {:<11} {:<5} {:<24} {:<10} TOKEN URL",
            "ID", "GROUP", "ALIASES", "ROTATION", "PKCE", "CLIENT ID", "SECRET"
        )?;
        for p in catalogue.providers() {
            writeln!(
                out,
                "{:<12} {:<8} {:<8} {:<11} {:<5} {:<24} {:<10} {}",
                p.id,
                p.group.as_deref().unwrap_or("-"),
                if p.aliases.is_empty() {
                    "-".to_string()
                } else {
                    p.aliases.join(",")
                },
                p.rotation.as_str(),
                if p.pkce { "yes" } else { "no" },
                mask_id(&p.client_id),
                if p.client_secret.is_empty() {
                    "(none)"
                } else {
                    "********"
                },
                p.token_url
            )?;
            write_previous(&mut out, p)?;
        }
        for (id, reason) in catalogue.disabled() {
            writeln!(out, "{id:<12} disabled: {reason}")?;
        }
    }
    let problems: Vec<String> = [settings.err(), catalogue.err()]
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        for p in &problems {
            eprintln!("problem: {p}");
        }
        anyhow::bail!("{} problem(s) in the configuration", problems.len())
    }
}

/// Client ids are not secret, but show only their ends.
fn mask_id(id: &str) -> String {
    if id.len() <= 8 {
        id.to_string()
    } else {
        format!("{}…{}", &id[..4], &id[id.len() - 4..])
    }
}

/// The previous clients of a provider, and which client owns the AuthIDs
/// that name none.
fn write_previous(out: &mut impl Write, p: &crate::provider::Provider) -> std::io::Result<()> {
    for c in &p.previous_clients {
        writeln!(
            out,
            "{:<12} previous client {}{}{}, secret {}, token URL {}",
            "",
            mask_id(&c.client_id),
            if c.legacy {
                " (legacy: owns tokens migrated from App Engine)"
            } else {
                ""
            },
            if c.unlabelled {
                " (unlabelled: owns AuthIDs that name no client)"
            } else {
                ""
            },
            if c.client_secret.is_empty() {
                "(none)"
            } else {
                "********"
            },
            c.token_url
        )?;
    }
    if !p.previous_clients.is_empty() {
        let owner = match p.unlabelled_client() {
            Some(c) => format!("previous client {}", mask_id(&c.client_id)),
            None => "the entry's own client".to_string(),
        };
        writeln!(out, "{:<12} AuthIDs that name no client: {owner}", "")?;
    }
    Ok(())
}
