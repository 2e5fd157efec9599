//! One request, in phases.
//!
//! [`serve`] is the whole story of a request, in order:
//! route → request headers → request body → upstream (with the response-headers phase
//! deciding on retries) → response body → log. Each phase lives in its own module;
//! every call into a filter and every decision about its answer is in [`chain`];
//! every error becomes a response in one place, [`error_response`].

pub(crate) mod access;
mod answer;
mod chain;
mod forward;
pub mod grpc;
mod headers;
mod intermediary;
mod local;
mod log;
mod path;
mod request;
mod response;
mod route;
pub(crate) mod upgrade;

pub use answer::error_response;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};

use crate::body::h1::ContinueRelay;
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::host::RequestCtx;
use crate::snapshot::{Route, Snapshot};

/// What a connection knows about itself.
pub struct ConnInfo {
    /// The client's address.
    pub client: SocketAddr,
    /// The client's IP as a header value, made once per connection for
    /// `X-Forwarded-For` (see [`ConnInfo::client_ip_value`]).
    pub client_ip: http::HeaderValue,
    /// The listener's name.
    pub listener: Arc<str>,
    /// Where the listener was in the snapshot the connection started on (a hint:
    /// reloads may move it).
    pub listener_hint: usize,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The client's verified identity (mTLS).
    pub peer_identity: Option<String>,
    /// `x-forwarded-client-cert` for its requests (the listener's
    /// `forward_client_cert`); any the client sent is removed either way.
    pub forward_client_cert: Option<http::HeaderValue>,
    /// The client's address as `ip:port` text, made once per connection when the
    /// access log first needs it.
    pub client_text: std::sync::OnceLock<Arc<str>>,
    /// Whether weft's own HTTP/1.1 server serves the connection: it holds each request
    /// head to the listener's `max_request_headers` as it reads (otherwise the exchange
    /// does), and can write an upstream's response head as received (hyper cannot).
    pub own_h1: bool,
}

impl ConnInfo {
    /// The client's address as `ip:port` text.
    pub fn client_text(&self) -> Arc<str> {
        self.client_text
            .get_or_init(|| self.client.to_string().into())
            .clone()
    }

    /// The client's IP address as a header value.
    pub fn client_ip_value(client: SocketAddr) -> http::HeaderValue {
        http::HeaderValue::from_maybe_shared(bytes::Bytes::from(client.ip().to_string()))
            .expect("an IP address is a valid header value")
    }
}

/// The state of one request as it goes through the phases.
pub struct Exchange {
    /// The snapshot the request started on; it finishes on it.
    pub snapshot: Arc<Snapshot>,
    /// The route that took it.
    pub route: Arc<Route>,
    /// The request as the filters see it; lent to each filter call.
    pub request: Option<Box<RequestCtx>>,
    /// How many filters' request phase ran (the response phase runs on those).
    pub request_ran: usize,
    /// When it arrived.
    pub start: Instant,
    /// A response a streaming request-body filter gave instead of the upstream's.
    pub body_verdict: Option<tokio::sync::oneshot::Receiver<crate::host::LocalResponse>>,
    /// What happened upstream, for the log phase.
    pub outcome: forward::UpstreamOutcome,
    /// Request body bytes read from the client (counted only for the log phase, and
    /// only when there is a body).
    pub request_bytes: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The protocol the client asked to switch to (see [`crate::exchange::upgrade`]).
    pub upgrade: Option<http::HeaderValue>,
    /// Whether the response's headers may reach the client as the upstream's lines
    /// (an HTTP/1.1 client, not `HEAD`, no upgrade; see [`weft_h1::RawHeaders`]).
    pub raw_response_ok: bool,
    /// How the client's request body streams (only when there is one): the route's
    /// timeout counts from its end.
    pub progress: Option<Arc<crate::body::Progress>>,
    /// The listener's longest stall of a request body.
    pub body_idle_timeout: std::time::Duration,
    /// Releases the client's `100 Continue` when the upstream sends its own
    /// (`proxy_100_continue`); lent to the first attempt.
    pub continue_relay: Option<ContinueRelay>,
    /// The request's trace, when tracing is configured.
    pub trace: Option<crate::trace::Trace>,
}

impl Exchange {
    /// The request. It is only ever absent while lent to a filter call.
    pub fn req(&self) -> &RequestCtx {
        self.request
            .as_deref()
            .expect("request is back after every filter call")
    }

    /// The request, to change.
    pub fn req_mut(&mut self) -> &mut RequestCtx {
        self.request
            .as_deref_mut()
            .expect("request is back after every filter call")
    }
}

