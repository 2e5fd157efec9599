//! The `weft` binary.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = weft::cli::Cli::parse();
    match cli.command.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
