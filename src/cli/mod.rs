//! The command line: `serve` (the default), `demo`, `keys ...`, `authid ...`,
//! `check-config` and `healthcheck`. One file per command family; `args`
//! holds the arguments several commands share, `run` the running server.

mod args;
mod authid;
mod check_config;
mod demo;
mod keys;
mod run;
mod serve;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use args::KeyArgs;
pub use serve::ServeArgs;

#[derive(Debug, Parser)]
#[command(
    name = "oauth-broker",
    version,
    about = "Stateless OAuth broker for backup clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Serve with a built-in demo provider and an ephemeral key, to try a
    /// whole login and refresh on one machine.
    Demo(demo::DemoArgs),
    /// Manage the server keys in KEYS_DIR.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Inspect or mint AuthIDs.
    #[command(subcommand)]
    Authid(authid::AuthidCommand),
    /// Print the effective provider table (secrets masked) and every
    /// configuration problem.
    CheckConfig(ServeArgs),
    /// Exit 0 when the local server answers /health (for container health checks).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Args)]
struct HealthcheckArgs {
    /// Address the server listens on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Serve(args)) => run::run(args),
        None => ServeArgs::from_env().and_then(run::run),
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Keys(cmd)) => {
            init_cli_logging();
            keys::run(cmd)
        }
        Some(Command::Authid(cmd)) => {
            init_cli_logging();
            authid::run(cmd)
        }
        Some(Command::CheckConfig(args)) => {
            init_cli_logging();
            check_config::run(args)
        }
        Some(Command::Healthcheck(args)) => healthcheck(&args.listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Admin commands log warnings (e.g. loose key file modes) to stderr.
fn init_cli_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .without_time()
        .with_target(false)
        .try_init();
}

fn healthcheck(listen: &str) -> anyhow::Result<()> {
    let response = local_get(listen, "/health", 4096)?;
    if response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        anyhow::bail!(
            "unhealthy: {}",
            response.lines().next().unwrap_or("no answer")
        )
    }
}

/// A plain HTTP GET to the local server on `listen` (a server bound to a
/// wildcard address is reached on loopback); returns the raw response, at
/// most `limit` bytes. Blocking and dependency-free, for admin commands.
pub(crate) fn local_get(listen: &str, path: &str, limit: u64) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
    use std::time::Duration;

    let target = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    let addr: SocketAddr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("LISTEN {listen} does not resolve"))?;
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.take(limit).read_to_string(&mut response)?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// clap checks its definitions (unique names, valid defaults) only
    /// when a command is parsed; this checks every command at once.
    #[test]
    fn command_line_definitions_are_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn debug_hides_keys_secrets_and_the_store_password() {
        let cli = super::Cli::try_parse_from([
            "b",
            "serve",
            "--keys",
            "secret-k",
            "--secrets",
            "secret-s",
            "--store",
            "redis://u:secret-p@cache:6379/0",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("secret-"));
    }
}