/// Serves one request on the snapshot current when it arrived.
pub async fn serve(
    snapshot: Arc<Snapshot>,
    conn: &ConnInfo,
    req: Request<ProxyBody>,
) -> Response<ProxyBody> {
    let start = crate::clock::now();
    let (mut parts, body) = req.into_parts();
    // gRPC: errors answered as gRPC statuses, `grpc-timeout` honoured.
    let grpc = grpc::is_grpc(&parts);
    let answer = |e: &ProxyError| {
        let mut r = error_response(e);
        if grpc {
            grpc::answer(&mut r);
        }
        r
    };
    let Some(listener) = snapshot.listener(&conn.listener, conn.listener_hint) else {
        return answer(&ProxyError::ListenerRemoved(conn.listener.to_string()));
    };
    if crate::overload::refuses_request() {
        return answer(&ProxyError::Overloaded);
    }
    if !conn.own_h1 {
        if let Err(e) = request::head_within(&parts, listener.http.max_request_headers) {
            return answer(&e);
        }
    }
    let grpc_timeout = if grpc {
        grpc::timeout(&parts.headers)
    } else {
        None
    };

    let upgrade = upgrade::requested(&parts);
    let raw_response_ok = conn.own_h1
        && upgrade.is_none()
        && parts.version <= http::Version::HTTP_11
        && parts.method != http::Method::HEAD;
    // What the access log needs if routing fails (only when there is one).
    // (Reference-counted copies: text is made only if routing fails.)
    let early = listener.access_log.as_ref().map(|_| {
        let authority = (
            parts.uri.authority().cloned(),
            parts.headers.get(http::header::HOST).cloned(),
        );
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        (parts.method.clone(), authority, path)
    });
    // Route.
    // TRACE and OPTIONS with `Max-Forwards: 0` end here.
    if let Some(r) = intermediary::max_forwards(&mut parts) {
        return r;
    }
    // `proxy_100_continue`: the upstream's `100 Continue` is relayed to the client.
    let continue_relay = parts.extensions.remove::<ContinueRelay>();
    let (route, request) = match request::admit(listener, conn, parts, continue_relay.is_some()) {
        Ok(admitted) => admitted,
        Err(e) => {
            let response = answer(&e);
            if let (Some(log), Some((method, (authority, host), path))) =
                (&listener.access_log, early)
            {
                let authority = match (authority, host) {
                    (Some(a), _) => a.as_str().to_owned(),
                    (None, Some(h)) => h.to_str().unwrap_or_default().to_owned(),
                    (None, None) => String::new(),
                };
                let flag = match e {
                    ProxyError::NoRoute { .. } => "NR",
                    _ => "DPE",
                };
                let entry = access::Entry {
                    method,
                    authority,
                    path,
                    route: None,
                    cluster: None,
                    listener: conn.listener.clone(),
                    client: conn.client_text(),
                    peer_identity: conn.peer_identity.clone(),
                    trace: None,
                    properties: Vec::new(),
                    early_flags: flag,
                };
                access::early(log, entry, response.status().as_u16(), start);
            }
            return response;
        }
    };
    let route = route.clone();
    let mut request = request;
    request.arrived = Some(start);
    if let Some(g) = grpc_timeout {
        request.route_timeout = request.route_timeout.min(g);
    }
    let trace = snapshot.tracing.as_ref().map(|t| {
        let incoming = request.headers.get(crate::trace::TRACEPARENT);
        let trace = crate::trace::Trace::start(
            incoming.map(|v| v.as_bytes()),
            t.sampling,
            t.tracer.as_ref(),
            start,
        );
        request.trace = Some(trace.clone());
        trace
    });
    // What the request's span says, taken before filters change the request.
    let span_name = trace
        .as_ref()
        .filter(|t| t.recording())
        .map(|_| (request.method.clone(), request.path.path().to_owned()));
    let mut ex = Exchange {
        snapshot: snapshot.clone(),
        route,
        request: Some(request),
        request_ran: 0,
        start,
        body_verdict: None,
        outcome: forward::UpstreamOutcome::default(),
        request_bytes: None,
        upgrade,
        raw_response_ok,
        progress: None,
        body_idle_timeout: listener.http.body_idle_timeout,
        continue_relay,
        trace,
    };
    let body = if http_body::Body::is_end_stream(&body) {
        body
    } else {
        let (body, progress) = crate::body::ProgressBody::wrap(body, start);
        ex.progress = Some(progress);
        body
    };

    // The authority as the client sent it (an unfiltered request lends it to the
    // upstream attempt).
    let logged_authority = listener
        .access_log
        .as_ref()
        .map(|_| ex.req().authority.clone());
    let body = match &listener.access_log {
        Some(_) if !http_body::Body::is_end_stream(&body) => {
            let (body, counter) = access::count_request(body);
            ex.request_bytes = Some(counter);
            body
        }
        _ => body,
    };
    let response = match run(&mut ex, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(route = %ex.route.name, source = e.source_of().as_str(), "{e}");
            error_response(&e)
        }
    };
    let mut response = response;
    if grpc && grpc::needs_answer(&response) {
        grpc::answer(&mut response);
    }
    if let Some(req) = ex.request.as_deref_mut() {
        for (name, value) in req.response_headers.drain(..) {
            response.headers_mut().append(name, value);
        }
    }
    if let Some(name) = &listener.via {
        let version = response.version();
        intermediary::add_via(response.headers_mut(), version, name);
    }
    if let Some(v) = &listener.alt_svc {
        response
            .headers_mut()
            .insert(http::header::ALT_SVC, v.clone());
    }
    if let (Some(t), Some((method, path))) = (&ex.trace, span_name) {
        trace_request(&ex, conn, t, method, path, &response);
    }
    ex.route.stats.count(response.status());
    ex.route
        .stats
        .latency
        .observe(start.elapsed().as_secs_f64());
    let response = match &listener.access_log {
        Some(log) => {
            let entry = access::entry(&ex, conn, logged_authority.unwrap_or_default());
            access::attach(log.clone(), entry, &ex, response)
        }
        None => response,
    };
    log::attach(ex, response)
}

