//! Reading and parsing a configuration file.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, FieldError};
use super::locate::Locations;
use super::model::Config;

/// A parsed configuration with what is needed to report problems in it.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Its text.
    pub source: String,
    /// The parsed document.
    pub config: Config,
    locations: Locations,
}

/// serde_yaml's message without its own path prefix and position suffix (both are
/// reported apart, more precisely).
fn bare_message(e: &serde_yaml::Error) -> String {
    let mut message = e.to_string();
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    if let Some((prefix, rest)) = message.split_once(": ") {
        let looks_like_path = !prefix.is_empty() && !prefix.contains(' ') && !prefix.contains('`');
        if looks_like_path {
            return rest.to_owned();
        }
    }
    message
}

impl LoadedConfig {
    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            position: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, source)
    }

    /// Parses a document; `path` is where it came from (for messages and relative
    /// paths).
    pub fn parse(path: &Path, source: String) -> Result<LoadedConfig, ConfigError> {
        let locations = Locations::index(&source);
        let deserializer = serde_yaml::Deserializer::from_str(&source);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            let inner = e.into_inner();
            // The field's own value when it is in the document (serde_yaml points custom
            // errors at the enclosing mapping), else where the parser stopped.
            let position = locations
                .find_exact(&field)
                .or_else(|| inner.location().map(|l| (l.line(), l.column())));
            ConfigError {
                file: path.to_owned(),
                position,
                field,
                message: bare_message(&inner),
            }
        })?;
        Ok(LoadedConfig {
            path: path.to_owned(),
            source,
            config,
            locations,
        })
    }

    /// Places a problem found after parsing at its line.
    pub fn error(&self, e: FieldError) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            position: self.locations.find(&e.field),
            field: e.field,
            message: e.message,
        }
    }

    /// Resolves a path written in the configuration: relative paths are relative to
    /// the configuration file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_owned();
        }
        match self.path.parent() {
            Some(dir) => dir.join(p),
            None => p.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<LoadedConfig, ConfigError> {
        LoadedConfig::parse(Path::new("t.yaml"), src.to_owned())
    }

    #[test]
    fn unknown_field_names_field_and_line() {
        let err =
            parse("listeners:\n  - name: a\n    adress: 1.2.3.4:5\n    routes: []\n").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(3), "{err}");
        assert_eq!(err.field, "listeners[0].adress");
        assert!(err.message.starts_with("unknown field `adress`"), "{err}");
        assert!(err.to_string().starts_with("t.yaml:3:"), "{err}");
    }

    #[test]
    fn bad_duration_names_field() {
        let err = parse(
            "listeners:\n  - name: a\n    address: 127.0.0.1:0\n    routes:\n      - cluster: c\n        timeout: soon\n",
        )
        .unwrap_err();
        assert_eq!(err.field, "listeners[0].routes[0].timeout", "{err}");
        assert!(
            err.message.starts_with("invalid duration \"soon\""),
            "{err}"
        );
        assert_eq!(err.position.map(|p| p.0), Some(6), "{err}");
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = parse("listeners: [\n").unwrap_err();
        assert!(err.position.is_some(), "{err}");
    }

    #[test]
    fn missing_required_field_is_named() {
        let err = parse("listeners:\n  - name: a\n    routes: []\n").unwrap_err();
        assert!(err.message.contains("missing field `address`"), "{err}");
    }
}
