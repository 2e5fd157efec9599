//! `shared_state:` — where filters' `global` state lives (Redis), as configured, and
//! its checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::FieldError;
use super::model::duration_opt;

/// `shared_state:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SharedStateConfig {
    /// The backend of the `global` scope. Absent: `global` is this proxy's state.
    #[serde(default)]
    pub global: Option<GlobalConfig>,
}

/// `shared_state.global:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// The Redis server or cluster.
    pub redis: RedisConfig,
    /// What a `global` operation answers while Redis is down or slow. Default `local`.
    #[serde(default)]
    pub on_error: OnError,
    /// Most tokens one proxy holds ahead of Redis for one bucket: half taken in
    /// advance, half lent before Redis confirms. Default: a tenth of the bucket's
    /// capacity, from 1 to 1000.
    #[serde(default)]
    pub lease: Option<u64>,
}

/// `shared_state.global.redis:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `host:port` of the server, or of any nodes of a Redis Cluster.
    pub endpoints: Vec<String>,
    /// The endpoints are nodes of a Redis Cluster (keys are spread by hash slot).
    /// Default false: one server.
    #[serde(default)]
    pub cluster: bool,
    /// The longest one Redis operation may take (connecting included). Default 20ms.
    #[serde(default, with = "duration_opt")]
    pub timeout: Option<Duration>,
    /// Connections per proxy (each carries many requests at once). Default 4.
    #[serde(default)]
    pub pool: Option<usize>,
    /// The ACL user, when the server has ACLs.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password (`requirepass` or the user's), so that the
    /// configuration carries no secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS to Redis (`tls-port`): the endpoints' host names are verified against the
    /// server's certificate.
    #[serde(default)]
    pub tls: Option<RedisTlsConfig>,
}

/// `shared_state.global.redis.tls:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTlsConfig {
    /// PEM certificates trusted to sign Redis's certificate.
    pub ca: PathBuf,
    /// A client certificate (PEM), for a Redis with `tls-auth-clients yes`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// What `global` state answers while its backend is unavailable.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// This proxy's own state: limits hold per proxy.
    #[default]
    Local,
    /// Every take from a bucket is allowed; counters read as their delta.
    Allow,
    /// Every take from a bucket is refused; counters read as exhausted (`i64::MAX`).
    Deny,
}

impl OnError {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Local => "local",
            OnError::Allow => "allow",
            OnError::Deny => "deny",
        }
    }
}

/// Checked `shared_state.global`.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckedGlobal {
    /// `host:port` of each endpoint, as written.
    pub endpoints: Vec<String>,
    pub cluster: bool,
    pub timeout: Duration,
    pub pool: usize,
    pub username: Option<String>,
    /// Read from `password_file`.
    pub password: Option<String>,
    /// TLS, with the files read.
    pub tls: Option<CheckedRedisTls>,
    pub on_error: OnError,
    /// Fixed lease, or `None` for a tenth of each bucket's capacity.
    pub lease: Option<u64>,
}

impl std::fmt::Debug for CheckedGlobal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedGlobal")
            .field("endpoints", &self.endpoints)
            .field("cluster", &self.cluster)
            .field("timeout", &self.timeout)
            .field("pool", &self.pool)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .field("on_error", &self.on_error)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Checked `redis.tls`: the PEM files' contents.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckedRedisTls {
    pub ca: Vec<u8>,
    /// Client certificate and key.
    pub client: Option<(Vec<u8>, Vec<u8>)>,
}

/// Longest password file read.
const MAX_PASSWORD: u64 = 4 << 10;

/// Checks `shared_state`; `resolve` makes a path relative to the configuration's
/// directory.
pub fn check(
    s: &SharedStateConfig,
    resolve: impl Fn(&std::path::Path) -> PathBuf,
) -> Result<Option<CheckedGlobal>, FieldError> {
    let Some(g) = &s.global else {
        return Ok(None);
    };
    let r = &g.redis;
    if r.endpoints.is_empty() {
        return Err(FieldError::new(
            "shared_state.global.redis.endpoints",
            "needs at least one host:port",
        ));
    }
    for (i, e) in r.endpoints.iter().enumerate() {
        let port = e.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p != 0) {
            return Err(FieldError::new(
                format!("shared_state.global.redis.endpoints[{i}]"),
                format!("{e:?} is not host:port (such as 127.0.0.1:6379)"),
            ));
        }
    }
    if r.endpoints.len() > 1 && !r.cluster {
        return Err(FieldError::new(
            "shared_state.global.redis.endpoints",
            "several endpoints are the nodes of a Redis Cluster: add `cluster: true` \
             (or give one server)",
        ));
    }
    let timeout = match r.timeout {
        None => Duration::from_millis(20),
        Some(d) if d.is_zero() => {
            return Err(FieldError::new(
                "shared_state.global.redis.timeout",
                "must be more than 0",
            ))
        }
        Some(d) => d,
    };
    let pool = r.pool.unwrap_or(4);
    if !(1..=64).contains(&pool) {
        return Err(FieldError::new(
            "shared_state.global.redis.pool",
            format!("must be from 1 to 64 connections, not {pool}"),
        ));
    }
    if g.lease == Some(0) {
        return Err(FieldError::new(
            "shared_state.global.lease",
            "must be at least 1 token",
        ));
    }
    let password = r
        .password_file
        .as_ref()
        .map(|p| read_password(&resolve(p)))
        .transpose()
        .map_err(|m| FieldError::new("shared_state.global.redis.password_file", m))?;
    let tls = r.tls.as_ref().map(|t| check_tls(t, &resolve)).transpose()?;
    Ok(Some(CheckedGlobal {
        endpoints: r.endpoints.clone(),
        cluster: r.cluster,
        timeout,
        pool,
        username: r.username.clone(),
        password,
        tls,
        on_error: g.on_error,
        lease: g.lease,
    }))
}

/// Largest PEM file read.
const MAX_PEM: u64 = 1 << 20;

fn check_tls(
    t: &RedisTlsConfig,
    resolve: &impl Fn(&std::path::Path) -> PathBuf,
) -> Result<CheckedRedisTls, FieldError> {
    let field = "shared_state.global.redis.tls";
    let pem = |name: &str, p: &PathBuf| {
        let bytes = read_bounded(&resolve(p), MAX_PEM)
            .map_err(|m| FieldError::new(format!("{field}.{name}"), m))?;
        if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(FieldError::new(
                format!("{field}.{name}"),
                format!("{} is not PEM", p.display()),
            ));
        }
        Ok(bytes)
    };
    let client = match (&t.cert, &t.key) {
        (None, None) => None,
        (Some(c), Some(k)) => Some((pem("cert", c)?, pem("key", k)?)),
        _ => {
            return Err(FieldError::new(
                field,
                "a client certificate needs both `cert` and `key`",
            ))
        }
    };
    Ok(CheckedRedisTls {
        ca: pem("ca", &t.ca)?,
        client,
    })
}

/// The bytes of `path` (a regular file of at most `max` bytes), or why not.
fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    super::check::read_bounded(path, max).map_err(|why| format!("{}: {why}", path.display()))
}

/// The password in `path`: a regular file of at most 4 KiB, its trailing newline
/// dropped.
fn read_password(path: &std::path::Path) -> Result<String, String> {
    let bytes = read_bounded(path, MAX_PASSWORD)?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let password = text.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(password)
}
