//! Filters' outbound calls (`http-client.send`), served by the same upstream code as
//! proxied requests: the host's `Outbound` implemented with the snapshot's clusters.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::BodyExt;

use crate::body::ProxyBody;
use crate::error::UpstreamFailure;
use crate::host::services::BoxFuture;
use crate::host::{CallError, Outbound, OutboundRequest, OutboundResponse};
use crate::upstream::{send, Clusters, RequestHead};

/// Largest response body a filter call accepts.
pub const MAX_RESPONSE: usize = 1 << 20;
/// How long a call may take when the filter sets no timeout.
pub const DEFAULT_TIMEOUT: Duration = crate::host::services::DEFAULT_CALL_TIMEOUT;

/// Outbound calls to the clusters of one configuration.
pub struct ClusterOutbound {
    clusters: Arc<Clusters>,
}

impl ClusterOutbound {
    /// Calls go to these clusters.
    pub fn new(clusters: Arc<Clusters>) -> Arc<ClusterOutbound> {
        Arc::new(ClusterOutbound { clusters })
    }
}

fn head(cluster: &str, req: &OutboundRequest) -> Result<RequestHead, CallError> {
    let invalid = |m: String| CallError::InvalidRequest(m);
    let method = Method::from_str(&req.method)
        .map_err(|_| invalid(format!("invalid method {:?}", req.method)))?;
    let path = match http::uri::PathAndQuery::from_str(&req.path) {
        Ok(p) if req.path.starts_with('/') => p,
        _ => return Err(invalid(format!("invalid path {:?}", req.path))),
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {k:?}")))?;
        let value = HeaderValue::from_bytes(v)
            .map_err(|_| invalid(format!("invalid value for header {k}")))?;
        headers.append(name, value);
    }
    headers.remove(http::header::HOST);
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::TRANSFER_ENCODING);
    Ok(RequestHead {
        method,
        authority: req.authority.clone().unwrap_or_else(|| cluster.to_owned()),
        path,
        headers,
        upgrade: None,
        raw_response: false,
        continue_relay: None,
        hash_key: None,
    })
}

impl Outbound for ClusterOutbound {
    fn send(
        &self,
        cluster: String,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, CallError>> {
        let target = self.clusters.get(&cluster).cloned();
        Box::pin(async move {
            let Some(target) = target else {
                return Err(CallError::UnknownCluster(cluster));
            };
            let head = head(&cluster, &request)?;
            let timeout = request.timeout.unwrap_or(DEFAULT_TIMEOUT);
            let exchange = async {
                let resp = send(&target, head, ProxyBody::full(request.body))
                    .await
                    .map_err(|e| CallError::Failed(e.failure))?;
                let mut body = resp.body;
                let mut bytes = BytesMut::new();
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|_| CallError::Failed(UpstreamFailure::Reset))?;
                    if let Some(d) = frame.data_ref() {
                        if bytes.len() + d.len() > MAX_RESPONSE {
                            return Err(CallError::ResponseTooLarge);
                        }
                        bytes.extend_from_slice(d);
                    }
                }
                let headers = resp
                    .head
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect();
                Ok(OutboundResponse {
                    status: resp.head.status.as_u16(),
                    headers,
                    body: bytes.to_vec(),
                })
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(CallError::Failed(UpstreamFailure::Timeout)),
            }
        })
    }
}