/// Completes a sampled request's own span: what was asked, what was answered, and the
/// attributes filters added.
fn trace_request(
    ex: &Exchange,
    conn: &ConnInfo,
    trace: &crate::trace::Trace,
    method: http::Method,
    path: String,
    response: &Response<ProxyBody>,
) {
    use crate::trace::export::attr;
    let status = response.status();
    let mut attributes = vec![
        attr("http.request.method", method.as_str().to_owned()),
        attr("url.path", path),
        attr("http.response.status_code", i64::from(status.as_u16())),
        attr("client.address", conn.client.ip().to_string()),
        attr("weft.listener", conn.listener.to_string()),
        attr("weft.route", ex.route.name.to_string()),
        attr("weft.cluster", ex.route.cluster.to_string()),
        attr("weft.attempts", i64::from(ex.outcome.attempts)),
    ];
    if let Some(req) = ex.request.as_deref() {
        attributes.push(attr("server.address", req.authority.clone()));
        for (k, v) in &req.span_attributes {
            attributes.push(opentelemetry::KeyValue::new(k.clone(), v.clone()));
        }
    }
    let error = status.is_server_error().then(|| {
        match response
            .headers()
            .get("x-weft-error")
            .and_then(|v| v.to_str().ok())
        {
            Some(why) => format!("{status}: {why}"),
            None => status.to_string(),
        }
    });
    trace.finish(
        format!("{method} {}", ex.route.name),
        Instant::now(),
        attributes,
        error,
    );
}

/// The phases after routing. A route without filters takes a short path whose future
/// stays small; filter phases are boxed, so only requests that run filters carry them.
async fn run(ex: &mut Exchange, body: ProxyBody) -> Result<Response<ProxyBody>, ProxyError> {
    if ex.route.chain.is_empty() {
        let body = request::unfiltered(body);
        let (head, body) = forward::forward(ex, body).await?;
        return Ok(response::finish(*head, body));
    }
    Box::pin(run_filtered(ex, body)).await
}

async fn run_filtered(
    ex: &mut Exchange,
    body: ProxyBody,
) -> Result<Response<ProxyBody>, ProxyError> {
    // Phase 1: request headers.
    if let chain::RequestDecision::Respond(local) = chain::request_headers(ex).await? {
        return response::local(ex, local).await;
    }
    // Phase 2: request body (streams straight through unless a filter asked for it).
    let body = match request::body(ex, body).await? {
        request::BodyOutcome::Forward(body) => body,
        request::BodyOutcome::Respond(local) => return response::local(ex, local).await,
    };
    // Upstream, with phase 3 (response headers) deciding whether to retry.
    let forwarded = forward::forward(ex, body).await;
    if let Some(local) = ex.body_verdict.as_mut().and_then(|v| v.try_recv().ok()) {
        return response::local(ex, local).await;
    }
    let (head, body) = forwarded?;
    // Phase 4: response body.
    response::body(ex, head, body).await
}
