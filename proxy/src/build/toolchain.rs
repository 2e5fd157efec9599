//! Choosing how to compile Rust to `wasm32-unknown-unknown` on this machine.
//!
//! Two ways work (see the README's "Building filters"):
//! - the default toolchain has the wasm32 standard library (after
//!   `rustup target add wasm32-unknown-unknown`): a plain `cargo build --target`;
//! - it does not, but Debian's Rust with its standard library sources is installed
//!   (`rustc-web cargo-web rust-web-src lld-22`): that compiler builds std for wasm32
//!   from source (`-Zbuild-std`), once per target directory.
//!
//! `WEFT_WASM_TOOLCHAIN=installed` or `=build-std` forces one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The wasm target filters are built for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Where Debian's Rust lives.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";

/// How to compile for wasm32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// The default `cargo` has the wasm32 standard library.
    Installed,
    /// Debian's compiler builds the standard library from its sources.
    BuildStd {
        /// Debian's cargo.
        cargo: PathBuf,
        /// Debian's rustc.
        rustc: PathBuf,
    },
}

/// No way to build for wasm32 was found.
#[derive(Debug, thiserror::Error)]
#[error(
    "no Rust toolchain here can build for {TARGET}.\n\
     Either add the target to your toolchain:\n    rustup target add {TARGET}\n\
     or, on Debian bookworm, install Debian's Rust with its standard library sources:\n    \
     apt-get install -y rustc-web cargo-web rust-web-src lld-22\n({detail})"
)]
pub struct NoToolchain {
    detail: String,
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether the default toolchain has a wasm32 standard library.
fn installed_has_std() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Some(libdir) =
        output(Command::new(rustc).args(["--print", "target-libdir", "--target", TARGET]))
    else {
        return false;
    };
    std::fs::read_dir(&libdir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
        .unwrap_or(false)
}

/// Whether Debian's rustc with its std sources is present.
fn debian_build_std() -> Result<Toolchain, String> {
    let rustc = Path::new(DEBIAN_RUSTC);
    let cargo = Path::new(DEBIAN_CARGO);
    if !rustc.is_file() || !cargo.is_file() {
        return Err(format!("{DEBIAN_RUSTC} or {DEBIAN_CARGO} is missing"));
    }
    let sysroot = output(Command::new(rustc).args(["--print", "sysroot"]))
        .ok_or_else(|| format!("{DEBIAN_RUSTC} --print sysroot failed"))?;
    let library = Path::new(&sysroot).join("lib/rustlib/src/rust/library/Cargo.lock");
    if !library.is_file() {
        return Err(format!(
            "{} is missing (package rust-web-src)",
            library.display()
        ));
    }
    if output(Command::new("rust-lld").arg("--version")).is_none()
        && !Path::new("/usr/bin/rust-lld").exists()
    {
        return Err("rust-lld is missing (package lld-22)".to_owned());
    }
    Ok(Toolchain::BuildStd {
        cargo: cargo.to_owned(),
        rustc: rustc.to_owned(),
    })
}

/// Picks the toolchain, as documented above.
pub fn detect() -> Result<Toolchain, NoToolchain> {
    match std::env::var("WEFT_WASM_TOOLCHAIN").as_deref() {
        Ok("installed") => return Ok(Toolchain::Installed),
        Ok("build-std") => return debian_build_std().map_err(|detail| NoToolchain { detail }),
        _ => {}
    }
    if installed_has_std() {
        return Ok(Toolchain::Installed);
    }
    debian_build_std().map_err(|d| NoToolchain {
        detail: format!("the default rustc has no {TARGET} std; {d}"),
    })
}

impl Toolchain {
    /// A `cargo build` for wasm32 in release mode, with an environment that is not
    /// confused by the cargo this may run under (a test or `cargo run`).
    pub fn cargo_build(&self) -> Command {
        let mut cmd;
        match self {
            Toolchain::Installed => {
                cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                cmd.args(["build", "--release", "--target", TARGET]);
            }
            Toolchain::BuildStd { cargo, rustc } => {
                cmd = Command::new(cargo);
                cmd.args([
                    "build",
                    "--release",
                    "--target",
                    TARGET,
                    "-Zbuild-std=std,panic_abort",
                ]);
                cmd.env("RUSTC", rustc)
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env_remove("RUSTUP_TOOLCHAIN");
                let path = std::env::var_os("PATH").unwrap_or_default();
                let mut dirs = vec![PathBuf::from("/usr/bin")];
                dirs.extend(std::env::split_paths(&path));
                if let Ok(joined) = std::env::join_paths(dirs) {
                    cmd.env("PATH", joined);
                }
            }
        }
        for var in [
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
        ] {
            cmd.env_remove(var);
        }
        // Small, fast modules: filters are tiny, so whole-program optimisation is cheap.
        cmd.env("CARGO_PROFILE_RELEASE_LTO", "true")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
        cmd
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Toolchain::Installed => format!("the default toolchain's {TARGET} target"),
            Toolchain::BuildStd { rustc, .. } => {
                format!("{} with std built from source", rustc.display())
            }
        }
    }
}
