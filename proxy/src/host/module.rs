//! A filter module: a component file, checked, compiled (or read from the cache) and
//! pre-instantiated against the host's imports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::bindings::FilterPre;
use super::engine::Ticks;
use super::state::HostState;

/// The imports that make a component need asynchronous calls (their functions wait).
const ASYNC_IMPORTS: [&str; 2] = ["weft:filter/http-client", "weft:filter/global-kv"];

/// Why a module cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is a core WebAssembly module, not a component.
    #[error(
        "{0} is a core WebAssembly module, not a component; build filters with `weft filter build`"
    )]
    CoreModule(PathBuf),
    /// The file is not WebAssembly at all.
    #[error("{0} is not a WebAssembly component")]
    NotWasm(PathBuf),
    /// The component is invalid or cannot be compiled.
    #[error("{path} is not a valid component: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// The component imports something the host does not provide (for example another
    /// major version of `weft:filter`).
    #[error("{path} does not fit this proxy's weft:filter@0.3 contract (rebuild it with this weft's SDK: `weft filter build`): {reason}")]
    Link {
        /// The file.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
}

/// A compiled, linked filter module.
pub struct FilterModule {
    /// The file it came from.
    pub path: PathBuf,
    /// sha256 of the component, hex.
    pub digest: String,
    /// Its size in bytes.
    pub size: usize,
    /// Whether it was read from the compiled cache.
    pub from_cache: bool,
    /// Whether it imports `http-client` or `global-kv` (and so must be called
    /// asynchronously).
    pub needs_async: bool,
    /// Ready to instantiate.
    pub pre: FilterPre<HostState>,
    /// The epoch ticker its calls register with (deadlines need it ticking).
    pub ticks: Arc<Ticks>,
}

/// What identifies a file's content without reading it: device, inode, size, and the
/// modification and change times to the nanosecond. Any write changes the change time
/// (which no user can set), and a replacement by rename changes the inode, so an equal
/// stamp means the content digested earlier (git trusts its index the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp([i64; 7]);

impl FileStamp {
    /// The stamp of the file at `path`, if it can be read.
    pub fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp([
            m.dev() as i64,
            m.ino() as i64,
            m.size() as i64,
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        ]))
    }
}

/// The sha256 of a component, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What kind of WebAssembly binary the bytes are, from their header.
pub fn classify(path: &Path, bytes: &[u8]) -> Result<(), ModuleError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(ModuleError::NotWasm(path.to_owned()));
    }
    // Core modules are version 1, layer 0; components carry layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(ModuleError::CoreModule(path.to_owned()));
    }
    Ok(())
}

impl FilterModule {
    /// Whether a compiled component imports an interface whose calls wait (outbound
    /// calls, the global key-value store), and so must be called asynchronously.
    pub fn imports_async(
        component: &wasmtime::component::Component,
        engine: &wasmtime::Engine,
    ) -> bool {
        component
            .component_type()
            .imports(engine)
            .any(|(name, _)| ASYNC_IMPORTS.iter().any(|i| name.starts_with(i)))
    }

    /// The `weft:filter` version a component was built for (`0.2.0`), from the names
    /// of its exports and imports.
    pub fn contract_version(
        component: &wasmtime::component::Component,
        engine: &wasmtime::Engine,
    ) -> Option<String> {
        let ty = component.component_type();
        let version = |name: &str| {
            let rest = name.strip_prefix("weft:filter/")?;
            Some(rest.split_once('@')?.1.to_owned())
        };
        let exported = ty.exports(engine).find_map(|(name, _)| version(name));
        exported.or_else(|| ty.imports(engine).find_map(|(name, _)| version(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_tells_modules_from_components() {
        let p = Path::new("x.wasm");
        assert!(matches!(
            classify(p, b"\0asm\x01\0\0\0"),
            Err(ModuleError::CoreModule(_))
        ));
        assert!(classify(p, b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            classify(p, b"hello world"),
            Err(ModuleError::NotWasm(_))
        ));
        assert!(matches!(classify(p, b""), Err(ModuleError::NotWasm(_))));
    }
}
