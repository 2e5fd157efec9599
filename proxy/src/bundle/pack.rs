//! `weft bundle pack`: a configuration and everything it names, as a bundle directory.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_yaml::Value;

use super::{digest, io, write_atomic, Blob, BundleError, Envelope, Manifest, FORMAT};
use crate::config::{check, LoadedConfig};

/// Reads `config` (checked as `weft validate` checks it, short of starting filters),
/// copies each filter module and file it names into `out/blobs/<sha256>`, and writes
/// `out/manifest.json` with the configuration pointing at the blobs.
pub fn pack(config: &Path, out: &Path, name: &str) -> Result<Envelope, BundleError> {
    let loaded = LoadedConfig::read(config).map_err(|e| BundleError::Pack(e.to_string()))?;
    check(&loaded).map_err(|e| BundleError::Pack(e.to_string()))?;
    let mut doc: Value = serde_yaml::from_str(&loaded.source)
        .map_err(|e| BundleError::Pack(format!("{}: {e}", config.display())))?;
    let blobs_dir = out.join("blobs");
    std::fs::create_dir_all(&blobs_dir).map_err(io(&blobs_dir))?;
    let mut blobs: Vec<Blob> = Vec::new();
    let mut add = |value: &mut Value| -> Result<(), BundleError> {
        let Some(p) = value.as_str() else {
            return Ok(());
        };
        let path = loaded.resolve(Path::new(p));
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let sha = digest(&bytes);
        let dest = blobs_dir.join(&sha);
        if !dest.exists() {
            write_atomic(&dest, &bytes)?;
        }
        if !blobs.iter().any(|b| b.sha256 == sha) {
            blobs.push(Blob {
                sha256: sha.clone(),
                size: bytes.len() as u64,
            });
        }
        *value = Value::String(format!("blobs/{sha}"));
        Ok(())
    };
    if let Some(filters) = doc.get_mut("filters").and_then(Value::as_mapping_mut) {
        for (_, f) in filters.iter_mut() {
            if let Some(m) = f.get_mut("module") {
                add(m)?;
            }
            if let Some(files) = f.get_mut("files").and_then(Value::as_mapping_mut) {
                for (_, p) in files.iter_mut() {
                    add(p)?;
                }
            }
        }
    }
    blobs.sort_by(|a, b| a.sha256.cmp(&b.sha256));
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        name: name.to_owned(),
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        config: serde_yaml::to_string(&doc).map_err(|e| BundleError::Pack(e.to_string()))?,
        blobs,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    write_atomic(&out.join("manifest.json"), &bytes)?;
    // A signature of an earlier manifest in the same directory no longer applies.
    let _ = std::fs::remove_file(out.join("manifest.sig"));
    Ok(Envelope {
        manifest: bytes,
        signature: None,
    })
}
