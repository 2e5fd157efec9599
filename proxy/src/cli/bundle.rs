//! `weft bundle`: pack a configuration and its filters, sign it, check it.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::bundle::{self, SigningKey, TrustedKeys};

/// `weft bundle ...`.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Make a signing key pair: `<out>.key` (secret) and `<out>.pub`.
    Keygen(KeygenArgs),
    /// Pack a configuration and every module and file it names into a bundle directory.
    Pack(PackArgs),
    /// Sign a bundle directory (writes manifest.sig).
    Sign(SignArgs),
    /// Check a bundle directory: its signature and every blob.
    Verify(VerifyArgs),
}

/// `weft bundle keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the key pair, without extension.
    #[arg(long)]
    pub out: PathBuf,
}

/// `weft bundle pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    /// The configuration to pack.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The bundle directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// A name for people (default: the configuration's file name).
    #[arg(long)]
    pub name: Option<String>,
}

/// `weft bundle sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The signing key (`weft bundle keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// The bundle directory.
    pub bundle: PathBuf,
}

/// `weft bundle verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Public keys to trust (repeatable); without any, only blobs are checked.
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    /// The bundle directory.
    pub bundle: PathBuf,
}

impl BundleCommand {
    /// Runs it.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            BundleCommand::Keygen(a) => {
                let id = SigningKey::generate().write(&a.out)?;
                println!(
                    "key {id}: {} (secret), {} (public)",
                    a.out.with_extension("key").display(),
                    a.out.with_extension("pub").display()
                );
            }
            BundleCommand::Pack(a) => {
                let name = a.name.unwrap_or_else(|| {
                    a.config
                        .file_stem()
                        .map_or("bundle".into(), |s| s.to_string_lossy().into_owned())
                });
                let env = bundle::pack(&a.config, &a.out, &name)?;
                let m = env.parse()?;
                println!(
                    "packed {} ({} blob(s)) into {}: version {}",
                    a.config.display(),
                    m.blobs.len(),
                    a.out.display(),
                    env.version()
                );
            }
            BundleCommand::Sign(a) => {
                let key = SigningKey::read(&a.key)?;
                let sig = bundle::sign(&a.bundle, &key)?;
                println!("signed {} with key {}", a.bundle.display(), sig.key_id);
            }
            BundleCommand::Verify(a) => {
                let trusted = TrustedKeys::read(&a.trust)?;
                let m = bundle::verify_dir(&a.bundle, &trusted)?;
                let env = bundle::Envelope::read(&a.bundle)?;
                println!(
                    "{}: ok, version {} ({}, {} blob(s){})",
                    a.bundle.display(),
                    env.version(),
                    m.name,
                    m.blobs.len(),
                    if trusted.is_empty() {
                        ", signature not checked"
                    } else {
                        ", signature verified"
                    }
                );
            }
        }
        Ok(())
    }
}
