//! `weft filter new` and `weft filter build`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::build::{self, scaffold, BuildRequest};

/// Work on filter crates.
#[derive(Debug, Subcommand)]
pub enum FilterCommand {
    /// Create a filter crate that depends on weft-sdk, with a unit test.
    New(NewArgs),
    /// Build filter crates into components (`.wasm`), choosing the wasm toolchain.
    Build(BuildArgs),
}

/// `weft filter new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The filter's name (lower case, `-` and `_` allowed).
    pub name: String,
    /// Directory to create it in.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The weft-sdk dependency, as Cargo writes it (default: this checkout's sdk/).
    #[arg(long)]
    pub sdk: Option<String>,
}

/// `weft filter build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The filter crate's directory or Cargo.toml (default: the current directory).
    pub path: Option<PathBuf>,
    /// Build every filter crate of the workspace.
    #[arg(long)]
    pub all: bool,
    /// Where components go (default: <target-dir>/filters).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Cargo's target directory for wasm builds (default: <target-dir>/weft-wasm).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// Show cargo's progress.
    #[arg(long, short)]
    pub verbose: bool,
}

impl FilterCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            FilterCommand::New(a) => {
                let sdk = a.sdk.unwrap_or_else(scaffold::default_sdk_dependency);
                let dir = scaffold::create(&a.dir, &a.name, &sdk)?;
                println!("created {}", dir.display());
                println!(
                    "next: cd {} && cargo test && weft filter build",
                    dir.display()
                );
                Ok(())
            }
            FilterCommand::Build(a) => {
                let path = a.path.unwrap_or_else(|| PathBuf::from("."));
                let manifest = if path.is_dir() {
                    path.join("Cargo.toml")
                } else {
                    path
                };
                if !manifest.is_file() {
                    anyhow::bail!(
                        "{} not found: name a filter crate's directory or Cargo.toml",
                        manifest.display()
                    );
                }
                build::build(&BuildRequest {
                    manifest,
                    all: a.all,
                    out_dir: a.out_dir,
                    target_dir: a.target_dir,
                    verbose: a.verbose,
                })
                .context("weft filter build")?;
                Ok(())
            }
        }
    }
}
