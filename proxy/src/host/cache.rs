//! Compiled filters on disk, keyed by the component's sha256 and the engine's
//! compatibility hash, so a restart (or another proxy on the machine) does not compile
//! the same module again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

/// Where a compiled artefact would live, and how to get or make it.
pub struct DiskCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

/// The default cache directory: `$WEFT_CACHE_DIR`, else `$XDG_CACHE_HOME/weft`, else
/// `~/.cache/weft`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WEFT_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("weft"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("weft"))
}

impl DiskCache {
    /// A cache in `dir` (none: compile every time) for `engine`'s artefacts.
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> DiskCache {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        DiskCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    fn path_for(&self, digest: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }

    /// The compiled component for `bytes` (whose sha256 is `digest`): from the cache if
    /// present and loadable, else compiled and stored. Whether it came from the cache
    /// is returned too.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, bool)> {
        let path = self.path_for(digest);
        if let Some(p) = path.as_deref().filter(|p| p.is_file()) {
            // SAFETY: the file was written by `store` below from `precompile_component`
            // of this engine configuration (the name carries its compatibility hash),
            // into a directory only this user writes. A corrupt file fails the checks
            // `deserialize_file` makes and is recompiled.
            match unsafe { Component::deserialize_file(engine, p) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %p.display(), "ignoring unusable cached filter: {e}")
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        if let Some(p) = path {
            if let Err(e) = store(&p, &compiled) {
                tracing::warn!(path = %p.display(), "cannot cache compiled filter: {e}");
            }
        }
        // SAFETY: `compiled` was just produced by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, false))
    }
}

/// Writes atomically: a reader sees the whole file or none.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
