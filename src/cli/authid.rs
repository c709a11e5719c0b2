//! `oauth-broker authid inspect|seal`.

use std::io::Read;

use clap::Subcommand;

use super::KeyArgs;
use super::args::ProviderArgs;
use crate::authid::{self, AuthIdText, Claims};
use crate::clock::{Clock, SystemClock};
use crate::secret::Sensitive;

#[derive(Debug, Subcommand)]
pub enum AuthidCommand {
    /// Read an AuthID on stdin; print its key id, provider and issue time
    /// (never the token).
    Inspect {
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Read a refresh token on stdin; print an AuthID sealed with the
    /// primary key.
    Seal {
        /// Provider id, e.g. googledrive.
        #[arg(long = "service")]
        provider: String,
        /// The client id the refresh token was issued to (recorded as the
        /// claim cid). Without it, the client that owns AuthIDs naming none
        /// in the provider configuration (CONFIGFILE, SECRETS).
        #[arg(long)]
        client_id: Option<String>,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        providers: ProviderArgs,
    },
}

pub fn run(cmd: AuthidCommand) -> anyhow::Result<()> {
    match cmd {
        AuthidCommand::Inspect { keys } => {
            let input = read_stdin()?;
            match authid::parse(input.expose())? {
                AuthIdText::V2(legacy) => {
                    println!("format: v2 (legacy, not sealed)");
                    println!("provider: {}", legacy.provider);
                }
                AuthIdText::AppEngine(old) => {
                    println!("format: App Engine (keyid:password of the old service, not sealed)");
                    println!("key: {} (fingerprint)", old.key_fingerprint());
                    println!(
                        "login: {}",
                        crate::secret::fingerprint(old.login().id.as_bytes())
                    );
                }
                AuthIdText::V3(jwe) => {
                    let ring = keys
                        .source()
                        .load()
                        .map_err(|e| anyhow::anyhow!(e.join("\n")))?;
                    let opened = ring.open(jwe)?;
                    let c = &opened.claims;
                    println!("format: v3");
                    println!(
                        "kid: {}{}",
                        opened.kid,
                        if opened.by_primary { " (primary)" } else { "" }
                    );
                    println!("provider: {}", c.provider);
                    println!("issued: {} ({})", super::keys::format_time(c.iat), c.iat);
                    println!("login: {}", c.login_fingerprint());
                    println!(
                        "client: {}",
                        c.client_id()
                            .unwrap_or("(none named: the provider entry's own)")
                    );
                    if crate::migrate::is_migrated(c) {
                        println!("migrated: from the old App Engine service");
                    }
                }
            }
            Ok(())
        }
        AuthidCommand::Seal {
            provider,
            client_id,
            keys,
            providers,
        } => {
            if !crate::provider::is_provider_id(&provider) {
                anyhow::bail!("--service must be a provider id such as googledrive");
            }
            let client_id = client_id.map(|c| c.trim().to_string());
            if client_id
                .as_deref()
                .is_some_and(|c| c.is_empty() || c.len() > 512)
            {
                anyhow::bail!("--client-id must be a client id of the provider");
            }
            let client_id = match client_id {
                Some(client_id) => client_id,
                None => unlabelled_owner(&providers, &provider)?,
            };
            let token = read_stdin()?;
            if token.is_empty() {
                anyhow::bail!("no refresh token on stdin");
            }
            let ring = keys
                .source()
                .load()
                .map_err(|e| anyhow::anyhow!(e.join("\n")))?;
            let mut claims = Claims::new(provider, token, SystemClock.now());
            claims.set_client_id(&client_id);
            println!("{}", ring.seal(&claims).map_err(anyhow::Error::msg)?);
            Ok(())
        }
    }
}

/// The client an AuthID naming none would be refreshed with, from the
/// provider configuration: every sealed AuthID names its client.
fn unlabelled_owner(providers: &ProviderArgs, provider: &str) -> anyhow::Result<String> {
    let catalogue = providers.load().map_err(|e| {
        anyhow::anyhow!(
            "{}\npass --client-id to seal without the provider configuration",
            e.join("\n")
        )
    })?;
    let entry = catalogue.get(provider).ok_or_else(|| {
        anyhow::anyhow!(
            "{provider} is not configured here; pass --client-id (the client the refresh token was issued to)"
        )
    })?;
    let registration = entry
        .registration(None)
        .ok_or_else(|| anyhow::anyhow!("{provider} has no client; pass --client-id"))?;
    Ok(registration.client_id.to_string())
}

/// Reads stdin (bounded) and trims surrounding white space.
fn read_stdin() -> anyhow::Result<Sensitive> {
    let mut buf = String::new();
    std::io::stdin()
        .take(authid::MAX_AUTHID_LEN as u64 + 1)
        .read_to_string(&mut buf)?;
    let value = Sensitive::new(buf.trim());
    zeroize::Zeroize::zeroize(&mut buf);
    Ok(value)
}
