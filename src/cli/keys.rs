//! `oauth-broker keys generate|list|activate|retire`.

use std::collections::HashMap;
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
    /// Show every key: kid, creation time, primary or not, and, from the
    /// local server since it started, how many AuthIDs it opened with the
    /// key, how many of them it opened for the first time (not yet carried
    /// over), and how many it served from carry-overs.
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
    /// Take KID out of service: AuthIDs sealed with it are served from
    /// their carry-overs; those never carried over stop working.
    Retire {
        kid: String,
        /// The key may have been exposed: end its carry-overs too (their
        /// AuthIDs stop working; users log in again). Also for a key
        /// already retired or deleted.
        #[arg(long)]
        compromised: bool,
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
        KeysCommand::Retire {
            kid,
            compromised,
            yes,
            keys,
        } => retire(&keys, &kid, compromised, yes),
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

/// The key table, with the AuthIDs the server on `listen` opened per key
/// for the first time and served from carry-overs.
fn list(keys: &KeyArgs, listen: &str) -> anyhow::Result<()> {
    let rows = key_rows(keys)?;
    let counts = local_counts(listen);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<24} {:<22} {:<8} {:<8} {:<14} CARRIED_OVER",
        "KID", "CREATED", "PRIMARY", "OPENED", "FIRST_OPENED"
    )?;
    for row in rows {
        let created = row.created.map(format_time).unwrap_or_else(|| "-".into());
        let primary = if row.primary { "yes" } else { "no" };
        let count = |metric: &str| match &counts {
            Some(counts) => counts
                .get(&(metric.to_string(), row.kid.clone()))
                .copied()
                .unwrap_or(0)
                .to_string(),
            None => "-".to_string(),
        };
        writeln!(
            out,
            "{:<24} {:<22} {primary:<8} {:<8} {:<14} {}",
            row.kid,
            created,
            count(OPENED),
            count(FIRST_OPENED),
            count(CARRIED_OVER)
        )?;
    }
    if counts.is_none() {
        eprintln!(
            "(counts: no server answered on {listen}; counts are per running server since its start)"
        );
    }
    Ok(())
}

/// The per-key series `keys list` shows.
const OPENED: &str = "oauth_broker_authids_opened";
const FIRST_OPENED: &str = "oauth_broker_authids_first_opened";
const CARRIED_OVER: &str = "oauth_broker_authids_carried_over";

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

fn retire(keys: &KeyArgs, kid: &str, compromised: bool, yes: bool) -> anyhow::Result<()> {
    let dir = writable_dir(keys)?;
    let question = if compromised {
        format!(
            "Retire key {kid} as compromised? Every AuthID sealed with it, carried over or not, will be refused until its user logs in again. [y/N] "
        )
    } else {
        format!(
            "Retire key {kid}? AuthIDs sealed with it that were never carried over will be refused until users log in again. [y/N] "
        )
    };
    if !yes && !confirm(&question)? {
        anyhow::bail!("not retired");
    }
    dir.retire(kid, compromised).map_err(anyhow::Error::msg)?;
    if compromised {
        eprintln!(
            "{kid} retired as compromised; its carry-overs end at each server's next key reload"
        );
    } else {
        eprintln!("{kid} retired");
    }
    Ok(())
}

/// The per-key series of the server on `listen`, from its metrics.
fn local_counts(listen: &str) -> Option<HashMap<(String, String), u64>> {
    let response = super::local_get(listen, "/metrics", 1 << 20).ok()?;
    if !response.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(parse_counts(&response))
}

/// `(metric, kid)` to value, for the series `keys list` shows.
fn parse_counts(metrics: &str) -> HashMap<(String, String), u64> {
    metrics
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once("{kid=\"")?;
            if ![OPENED, FIRST_OPENED, CARRIED_OVER].contains(&name) {
                return None;
            }
            let (kid, rest) = rest.split_once('"')?;
            let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some(((name.to_string(), kid.to_string()), value as u64))
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
    use super::{CARRIED_OVER, FIRST_OPENED, OPENED};

    #[test]
    fn key_counts_come_from_the_metrics_text() {
        let text = "# HELP x\noauth_broker_authids_opened{kid=\"20261128-aa\",state=\"secondary\"} 12\noauth_broker_authids_opened{kid=\"b\",state=\"primary\"} 0\noauth_broker_authids_first_opened{kid=\"20261128-aa\"} 3\noauth_broker_authids_carried_over{kid=\"20261128-aa\"} 9\noauth_broker_authids_retired_refused{kid=\"x\"} 4\nother 5\n";
        let counts = super::parse_counts(text);
        let get = |m: &str, k: &str| counts[&(m.to_string(), k.to_string())];
        assert_eq!(get(OPENED, "20261128-aa"), 12);
        assert_eq!(get(OPENED, "b"), 0);
        assert_eq!(get(FIRST_OPENED, "20261128-aa"), 3);
        assert_eq!(get(CARRIED_OVER, "20261128-aa"), 9);
        assert_eq!(counts.len(), 4, "other series are not shown");
    }
}
