//! `weft filter new`, `weft filter build` and `weft filter test`.

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
    /// Run a filter crate's native tests, then the same calls through the real host
    /// with the built component; fails on any call answered differently.
    Test(super::filter_test::TestArgs),
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
    /// What the filter starts as: header (set and remove headers), auth (API keys),
    /// quota (per-tenant quota in shared state), router (canary by cookie or share),
    /// body (rewrite response bodies), outbound (ask another service first).
    #[arg(long, short, default_value = "header")]
    pub template: String,
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
    /// Hide cargo's progress (shown by default).
    #[arg(long, short)]
    pub quiet: bool,
}

/// How to run this weft: `weft` when that is what `PATH` finds, else its full path
/// (until `make install` puts it on `PATH`).
fn weft_command() -> String {
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("weft"))
            .find(|p| p.is_file())
            .and_then(|p| p.canonicalize().ok())
    });
    match (me, on_path) {
        (Some(me), Some(found)) if me == found => "weft".to_owned(),
        (Some(me), _) => me.display().to_string(),
        (None, _) => "weft".to_owned(),
    }
}

impl FilterCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            FilterCommand::New(a) => {
                let template = scaffold::template(&a.template)?;
                let sdk = a.sdk.unwrap_or_else(scaffold::default_sdk_dependency);
                let dir = scaffold::create(&a.dir, &a.name, &sdk, template)?;
                println!(
                    "created {} from the {} template ({})",
                    dir.display(),
                    template.name,
                    template.about
                );
                let weft = weft_command();
                println!(
                    "next: cd {} && {weft} filter test && {weft} filter build",
                    dir.display()
                );
                Ok(())
            }
            FilterCommand::Test(a) => a.run(),
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
                    quiet: a.quiet,
                })
                .context("weft filter build")?;
                Ok(())
            }
        }
    }
}
