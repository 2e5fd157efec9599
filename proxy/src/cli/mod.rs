//! The `weft` command line: one variant per subcommand, each with its `run`.

pub mod bench;
pub mod bundle;
pub mod cert;
pub mod control;
pub mod echo;
pub mod filter;
pub mod filter_test;
pub mod run;
pub mod validate;

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
    /// Run the proxy.
    Run(run::RunArgs),
    /// Benchmark a route's filter chain: per filter and phase in process, or under
    /// load against the same proxy without filters.
    Bench(Box<bench::BenchArgs>),
    /// Check a configuration completely (filters included) without serving it.
    Validate(validate::ValidateArgs),
    /// Work on filter crates: create one, build components.
    #[command(subcommand)]
    Filter(filter::FilterCommand),
    /// Run a small upstream that echoes requests, to try weft out.
    Echo(echo::EchoArgs),
    /// Filter bundles: pack, sign, verify.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// The control plane: serve it, push bundles, roll back, show status.
    #[command(subcommand)]
    Control(control::ControlCommand),
    /// Development certificates: a throwaway CA and SPIFFE SVIDs it signs.
    #[command(subcommand)]
    Cert(cert::CertCommand),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Run(a) => a.run(),
            Command::Bench(a) => a.run(),
            Command::Validate(a) => a.run(),
            Command::Filter(f) => f.run(),
            Command::Echo(a) => a.run(),
            Command::Bundle(b) => b.run(),
            Command::Control(c) => c.run(),
            Command::Cert(c) => c.run(),
        }
    }
}
