//! Seals many AuthIDs at once for load tests, one per line on stdout, each
//! a distinct login with its own refresh token `<PREFIX><n>` (use `rot-`
//! for a provider of `examples/mock_token.rs` that rotates). Keys come from
//! KEYS or KEYS_DIR, as for the server.
//!
//!   cargo run --release --example mint_authids -- SERVICE COUNT [PREFIX]

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use oauth_broker::authid::Claims;
use oauth_broker::authid::keysource::KeySource;
use oauth_broker::clock::{Clock, SystemClock};
use oauth_broker::secret::Sensitive;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: mint_authids SERVICE COUNT [PREFIX]";
    let service = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let count: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!(usage))?;
    let prefix = args.next().unwrap_or_else(|| "rt-".into());
    let keys = std::env::var("KEYS").ok();
    let dir = PathBuf::from(std::env::var("KEYS_DIR").unwrap_or_else(|_| "./keys".into()));
    let ring = KeySource::from_settings(keys.as_deref(), &dir)
        .load()
        .map_err(|p| anyhow::anyhow!(p.join("; ")))?;
    let now = SystemClock.now();
    let run = oauth_broker::secret::random_id();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for n in 0..count {
        let rt = Sensitive::new(format!("{prefix}{run}-{n}"));
        let sealed = ring
            .seal(&Claims::new(service.as_str(), rt, now))
            .map_err(anyhow::Error::msg)?;
        writeln!(out, "{sealed}")?;
    }
    out.flush()?;
    Ok(())
}
