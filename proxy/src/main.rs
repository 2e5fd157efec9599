//! The `weft` binary.

use clap::Parser;

/// mimalloc: the request path allocates and frees many small objects (header maps,
/// futures, buffers); under glibc's allocator that was about 15% of the proxy's
/// user-space instructions per request. Counted only while `weft bench` asks.
#[global_allocator]
static GLOBAL: weft::alloc_count::Counting<mimalloc::MiMalloc> =
    weft::alloc_count::Counting(mimalloc::MiMalloc);

fn main() -> std::process::ExitCode {
    if let Err(e) = weft::logging::init() {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = weft::cli::Cli::parse();
    match cli.command.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
