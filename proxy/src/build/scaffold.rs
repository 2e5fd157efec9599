//! `weft filter new`: a new filter crate, ready to build and test.

use std::path::{Path, PathBuf};

/// Why a crate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not usable as a crate name.
    #[error("invalid filter name {0:?}: use lower-case letters, digits, - and _, starting with a letter")]
    InvalidName(String),
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

/// Creates `dir/name` with a filter crate depending on the SDK as `sdk_dependency` (a
/// Cargo dependency specification such as `{ path = "..." }`). Returns the crate's
/// directory.
pub fn create(dir: &Path, name: &str, sdk_dependency: &str) -> Result<PathBuf, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::InvalidName(name.to_owned()));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let ty = type_name(name);
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
        (
            "src/lib.rs",
            format!(
                r#"//! The {name} filter.
//!
//! Build it with `weft filter build`, then list it in the proxy's configuration:
//!
//! ```yaml
//! filters:
//!   {name}:
//!     module: path/to/{name}.wasm
//!     config:
//!       header: x-hello
//! ```

use serde::Deserialize;
use weft_sdk::{{Action, Filter, InitContext, Request, Response}};

/// The configuration, from the filter's `config:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {{
    /// The response header to add.
    pub header: String,
}}

impl Default for Config {{
    fn default() -> Self {{
        Config {{ header: "x-hello".to_owned() }}
    }}
}}

/// Adds a header to every response, and refuses requests without a `Host`.
pub struct {ty} {{
    header: String,
}}

#[weft_sdk::filter]
impl Filter for {ty} {{
    type Config = Config;

    fn new(config: Config, _ctx: &InitContext) -> Result<Self, String> {{
        Ok({ty} {{ header: config.header }})
    }}

    fn on_request_headers(&self, req: &mut Request) -> Action {{
        if req.authority().is_empty() {{
            return Action::respond(400, "a Host is required\n");
        }}
        Action::Continue
    }}

    fn on_response_headers(&self, _req: &mut Request, resp: &mut Response) -> Action {{
        resp.set_header(&self.header, "from {name}").ok();
        Action::Continue
    }}
}}

#[cfg(test)]
mod tests {{
    use super::*;
    use weft_sdk::testing::{{Harness, TestRequest, TestResponse}};

    #[test]
    fn adds_the_header() {{
        let h = Harness::<{ty}>::new("null").unwrap();
        let mut req = TestRequest::get("/");
        assert_eq!(h.on_request_headers(&mut req), Action::Continue);
        let mut resp = TestResponse::new(200);
        h.on_response_headers(&mut req, &mut resp);
        assert_eq!(resp.header_now("x-hello").as_deref(), Some("from {name}"));
    }}
}}
"#
            ),
        ),
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
}
