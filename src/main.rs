//! The `oauth-broker` command; everything lives in the library.

fn main() -> std::process::ExitCode {
    oauth_broker::cli::run()
}
