//! A small etcd v3 client over its JSON gateway (`/v3/kv/put`, `/v3/kv/range`,
//! `/v3/watch`), enough for control-plane replicas to share blobs, bundles and rules
//! and to hear each other's changes. Endpoints are tried in turn.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// etcd endpoints (`host:port`) and the prefix of every key weft writes.
#[derive(Clone, Debug)]
pub struct Etcd {
    endpoints: Vec<String>,
    prefix: String,
}

/// The end of the range of keys starting with `prefix` (etcd's convention).
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

async fn connect(endpoint: &str) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(endpoint))
        .await
        .map_err(|_| format!("etcd {endpoint}: connect timed out"))?
        .map_err(|e| format!("etcd {endpoint}: {e}"))?;
    let (send, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("etcd {endpoint}: {e}"))?;
    tokio::spawn(conn);
    Ok(send)
}

/// A POST to an endpoint; the error names an endpoint that cannot be an address.
fn post(endpoint: &str, path: &str, body: &Value) -> Result<Request<Full<Bytes>>, String> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(http::header::HOST, endpoint)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("etcd {endpoint}: not an address: {e}"))
}

impl Etcd {
    /// A client of these endpoints (`http://` prefixes are ignored) under `prefix`.
    pub fn new(endpoints: &[String], prefix: &str) -> Etcd {
        Etcd {
            endpoints: endpoints
                .iter()
                .map(|e| {
                    e.trim_start_matches("http://")
                        .trim_end_matches('/')
                        .to_owned()
                })
                .collect(),
            prefix: prefix.to_owned(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, String> {
        let mut last = String::from("no etcd endpoint");
        for ep in &self.endpoints {
            let attempt = async {
                let mut send = connect(ep).await?;
                let resp = send
                    .send_request(post(ep, path, &body)?)
                    .await
                    .map_err(|e| format!("etcd {ep}: {e}"))?;
                let status = resp.status();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("etcd {ep}: {e}"))?
                    .to_bytes();
                if !status.is_success() {
                    return Err(format!(
                        "etcd {ep}{path}: {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    ));
                }
                serde_json::from_slice(&bytes).map_err(|e| format!("etcd {ep}: {e}"))
            };
            match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("etcd {ep}{path}: timed out"),
            }
        }
        Err(last)
    }

    /// Writes a key.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.call(
            "/v3/kv/put",
            json!({ "key": B64.encode(self.key(key)), "value": B64.encode(value) }),
        )
        .await
        .map(|_| ())
    }

    /// Reads a key.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let v = self
            .call("/v3/kv/range", json!({ "key": B64.encode(self.key(key)) }))
            .await?;
        match v["kvs"].get(0).and_then(|kv| kv["value"].as_str()) {
            Some(b) => B64.decode(b).map(Some).map_err(|e| e.to_string()),
            None => Ok(v["kvs"].get(0).map(|_| Vec::new())),
        }
    }

    /// Reads every key under `prefix` (below the client's own prefix): (key without
    /// the client's prefix, value).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        let start = self.key(prefix).into_bytes();
        let v = self
            .call(
                "/v3/kv/range",
                json!({ "key": B64.encode(&start), "range_end": B64.encode(range_end(&start)) }),
            )
            .await?;
        let mut out = Vec::new();
        for kv in v["kvs"].as_array().into_iter().flatten() {
            let key = B64
                .decode(kv["key"].as_str().unwrap_or(""))
                .map_err(|e| e.to_string())?;
            let value = B64
                .decode(kv["value"].as_str().unwrap_or(""))
                .map_err(|e| e.to_string())?;
            let key = String::from_utf8_lossy(&key[self.prefix.len()..]).into_owned();
            out.push((key, value));
        }
        Ok(out)
    }

    /// Calls `changed` with each changed key under `prefix`, for as long as the
    /// process lives; reconnects (to the next endpoint) when a watch breaks.
    pub async fn watch(&self, prefix: &str, mut changed: impl FnMut(String)) {
        let start = self.key(prefix).into_bytes();
        let body = json!({ "create_request": {
            "key": B64.encode(&start),
            "range_end": B64.encode(range_end(&start)),
        }});
        let mut i = 0;
        loop {
            let ep = &self.endpoints[i % self.endpoints.len()];
            i += 1;
            if let Err(e) = self.watch_once(ep, &body, &mut changed).await {
                tracing::warn!("etcd watch: {e}; reconnecting");
            }
            // Whatever was missed while disconnected: tell the caller to re-read.
            changed(String::new());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn watch_once(
        &self,
        ep: &str,
        body: &Value,
        changed: &mut impl FnMut(String),
    ) -> Result<(), String> {
        let mut send = connect(ep).await?;
        let resp = send
            .send_request(post(ep, "/v3/watch", body)?)
            .await
            .map_err(|e| e.to_string())?;
        let mut body = resp.into_body();
        let mut buf = BytesMut::new();
        let mut created = false;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            let mut consumed = 0;
            while let Some(Ok(v)) = stream.next() {
                consumed = stream.byte_offset();
                if !created {
                    created = true;
                    tracing::info!(endpoint = %ep, "watching etcd");
                }
                for ev in v["result"]["events"].as_array().into_iter().flatten() {
                    if let Some(k) = ev["kv"]["key"].as_str().and_then(|k| B64.decode(k).ok()) {
                        let k = String::from_utf8_lossy(&k[self.prefix.len().min(k.len())..])
                            .into_owned();
                        changed(k);
                    }
                }
            }
            let _ = buf.split_to(consumed);
        }
        Err(format!("etcd {ep}: the watch ended"))
    }
}

#[cfg(test)]
mod tests {
    use super::range_end;

    #[test]
    fn the_range_of_a_prefix_ends_after_it() {
        assert_eq!(range_end(b"/weft/"), b"/weft0");
        assert_eq!(range_end(b"a\xff"), b"b");
    }
}
