//! `weft cert`: a throwaway CA and SPIFFE SVIDs for development and tests, so that
//! mTLS between two proxies takes a few commands. Not for production: a mesh's
//! certificates come from its CA (the control plane), with short lifetimes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::tls::{issue_ca, issue_svid, Issued, SpiffeId, SvidRequest};

/// The `weft cert` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Make a CA: writes `<out>/ca.pem` and `<out>/ca.key` (mode 0600).
    Ca(CaArgs),
    /// Make a certificate signed by a CA made with `weft cert ca`: writes `<out>.pem`
    /// and `<out>.key` (mode 0600). Usable as a server and as a client certificate.
    Svid(SvidArgs),
}

/// `weft cert ca`.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// The SPIFFE trust domain the CA is for (for example `cluster.local`).
    #[arg(long)]
    pub trust_domain: String,
    /// The directory to write into (made if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Days the CA is valid.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
}

/// `weft cert svid`.
#[derive(Debug, Args)]
pub struct SvidArgs {
    /// The directory holding the CA (`ca.pem`, `ca.key`).
    #[arg(long)]
    pub ca: PathBuf,
    /// The SPIFFE ID (`spiffe://cluster.local/ns/shop/sa/orders`).
    #[arg(long)]
    pub id: Option<String>,
    /// A DNS name it is valid for (repeatable; `*.` wildcards allowed).
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Where to write: `<out>.pem` and `<out>.key`.
    #[arg(long)]
    pub out: PathBuf,
    /// Days it is valid.
    #[arg(long, default_value_t = 30)]
    pub days: i64,
    /// Days from now its validity starts (negative: in the past). With `--days`, makes
    /// expired (`--start-days -10 --days 5`) or not-yet-valid (`--start-days 1`)
    /// certificates for tests.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub start_days: i64,
}

impl CertCommand {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            CertCommand::Ca(a) => {
                if SpiffeId::parse(&format!("spiffe://{}", a.trust_domain)).is_none() {
                    anyhow::bail!(
                        "--trust-domain {:?} is not a SPIFFE trust domain (lower-case letters, digits, '.', '-', '_')",
                        a.trust_domain
                    );
                }
                std::fs::create_dir_all(&a.out)
                    .with_context(|| format!("cannot make {}", a.out.display()))?;
                let issued = issue_ca(&a.trust_domain, a.days).context("cannot make the CA")?;
                write_pair(&issued, &a.out.join("ca.pem"), &a.out.join("ca.key"))?;
                println!(
                    "CA for {} written to {}/ca.pem (key: ca.key)",
                    a.trust_domain,
                    a.out.display()
                );
                Ok(())
            }
            CertCommand::Svid(a) => {
                if a.id.is_none() && a.dns.is_empty() {
                    anyhow::bail!("give --id (a SPIFFE ID), --dns names, or both");
                }
                if let Some(id) = &a.id {
                    if SpiffeId::parse(id).is_none() {
                        anyhow::bail!(
                            "--id {id:?} is not a SPIFFE ID (spiffe://<trust domain>/<path>)"
                        );
                    }
                }
                let read = |name: &str| {
                    let p = a.ca.join(name);
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))
                };
                let (ca_cert, ca_key) = (read("ca.pem")?, read("ca.key")?);
                let now = time::OffsetDateTime::now_utc();
                let start = now + time::Duration::days(a.start_days) - time::Duration::minutes(5);
                let req = SvidRequest {
                    spiffe_id: a.id.as_deref(),
                    dns_names: &a.dns,
                    not_before: start,
                    not_after: start + time::Duration::days(a.days),
                };
                let issued =
                    issue_svid(&ca_cert, &ca_key, &req).context("cannot make the certificate")?;
                let (cert, key) = (a.out.with_extension("pem"), a.out.with_extension("key"));
                if let Some(dir) = cert.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                write_pair(&issued, &cert, &key)?;
                println!(
                    "certificate written to {} (key: {})",
                    cert.display(),
                    key.display()
                );
                Ok(())
            }
        }
    }
}

fn write_pair(issued: &Issued, cert: &Path, key: &Path) -> anyhow::Result<()> {
    std::fs::write(cert, &issued.cert_pem)
        .with_context(|| format!("cannot write {}", cert.display()))?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(key)
        .with_context(|| format!("cannot write {}", key.display()))?;
    f.write_all(issued.key_pem.as_bytes())?;
    Ok(())
}
