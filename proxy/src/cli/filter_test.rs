//! `weft filter test`: a filter crate's native tests, then the same calls through the
//! real host with the built component (wasm, deadlines, memory cap), so that a filter
//! that behaves differently compiled to wasm is caught before it is deployed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use clap::Args;

use crate::build::{self, BuildRequest};
use crate::runner::replay::{self, HostSettings};

/// The variable the SDK's harness records calls under (`weft_sdk`'s `record`).
const RECORD_ENV: &str = "WEFT_FILTER_RECORD";

/// `weft filter test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The filter crate's directory or Cargo.toml (default: the current directory).
    pub path: Option<PathBuf>,
    /// A proxy configuration whose settings for this filter (`timeout`, `memory_limit`,
    /// `failure_policy`...) the host runs it with; its entry is the one named by
    /// `--filter`, else the one whose module is named after the crate.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The filter's name in `--config`'s `filters:`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Run the native tests in release mode (`cargo test --release`).
    #[arg(long)]
    pub release: bool,
    /// Hide cargo's progress.
    #[arg(long, short)]
    pub quiet: bool,
}

impl TestArgs {
    /// Runs the native tests, builds, replays; fails when any of them does.
    pub fn run(self) -> anyhow::Result<()> {
        let path = self.path.clone().unwrap_or_else(|| PathBuf::from("."));
        let manifest = if path.is_dir() {
            path.join("Cargo.toml")
        } else {
            path
        };
        if !manifest.is_file() {
            bail!(
                "{} not found: name a filter crate's directory or Cargo.toml",
                manifest.display()
            );
        }
        let (package, target_dir) = build::filter_crate(&manifest)?;
        let settings = match &self.config {
            Some(c) => host_settings(c, self.filter.as_deref(), &package)?,
            None => HostSettings::new(),
        };
        let record = target_dir.join("weft-filter-test").join(&package);
        if record.exists() {
            std::fs::remove_dir_all(&record)
                .with_context(|| format!("clearing {}", record.display()))?;
        }
        std::fs::create_dir_all(&record)
            .with_context(|| format!("creating {}", record.display()))?;

        eprintln!("[1/3] native tests (cargo test)");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["test", "--manifest-path"])
            .arg(&manifest)
            .env(RECORD_ENV, &record);
        if self.quiet {
            cmd.arg("--quiet");
        }
        if self.release {
            cmd.arg("--release");
        }
        let status = cmd.status().context("running cargo test")?;
        if !status.success() {
            bail!("the native tests failed ({status})");
        }

        eprintln!("[2/3] building the component");
        let built = build::build(&BuildRequest {
            manifest: manifest.clone(),
            all: false,
            out_dir: None,
            target_dir: None,
            quiet: self.quiet,
        })?;
        let module = &built.first().context("the build made no component")?.path;

        eprintln!(
            "[3/3] the same calls through the real host ({})",
            module.display()
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let report = rt.block_on(replay::replay(&record, module, &settings))?;
        // Skips grouped by reason: a test of 10,000 random draws is one line.
        let mut reasons: std::collections::BTreeMap<&str, (usize, &str)> = Default::default();
        for (at, why) in &report.skipped {
            reasons.entry(why).or_insert((0, at)).0 += 1;
        }
        for (why, (n, first)) in reasons {
            eprintln!("  not compared: {n} call(s): {why} (first: {first})");
        }
        for d in &report.differences {
            eprintln!("  DIFFERS: {d}");
        }
        if report.harnesses == 0 {
            bail!("no test used weft_sdk::testing::Harness: nothing to run in the host");
        }
        if !report.differences.is_empty() {
            bail!(
                "{} of {} call(s) differ between the native harness and the host",
                report.differences.len(),
                report.differences.len() + report.compared
            );
        }
        println!(
            "ok: {} call(s) from {} harness(es) answered the same natively and in the host ({} not compared)",
            report.compared,
            report.harnesses,
            report.skipped.len()
        );
        Ok(())
    }
}

/// The settings `config` gives the filter named `filter` (or the one whose module is
/// `<package>.wasm`), without its `module` and `config`.
fn host_settings(
    config: &Path,
    filter: Option<&str>,
    package: &str,
) -> anyhow::Result<HostSettings> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("{}: cannot read", config.display()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("{}: not YAML", config.display()))?;
    let filters = doc
        .get("filters")
        .and_then(|f| f.as_mapping())
        .with_context(|| format!("{}: no filters:", config.display()))?;
    let wanted = format!("{package}.wasm");
    let entry = filters.iter().find(|(name, entry)| match filter {
        Some(f) => name.as_str() == Some(f),
        None => entry
            .get("module")
            .and_then(|m| m.as_str())
            .is_some_and(|m| {
                Path::new(m)
                    .file_name()
                    .is_some_and(|n| n == wanted.as_str())
            }),
    });
    let Some((_, entry)) = entry else {
        bail!(
            "{}: no filter {} under filters:",
            config.display(),
            filter.map_or_else(|| format!("with module {wanted}"), |f| format!("named {f}"))
        );
    };
    let mut settings = entry
        .as_mapping()
        .cloned()
        .with_context(|| format!("{}: the filter's entry is not a map", config.display()))?;
    for key in ["module", "config", "files"] {
        settings.remove(key);
    }
    Ok(settings)
}
