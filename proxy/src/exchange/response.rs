//! The response's way out: local responses passed back through the chain, phase 4
//! (response bodies), and the head the client receives.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body::Body;
use http_body_util::BodyExt;

use super::chain::{self, ResponseDecision};
use super::local::replace_head;
use super::request::collect_limited;
use super::Exchange;
use crate::body::{channel, BodySender, ProxyBody};
use crate::error::ProxyError;
use crate::host::{BodyMode, LoadedFilter, LocalResponse, RequestCtx, ResponseCtx};

/// A filter answered locally: the response passes back through the filters that ran
/// before it (response-headers phase, reverse order); body phases do not run.
pub async fn local(
    ex: &mut Exchange,
    local: LocalResponse,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (head, ()) = Response::new(()).into_parts();
    let mut resp = ResponseCtx {
        head,
        upstream_failure: None,
        upstream_addr: None,
    };
    replace_head(&mut resp, &local);
    let mut body = local.body;
    if ex.route.needs.response_headers {
        let mut response = Some(Box::new(resp));
        let mut replaced = None;
        let ResponseDecision::Deliver =
            chain::response_headers(ex, &mut response, &mut replaced, false).await?
        else {
            unreachable!("retry is refused for local responses");
        };
        resp = *response.expect("response is back after every filter call");
        if let Some(b) = replaced {
            body = b;
        }
    }
    let mut response = finish(resp, ProxyBody::full(body));
    response.extensions_mut().insert(super::grpc::LocalReply);
    Ok(response)
}

/// Builds the response the client gets.
pub fn finish(resp: ResponseCtx, body: ProxyBody) -> Response<ProxyBody> {
    let mut head = resp.head;
    super::forward::client_headers(&mut head.headers);
    Response::from_parts(head, body)
}

/// Phase 4: response bodies, for filters that asked (reverse chain order). In `buffer`
/// mode the head waits for the whole body, so a filter may still replace the response;
/// in `stream` mode the head has left and chunks pass through filters as they come.
pub async fn body(
    ex: &mut Exchange,
    mut resp: Box<ResponseCtx>,
    body: ProxyBody,
) -> Result<Response<ProxyBody>, ProxyError> {
    let filters: Vec<Arc<LoadedFilter>> = if ex.route.needs.response_body {
        ex.route.chain[..ex.request_ran]
            .iter()
            .rev()
            .filter(|f| f.info.phases.response_body)
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    if filters.is_empty() || body.is_end_stream() && resp.upstream_failure.is_some() {
        return Ok(finish(*resp, body));
    }
    resp.head.headers.remove(http::header::CONTENT_LENGTH);
    let buffer_limit = filters
        .iter()
        .filter_map(|f| match f.info.response_body {
            BodyMode::Buffer(n) => Some((n, f.name.clone())),
            _ => None,
        })
        .min();
    match buffer_limit {
        Some((limit, name)) => {
            let bytes = collect_limited(body, limit)
                .await
                .map_err(|_| ProxyError::Upstream {
                    failure: crate::error::UpstreamFailure::Reset,
                    detail: "reading the response body failed".into(),
                })?
                .ok_or(ProxyError::ResponseBodyTooLarge {
                    filter: name,
                    limit,
                })?;
            let mut response = Some(resp);
            let bytes = chain::response_body_whole(ex, &filters, &mut response, bytes).await?;
            Ok(finish(
                *response.expect("response is back"),
                ProxyBody::full(bytes),
            ))
        }
        None => {
            let (tx, out) = channel(2);
            let mut request = ex.request.clone();
            let mut head_copy = Some(Box::new(ResponseCtx {
                head: clone_head(&resp.head),
                upstream_failure: resp.upstream_failure,
                upstream_addr: resp.upstream_addr,
            }));
            tokio::spawn(async move {
                let mut body = body;
                pump(&filters, &mut request, &mut head_copy, &mut body, &tx).await;
            });
            Ok(finish(*resp, ProxyBody::Channel(out)))
        }
    }
}

fn clone_head(head: &http::response::Parts) -> http::response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = head.status;
    parts.version = head.version;
    parts.headers = head.headers.clone();
    parts
}

/// Streams a response body through filters, chunk by chunk (see
/// [`chain::response_body_chunk`] for what a failure does).
async fn pump(
    filters: &[Arc<LoadedFilter>],
    request: &mut Option<Box<RequestCtx>>,
    response: &mut Option<Box<ResponseCtx>>,
    source: &mut ProxyBody,
    tx: &BodySender,
) {
    let mut saw_end = false;
    loop {
        let (data, eos) = match source.frame().await {
            None if saw_end => return,
            None => (Bytes::new(), true),
            Some(Err(e)) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => (d, source.is_end_stream()),
                Err(trailers) => {
                    if tx.send(Ok(trailers)).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
        };
        saw_end |= eos;
        let data = match chain::response_body_chunk(filters, request, response, data, eos).await {
            Ok(data) => data,
            Err(e) => {
                let _ = tx.send(Err(e.to_string().into())).await;
                return;
            }
        };
        if !data.is_empty() && tx.send(Ok(http_body::Frame::data(data))).await.is_err() {
            return;
        }
        if eos {
            return;
        }
    }
}
