//! The connections to Redis (one server or a Redis Cluster), and the server-side
//! scripts that keep global buckets and counters atomic. Runs only on the
//! `weft-global` thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult, Script, ScriptInvocation};

use crate::config::shared_state::CheckedGlobal;

/// Takes up to `ARGV[4]` tokens from the bucket at `KEYS[1]` (created full) with
/// capacity `ARGV[1]`, gaining `ARGV[2]` tokens every `ARGV[3]` ms, on Redis's clock.
/// Answers `{granted, tokens left, ms until one more token (when short), ms until
/// full}`.
const TAKE: &str = r"
local cap = tonumber(ARGV[1])
local per_token = tonumber(ARGV[3]) / tonumber(ARGV[2])
local want = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 't', 'n')
local tokens = cap
if s[1] then
  tokens = math.min(cap, tonumber(s[2]) + math.max(0, now - tonumber(s[1])) / per_token)
end
local granted = math.max(0, math.min(want, math.floor(tokens)))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 't', now, 'n', tostring(tokens))
local full = math.ceil((cap - tokens) * per_token)
redis.call('PEXPIRE', KEYS[1], full + 1000)
local retry = 0
if tokens < 1 then retry = math.ceil((1 - tokens) * per_token) end
return {granted, math.floor(tokens), retry, full}
";

/// Adds `ARGV[1]` to the counter at `KEYS[1]` (0: only reads, creating nothing); a
/// counter without expiry gets `ARGV[2]` ms (when not empty). Answers `{value, ms
/// left or -1}`.
const COUNT: &str = r"
local v
if ARGV[1] == '0' then
  v = tonumber(redis.call('GET', KEYS[1]) or '0')
else
  v = redis.call('INCRBY', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 and ARGV[2] ~= '' and ARGV[1] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {v, ttl}
";

/// A connection, to one server or to a cluster (which routes each key to its node).
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// What connections are made to.
#[allow(clippy::large_enum_variant, reason = "one per backend, made once")]
enum Target {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// A few multiplexed connections, made when first needed and again after one breaks.
pub struct Pool {
    target: Target,
    slots: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
    timeout: Duration,
    take: Script,
    count: Script,
}

/// Why a Redis operation got no answer.
#[derive(Debug)]
pub enum Failure {
    /// It took longer than the configured timeout.
    Timeout,
    /// Redis refused or the connection failed.
    Error(redis::RedisError),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Error(e) => write!(f, "{e}"),
        }
    }
}

impl Failure {
    /// For metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Error(_) => "error",
        }
    }
}

fn info(endpoint: &str, c: &CheckedGlobal) -> RedisResult<redis::ConnectionInfo> {
    use redis::IntoConnectionInfo;
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, "6379"));
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port: u16 = port.parse().unwrap_or(6379);
    let mut redis = redis::RedisConnectionInfo::default();
    if let Some(u) = &c.username {
        redis = redis.set_username(u);
    }
    if let Some(p) = &c.password {
        redis = redis.set_password(p);
    }
    let addr = if c.tls.is_some() {
        redis::ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(host, port)
    };
    Ok(addr.into_connection_info()?.set_redis_settings(redis))
}

/// The trust anchors and client certificate of `c`'s TLS, when it has TLS.
fn certificates(c: &CheckedGlobal) -> Option<redis::TlsCertificates> {
    let tls = c.tls.as_ref()?;
    // The redis crate builds its rustls configuration with the process's default
    // provider: weft's (ring), installed once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Some(redis::TlsCertificates {
        client_tls: tls
            .client
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
        root_cert: Some(tls.ca.clone()),
    })
}

impl Pool {
    /// A pool for `c` (connecting nothing yet).
    pub fn new(c: &CheckedGlobal) -> RedisResult<Pool> {
        let target = if c.cluster {
            let nodes = c
                .endpoints
                .iter()
                .map(|e| info(e, c))
                .collect::<RedisResult<Vec<_>>>()?;
            let mut builder = redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(c.timeout)
                .response_timeout(c.timeout)
                .retries(0);
            if let Some(certs) = certificates(c) {
                builder = builder.certs(certs);
            }
            Target::Cluster(builder.build()?)
        } else {
            let info = info(&c.endpoints[0], c)?;
            Target::Single(match certificates(c) {
                Some(certs) => redis::Client::build_with_tls(info, certs)?,
                None => redis::Client::open(info)?,
            })
        };
        Ok(Pool {
            target,
            slots: (0..c.pool).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            timeout: c.timeout,
            take: Script::new(TAKE),
            count: Script::new(COUNT),
        })
    }

    async fn connect(&self) -> RedisResult<Conn> {
        match &self.target {
            Target::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                Ok(Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Target::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }

    /// Runs `op` on a pooled connection within the timeout. Any failure drops every
    /// connection (Redis is then taken for down, and a connection that outlived a
    /// restart would fail its next use), to be made again when next needed.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let work = async {
            let existing = self.slots[slot].lock().clone();
            let conn = match existing {
                Some(c) => c,
                None => {
                    let c = self.connect().await?;
                    *self.slots[slot].lock() = Some(c.clone());
                    c
                }
            };
            op(conn).await
        };
        let failure = match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => Failure::Error(e),
            Err(_) => Failure::Timeout,
        };
        for s in &self.slots {
            *s.lock() = None;
        }
        Err(failure)
    }

    async fn invoke<T: FromRedisValue>(conn: Conn, inv: ScriptInvocation<'_>) -> RedisResult<T> {
        match conn {
            Conn::Single(mut c) => inv.invoke_async(&mut c).await,
            Conn::Cluster(mut c) => inv.invoke_async(&mut c).await,
        }
    }

    async fn query<T: FromRedisValue>(conn: Conn, cmd: Cmd) -> RedisResult<T> {
        match conn {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    /// The bucket script: `[granted, left, retry ms, full ms]`.
    pub async fn take(
        &self,
        key: &str,
        b: weft_shared_state::Bucket,
        want: u64,
    ) -> Result<[u64; 4], Failure> {
        self.run(|conn| async move {
            let mut inv = self.take.key(key);
            inv.arg(b.capacity)
                .arg(b.refill_tokens)
                .arg(b.refill_interval_ms)
                .arg(want);
            let v: Vec<i64> = Self::invoke(conn, inv).await?;
            let get = |i: usize| v.get(i).copied().unwrap_or(0).max(0) as u64;
            Ok([get(0), get(1), get(2), get(3)])
        })
        .await
    }

    /// The counter script: the value and the ms it has left (`None`: no expiry).
    pub async fn count(
        &self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<(i64, Option<u64>), Failure> {
        self.run(|conn| async move {
            let mut inv = self.count.key(key);
            inv.arg(delta)
                .arg(ttl_ms.map(|t| t.to_string()).unwrap_or_default());
            let (v, ttl): (i64, i64) = Self::invoke(conn, inv).await?;
            Ok((v, (ttl >= 0).then_some(ttl as u64)))
        })
        .await
    }

    /// Runs one command.
    pub async fn query_one<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T, Failure> {
        self.run(|conn| Self::query(conn, cmd)).await
    }
}
