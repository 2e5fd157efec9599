//! `weft filter build` and `weft filter new`: turning a filter crate into a component,
//! and starting a new one.

pub mod scaffold;
pub mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;

pub use toolchain::detect;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No usable toolchain.
    #[error(transparent)]
    Toolchain(#[from] toolchain::NoToolchain),
    /// `cargo metadata` failed or said something unexpected.
    #[error("cannot read the crate at {path}: {reason}")]
    Metadata {
        /// The manifest.
        path: PathBuf,
        reason: String,
    },
    /// Nothing to build.
    #[error("{0}")]
    NothingToBuild(String),
    /// cargo failed; its output was shown.
    #[error("cargo build for wasm32 failed ({0})")]
    Cargo(String),
    /// The module could not be made into a component.
    #[error("cannot make a component of {path}: {reason}")]
    Encode {
        /// The module.
        path: PathBuf,
        reason: String,
    },
    /// Writing the result failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// A crate's `Cargo.toml`, or a workspace's (with `all`).
    pub manifest: PathBuf,
    /// Build every filter crate of the workspace (members depending on `weft-sdk` with a
    /// `cdylib` target), not just the crate at `manifest`.
    pub all: bool,
    /// Where components go; `<target-dir>/filters` by default.
    pub out_dir: Option<PathBuf>,
    /// Cargo's target directory for wasm builds; `<target-dir>/weft-wasm` by default.
    pub target_dir: Option<PathBuf>,
    /// Hide cargo's progress (it is shown by default: a first build compiles the
    /// SDK and its dependencies for wasm32, which takes tens of seconds).
    pub quiet: bool,
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The package.
    pub package: String,
    /// The component file.
    pub path: PathBuf,
    /// Its sha256, hex.
    pub digest: String,
    /// Its size.
    pub size: usize,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
    dependencies: Vec<Dependency>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
}

impl Package {
    /// The library target's name, if this is a filter crate.
    fn filter_lib(&self) -> Option<&str> {
        let uses_sdk = self.dependencies.iter().any(|d| d.name == "weft-sdk");
        let cdylib = self
            .targets
            .iter()
            .find(|t| t.crate_types.iter().any(|c| c == "cdylib"));
        cdylib.filter(|_| uses_sdk).map(|t| t.name.as_str())
    }
}

fn metadata(manifest: &Path) -> Result<Metadata, BuildError> {
    let fail = |reason: String| BuildError::Metadata {
        path: manifest.to_owned(),
        reason,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("cannot run cargo: {e}")))?;
    if !out.status.success() {
        return Err(fail("cargo metadata failed".to_owned()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))
}

/// The filter crate at `manifest`: its package name and cargo's target directory.
pub fn filter_crate(manifest: &Path) -> Result<(String, PathBuf), BuildError> {
    let manifest = std::fs::canonicalize(manifest).unwrap_or_else(|_| manifest.to_owned());
    let meta = metadata(&manifest)?;
    let p = meta
        .packages
        .iter()
        .find(|p| p.manifest_path == manifest && p.filter_lib().is_some())
        .ok_or_else(|| {
            BuildError::NothingToBuild(format!(
                "{} is not a filter crate: it needs `crate-type = [\"cdylib\"]` and a weft-sdk dependency",
                manifest.display()
            ))
        })?;
    Ok((p.name.clone(), meta.target_directory))
}

/// Builds filter crates into components. Prints a line per component built.
pub fn build(req: &BuildRequest) -> Result<Vec<Built>, BuildError> {
    let manifest = std::fs::canonicalize(&req.manifest).unwrap_or_else(|_| req.manifest.clone());
    let meta = metadata(&manifest)?;
    let selected: Vec<&Package> = if req.all {
        meta.packages
            .iter()
            .filter(|p| meta.workspace_members.contains(&p.id) && p.filter_lib().is_some())
            .collect()
    } else {
        let p = meta
            .packages
            .iter()
            .find(|p| p.manifest_path == manifest)
            .ok_or_else(|| {
                BuildError::NothingToBuild(format!(
                    "{} is a workspace, not a filter crate; name a crate or pass --all",
                    manifest.display()
                ))
            })?;
        if p.filter_lib().is_none() {
            return Err(BuildError::NothingToBuild(format!(
                "{} is not a filter crate: it needs `crate-type = [\"cdylib\"]` and a weft-sdk dependency",
                p.name
            )));
        }
        vec![p]
    };
    if selected.is_empty() {
        return Err(BuildError::NothingToBuild(format!(
            "no filter crates in {}",
            manifest.display()
        )));
    }

    let toolchain = detect()?;
    let target_dir = req
        .target_dir
        .clone()
        .unwrap_or_else(|| meta.target_directory.join("weft-wasm"));
    let out_dir = req
        .out_dir
        .clone()
        .unwrap_or_else(|| meta.target_directory.join("filters"));
    eprintln!(
        "building {} filter(s) with {}",
        selected.len(),
        toolchain.describe()
    );
    // One cargo invocation per crate: cargo unifies the features of crates built
    // together, and a filter must be built with exactly its own (authz and ext-authz are
    // the same code with different features).
    let started = std::time::Instant::now();
    for (i, p) in selected.iter().enumerate() {
        if !req.quiet {
            eprintln!(
                "[{}/{}] compiling {} for wasm32",
                i + 1,
                selected.len(),
                p.name
            );
        }
        let mut cmd = toolchain.cargo_build();
        cmd.arg("--manifest-path")
            .arg(&manifest)
            .arg("--lib")
            .env("CARGO_TARGET_DIR", &target_dir);
        cmd.args(["-p", &p.name]);
        if req.quiet {
            cmd.arg("--quiet");
        }
        let status = cmd
            .status()
            .map_err(|e| BuildError::Cargo(format!("cannot run cargo: {e}")))?;
        if !status.success() {
            return Err(BuildError::Cargo(format!("{}: {status}", p.name)));
        }
    }

    std::fs::create_dir_all(&out_dir).map_err(|source| BuildError::Write {
        path: out_dir.clone(),
        source,
    })?;
    let mut built = Vec::new();
    for p in selected {
        let lib = p.filter_lib().unwrap_or(&p.name).replace('-', "_");
        let module_path = target_dir
            .join(toolchain::TARGET)
            .join("release")
            .join(format!("{lib}.wasm"));
        let module = std::fs::read(&module_path).map_err(|e| BuildError::Encode {
            path: module_path.clone(),
            reason: e.to_string(),
        })?;
        let component = encode(&module).map_err(|reason| BuildError::Encode {
            path: module_path.clone(),
            reason,
        })?;
        let path = out_dir.join(format!("{}.wasm", p.name));
        write_atomic(&path, &component).map_err(|source| BuildError::Write {
            path: path.clone(),
            source,
        })?;
        let b = Built {
            package: p.name.clone(),
            digest: crate::host::module::digest(&component),
            size: component.len(),
            path,
        };
        println!(
            "built {} -> {} ({} bytes, sha256 {})",
            b.package,
            b.path.display(),
            b.size,
            &b.digest[..16]
        );
        built.push(b);
    }
    eprintln!(
        "built {} component(s) in {:.1} s",
        built.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(built)
}

/// Turns a core module carrying its WIT (as wit-bindgen writes it) into a component.
pub fn encode(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
