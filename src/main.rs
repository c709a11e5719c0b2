//! The `oauth-broker` command; everything lives in the library.

// mimalloc: per-thread free lists instead of glibc's arenas. The request
// path allocates many small, short-lived objects (hyper, tower, JSON); see
// docs/BENCHMARKS.md for the effect on cache-hit throughput.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    oauth_broker::cli::run()
}
