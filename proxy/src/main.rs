//! The `weft` binary.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: the request path allocates and frees many small objects (header maps,
/// futures, buffers); under glibc's allocator that was about 15% of the proxy's
/// user-space instructions per request. Counted only while `weft bench` asks.
#[global_allocator]
static GLOBAL: weft::alloc_count::Counting<mimalloc::MiMalloc> =
    weft::alloc_count::Counting(mimalloc::MiMalloc);

fn main() -> std::process::ExitCode {
    let filter = EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = weft::cli::Cli::parse();
    match cli.command.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
