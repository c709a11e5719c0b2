//! `oauth-broker keys generate|list|activate|retire`.

use std::io::{BufRead, Write};

use clap::Subcommand;

use super::KeyArgs;
use crate::authid::keydir::{KeyDir, KeyInfo};
use crate::authid::keysource::KeySource;
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new P-256 key in KEYS_DIR.
    Generate {
        /// Make the new key primary (it seals new AuthIDs).
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Show every key: kid, creation time, primary or not, and how many
    /// AuthIDs the local server opened with it since it started.
    List {
        /// Address of the local server to ask for the counts.
        #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Make KID the primary key.
    Activate {
        kid: String,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Take KID out of service: AuthIDs sealed with it stop working.
    Retire {
        kid: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Print the public keys as a JWK Set, for systems that mint AuthIDs.
    Public {
        #[command(flatten)]
        keys: KeyArgs,
    },
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { activate, keys } => generate(&keys, activate),
        KeysCommand::List { listen, keys } => list(&keys, &listen),
        KeysCommand::Activate { kid, keys } => {
            writable_dir(&keys)?
                .activate(&kid)
                .map_err(anyhow::Error::msg)?;
            eprintln!(
                "{kid} is now the primary key; running servers pick it up on SIGHUP or within a minute"
            );
            Ok(())
        }
        KeysCommand::Retire { kid, yes, keys } => retire(&keys, &kid, yes),
        KeysCommand::Public { keys } => {
            let ring = keys
                .source()
                .load()
                .map_err(|e| anyhow::anyhow!(e.join("\n")))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::authid::keysource::public_set(&ring))?
            );
            Ok(())
        }
    }
}

fn generate(keys: &KeyArgs, activate: bool) -> anyhow::Result<()> {
    let dir = writable_dir(keys)?;
    let kid = dir
        .generate(SystemClock.now(), activate)
        .map_err(anyhow::Error::msg)?;
    println!("{kid}");
    let primary = dir.load().ok().map(|k| k.primary().kid() == kid);
    if primary == Some(true) {
        eprintln!("created key {kid} (primary) in {}", dir.path().display());
    } else {
        eprintln!(
            "created key {kid} in {}; it opens AuthIDs but does not seal new ones until `oauth-broker keys activate {kid}`",
            dir.path().display()
        );
    }
    Ok(())
}

/// The key table, with the AuthIDs the server on `listen` opened per key.
fn list(keys: &KeyArgs, listen: &str) -> anyhow::Result<()> {
    let rows = key_rows(keys)?;
    let opened = opened_counts(listen);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<24} {:<22} {:<8} OPENED",
        "KID", "CREATED", "PRIMARY"
    )?;
    for row in rows {
        let created = row.created.map(format_time).unwrap_or_else(|| "-".into());
        let primary = if row.primary { "yes" } else { "no" };
        let count = match &opened {
            Some(counts) => counts.get(&row.kid).copied().unwrap_or(0).to_string(),
            None => "-".to_string(),
        };
        writeln!(out, "{:<24} {:<22} {primary:<8} {count}", row.kid, created)?;
    }
    if opened.is_none() {
        eprintln!(
            "(OPENED: no server answered on {listen}; counts are per running server since its start)"
        );
    }
    Ok(())
}

fn key_rows(keys: &KeyArgs) -> anyhow::Result<Vec<KeyInfo>> {
    Ok(match keys.source() {
        KeySource::Dir(dir) => KeyDir::new(dir)
            .list()
            .map_err(|e| anyhow::anyhow!(e.join("\n")))?,
        source => {
            let ring = source.load().map_err(|e| anyhow::anyhow!(e.join("\n")))?;
            ring.keys()
                .iter()
                .map(|k| KeyInfo {
                    kid: k.kid().to_string(),
                    created: k.created(),
                    primary: k.kid() == ring.primary().kid(),
                })
                .collect()
        }
    })
}

fn retire(keys: &KeyArgs, kid: &str, yes: bool) -> anyhow::Result<()> {
    let dir = writable_dir(keys)?;
    if !yes
        && !confirm(&format!(
            "Retire key {kid}? AuthIDs sealed with it will be refused until users log in again. [y/N] "
        ))?
    {
        anyhow::bail!("not retired");
    }
    dir.retire(kid).map_err(anyhow::Error::msg)?;
    eprintln!("{kid} retired");
    Ok(())
}

/// AuthIDs opened per key by the server on `listen`, from its metrics.
fn opened_counts(listen: &str) -> Option<std::collections::HashMap<String, u64>> {
    let response = super::local_get(listen, "/metrics", 1 << 20).ok()?;
    if !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(parse_opened(&response))
}

fn parse_opened(metrics: &str) -> std::collections::HashMap<String, u64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("oauth_broker_authids_opened{kid=\""))
        .filter_map(|rest| {
            let (kid, rest) = rest.split_once('"')?;
            let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((kid.to_string(), value as u64))
        })
        .collect()
}

fn writable_dir(keys: &KeyArgs) -> anyhow::Result<KeyDir> {
    match keys.source() {
        KeySource::Dir(dir) => Ok(KeyDir::new(dir)),
        KeySource::Set(_) => anyhow::bail!(
            "keys come from the KEYS variable; change that JWK Set instead (or unset KEYS to use KEYS_DIR)"
        ),
    }
}

/// Asks on stderr, reads one line from stdin; anything but y/yes is no.
fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

pub(super) fn format_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn opened_counts_come_from_the_metrics_text() {
        let text = "# HELP x\noauth_broker_authids_opened{kid=\"20261128-aa\"} 12\noauth_broker_authids_opened{kid=\"b\"} 0\nother 5\n";
        let counts = super::parse_opened(text);
        assert_eq!(counts["20261128-aa"], 12);
        assert_eq!(counts["b"], 0);
        assert_eq!(counts.len(), 2);
    }
}
