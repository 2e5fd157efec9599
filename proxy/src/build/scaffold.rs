//! `weft filter new`: a new filter crate, ready to build and test.

use std::path::{Path, PathBuf};

/// Why a crate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not usable as a crate name.
    #[error("invalid filter name {0:?}: use lower-case letters, digits, - and _, starting with a letter")]
    InvalidName(String),
    /// No template has that name.
    #[error("no template {0:?} (templates: {names})", names = TEMPLATES.iter().map(|t| t.name).collect::<Vec<_>>().join(", "))]
    UnknownTemplate(String),
    /// The directory exists.
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The workspace's `rust-toolchain.toml`, given to every new filter crate.
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

/// Where the SDK is, for the new crate's dependency: this checkout's `sdk/` when it
/// exists (as when weft runs from its source tree), else the published crate.
pub fn default_sdk_dependency() -> String {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    match std::fs::canonicalize(&here) {
        Ok(p) if p.join("Cargo.toml").is_file() => {
            format!("{{ path = {:?} }}", p.display().to_string())
        }
        _ => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A shape of filter `weft filter new --template` starts from: a working filter with
/// its configuration, documentation and native tests.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// What `--template` takes.
    pub name: &'static str,
    /// One line on what it does.
    pub about: &'static str,
    /// `src/lib.rs`, with `{{name}}` and `{{Type}}` for the crate's and type's names.
    source: &'static str,
}

/// Every template, the default first.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "header",
        about: "set and remove request and response headers",
        source: include_str!("templates/header.rs.in"),
    },
    Template {
        name: "auth",
        about: "let requests through only with a known API key (401/403)",
        source: include_str!("templates/auth.rs.in"),
    },
    Template {
        name: "quota",
        about: "a per-tenant request quota per window in shared state (429 + retry-after)",
        source: include_str!("templates/quota.rs.in"),
    },
    Template {
        name: "router",
        about: "a canary router: a cookie or a share of requests picks another cluster",
        source: include_str!("templates/router.rs.in"),
    },
    Template {
        name: "body",
        about: "rewrite text in response bodies, buffered up to a limit",
        source: include_str!("templates/body.rs.in"),
    },
    Template {
        name: "outbound",
        about: "ask another service (a cluster) before letting a request through",
        source: include_str!("templates/outbound.rs.in"),
    },
];

/// The template called `name`.
pub fn template(name: &str) -> Result<&'static Template, ScaffoldError> {
    TEMPLATES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| ScaffoldError::UnknownTemplate(name.to_owned()))
}

/// Creates `dir/name` with a filter crate made from `template`, depending on the SDK as
/// `sdk_dependency` (a Cargo dependency specification such as `{ path = "..." }`).
/// Returns the crate's directory.
pub fn create(
    dir: &Path,
    name: &str,
    sdk_dependency: &str,
    template: &Template,
) -> Result<PathBuf, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_owned()));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let ty = type_name(name);
    let lib = template
        .source
        .replace("{{name}}", name)
        .replace("{{Type}}", &ty);
    let files = [
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# cdylib: the wasm component; rlib: native unit tests with the SDK's harness.
crate-type = ["cdylib", "rlib"]

[dependencies]
serde = {{ version = "1", features = ["derive"] }}
weft-sdk = {sdk_dependency}

# A crate of its own, even when created inside another workspace.
[workspace]
"#
            ),
        ),
        ("src/lib.rs", lib),
        // The compiler weft's SDK is built and tested with, and its wasm32 std: rustup
        // installs both on first use, whatever the machine's default toolchain is.
        ("rust-toolchain.toml", TOOLCHAIN.to_owned()),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (file, text) in files {
        let path = root.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_typed() {
        assert!(valid_name("my-filter2"));
        assert!(!valid_name("My"));
        assert!(!valid_name("9lives"));
        assert!(!valid_name(""));
        assert_eq!(type_name("my-cool_filter"), "MyCoolFilter");
    }

    #[test]
    fn templates_are_filled_in_and_unknown_ones_named() {
        let dir = std::env::temp_dir().join(format!("weft-scaffold-{}", std::process::id()));
        let made = create(&dir, "my-quota", "\"0\"", template("quota").unwrap()).unwrap();
        let lib = std::fs::read_to_string(made.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct MyQuota"), "{lib}");
        assert!(!lib.contains("{{"), "a placeholder is left");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = template("nope").unwrap_err().to_string();
        assert!(
            e.contains("header, auth, quota, router, body, outbound"),
            "{e}"
        );
    }
}
