//! The `weft` command line: one variant per subcommand, each with its `run`.

pub mod filter;

use clap::{Parser, Subcommand};

/// weft: a programmable proxy for service meshes.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work on filter crates: create one, build components.
    #[command(subcommand)]
    Filter(filter::FilterCommand),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Filter(f) => f.run(),
        }
    }
}
