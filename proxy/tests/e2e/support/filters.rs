//! The filters the tests use, built once per test binary with `weft filter build`
//! (cargo makes later builds no-ops).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

/// Builds every filter crate of the workspace (once) and returns the directory of the
/// components.
pub fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let repo = repo();
        let status = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["filter", "build", "--all"])
            .arg(&repo)
            .status()
            .expect("run weft filter build");
        assert!(status.success(), "weft filter build --all failed");
        repo.join("target/filters")
    })
}

/// The component of a filter crate.
pub fn component(name: &str) -> PathBuf {
    let p = built().join(format!("{name}.wasm"));
    assert!(p.is_file(), "{} missing", p.display());
    p
}

/// A configuration with one listener, `edge`, and two routes to `up`: `/filtered` runs
/// the example filter (request-id), every other path runs none.
pub fn filtered_and_plain(up: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: filtered
        match: {{ prefix: /filtered }}
        cluster: up
        filters: [request-id]
      - name: plain
        cluster: up
clusters:
  up:
    endpoints: ["{up}"]
filters:
  request-id:
    module: {}
"#,
        component("request-id").display()
    )
}
