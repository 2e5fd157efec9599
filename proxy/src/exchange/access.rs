//! Access logs: one line per request when its response ends (or is abandoned), as JSON
//! with every field or in the listener's format. Built on the worker when the response
//! ends, written by the sink's own thread.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::Response;

use super::{ConnInfo, Exchange};
use crate::body::{BodyEnd, ObservedBody, ProxyBody};
use crate::config::access::{LogField, LogPiece};
use crate::error::UpstreamFailure;
use crate::snapshot::AccessLog;
use weft_h1::wire::push_decimal;

/// What is known of a request before its response ends.
pub struct Entry {
    pub method: http::Method,
    pub authority: String,
    /// The path and query as the client sent them (a clone is a reference count).
    pub path: http::uri::PathAndQuery,
    pub route: Option<Arc<str>>,
    pub cluster: Option<Arc<str>>,
    pub listener: Arc<str>,
    /// The client's `ip:port`.
    pub client: Arc<str>,
    pub peer_identity: Option<String>,
    /// The request's trace, for its id.
    pub trace: Option<crate::trace::Trace>,
    pub properties: Vec<(String, String)>,
    /// Short codes known before the end (`NR` no route, `DPE` a malformed request).
    pub early_flags: &'static str,
}

/// What the end adds.
struct End {
    status: u16,
    request_bytes: u64,
    response_bytes: u64,
    duration: Duration,
    upstream: Option<SocketAddr>,
    attempts: u32,
    failure: Option<UpstreamFailure>,
    completed: bool,
}

/// The entry of an exchange that was routed.
pub fn entry(ex: &Exchange, conn: &ConnInfo, authority: String) -> Entry {
    let req = ex.request.as_deref();
    Entry {
        method: req.map_or(http::Method::GET, |r| r.method.clone()),
        authority,
        path: req.map_or_else(
            || http::uri::PathAndQuery::from_static("/"),
            |r| r.original_path.as_ref().unwrap_or(&r.path).clone(),
        ),
        route: Some(ex.route.name.clone()),
        cluster: req.map(|r| r.cluster.clone()),
        listener: conn.listener.clone(),
        client: conn.client_text(),
        peer_identity: conn.peer_identity.clone(),
        trace: ex.trace.clone(),
        // Request properties, then the attributes filters added to the trace span.
        properties: req.map_or_else(Vec::new, |r| {
            let mut all = r.properties.clone();
            all.extend(r.span_attributes.iter().cloned());
            all
        }),
        early_flags: "",
    }
}

/// Logs the exchange when `response`'s body ends.
pub fn attach(
    log: Arc<AccessLog>,
    entry: Entry,
    ex: &Exchange,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let status = response.status().as_u16();
    let outcome = ex.outcome.clone();
    let start = ex.start;
    let request_bytes = ex.request_bytes.clone();
    let (parts, body) = response.into_parts();
    let body = ObservedBody::wrap(body, move |end: BodyEnd| {
        let end = End {
            status,
            request_bytes: request_bytes.map_or(0, |n| n.load(Ordering::Relaxed)),
            response_bytes: end.bytes,
            duration: start.elapsed(),
            upstream: outcome.addr,
            attempts: outcome.attempts,
            failure: outcome.failure,
            completed: end.completed,
        };
        write_line(&log, &entry, &end);
    });
    Response::from_parts(parts, body)
}

/// Logs a request answered before it was routed (no route, malformed).
pub fn early(log: &AccessLog, entry: Entry, status: u16, start: Instant) {
    let end = End {
        status,
        request_bytes: 0,
        response_bytes: 0,
        duration: start.elapsed(),
        upstream: None,
        attempts: 0,
        failure: None,
        completed: true,
    };
    write_line(log, &entry, &end);
}

/// A counter of request body bytes, for the log.
pub fn count_request(body: ProxyBody) -> (ProxyBody, Arc<AtomicU64>) {
    let counter: Arc<AtomicU64> = Arc::default();
    let c = counter.clone();
    let body = ObservedBody::wrap(body, move |end| c.store(end.bytes, Ordering::Relaxed));
    (body, counter)
}

fn push_flags(out: &mut Vec<u8>, entry: &Entry, end: &End) {
    let before = out.len();
    out.extend_from_slice(entry.early_flags.as_bytes());
    let mut add = |code: &str| {
        if out.len() > before {
            out.push(b',');
        }
        out.extend_from_slice(code.as_bytes());
    };
    match end.failure {
        Some(UpstreamFailure::ConnectFailure) | Some(UpstreamFailure::ConnectTimeout) => add("UF"),
        Some(UpstreamFailure::Timeout) => add("UT"),
        Some(UpstreamFailure::Reset) => add("UR"),
        Some(UpstreamFailure::ProtocolError) => add("UPE"),
        Some(UpstreamFailure::NoEndpoints) => add("UH"),
        _ => {}
    }
    if end.attempts > 1 {
        add("RX");
    }
    if !end.completed {
        add("DC");
    }
    if out.len() == before {
        out.push(b'-');
    }
}

thread_local! {
    /// The line being built (a worker reuses one buffer for all its lines).
    static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
    /// The last second formatted, and its RFC 3339 text without the `Z`.
    static SECOND: std::cell::RefCell<(u64, String)> = const {
        std::cell::RefCell::new((u64::MAX, String::new()))
    };
}

/// Builds the line in this worker's buffer and hands it to the sink.
fn write_line(log: &AccessLog, entry: &Entry, end: &End) {
    LINE.with(|line| {
        let mut out = line.borrow_mut();
        out.clear();
        build(&mut out, log, entry, end);
        log.sink.write(&out);
    });
}

fn build(out: &mut Vec<u8>, log: &AccessLog, entry: &Entry, end: &End) {
    match &log.format {
        None => {
            out.push(b'{');
            for field in LogField::ALL {
                out.extend_from_slice(field.json_key().as_bytes());
                json_value(out, field, entry, end);
            }
            out.push(b'}');
        }
        Some(pieces) => {
            for p in pieces.iter() {
                match p {
                    LogPiece::Text(t) => out.extend_from_slice(t.as_bytes()),
                    LogPiece::Field(f) => text_value(out, *f, entry, end),
                }
            }
        }
    }
    out.push(b'\n');
}

/// The time the request arrived, as RFC 3339 with milliseconds (UTC); the seconds'
/// text is formatted once per second per worker.
fn push_time(out: &mut Vec<u8>, end: &End) {
    let at = SystemTime::now()
        .checked_sub(end.duration)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let text = humantime::format_rfc3339_seconds(at).to_string();
            cached.1 = text.trim_end_matches('Z').to_owned();
            cached.0 = secs;
        }
        out.extend_from_slice(cached.1.as_bytes());
    });
    out.push(b'.');
    push_padded(out, u64::from(since.subsec_millis()), 3);
    out.push(b'Z');
}

/// A number in decimal with at least `width` digits.
fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = 1;
    let mut m = n / 10;
    while m > 0 {
        digits += 1;
        m /= 10;
    }
    for _ in digits..width {
        out.push(b'0');
    }
    push_decimal(out, n);
}

/// A duration in milliseconds with three decimals.
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros() as u64;
    push_decimal(out, micros / 1000);
    out.push(b'.');
    push_padded(out, micros % 1000, 3);
}

/// An address as `ip:port` (`[ip]:port` for IPv6).
fn push_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, octet) in a.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u64::from(*octet));
            }
            out.push(b':');
            push_decimal(out, u64::from(a.port()));
        }
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Most values need no escaping: copied at once.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Bytes of multi-byte characters are all >= 0x80: copied as they are.
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                let _ = write!(out, "\\u{b:04x}");
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}

fn json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_value(out: &mut Vec<u8>, field: LogField, e: &Entry, end: &End) {
    match field {
        LogField::Time => {
            out.push(b'"');
            push_time(out, end);
            out.push(b'"');
        }
        LogField::Method => json_str(out, e.method.as_str()),
        LogField::Authority => json_str(out, &e.authority),
        LogField::Path => json_str(out, e.path.as_str()),
        LogField::Status => push_decimal(out, u64::from(end.status)),
        LogField::RequestBytes => push_decimal(out, end.request_bytes),
        LogField::ResponseBytes => push_decimal(out, end.response_bytes),
        LogField::DurationMs => push_millis(out, end.duration),
        LogField::Upstream => match end.upstream {
            Some(a) => {
                out.push(b'"');
                push_addr(out, a);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        },
        LogField::Attempts => push_decimal(out, u64::from(end.attempts)),
        LogField::Route => json_opt(out, e.route.as_deref()),
        LogField::Cluster => json_opt(out, e.cluster.as_deref()),
        LogField::Listener => json_str(out, &e.listener),
        LogField::Client => json_str(out, &e.client),
        LogField::PeerIdentity => json_opt(out, e.peer_identity.as_deref()),
        LogField::TraceId => match &e.trace {
            Some(t) => {
                out.push(b'"');
                t.push_trace_id(out);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        },
        LogField::Flags => {
            out.push(b'"');
            push_flags(out, e, end);
            out.push(b'"');
        }
        LogField::Properties => {
            out.push(b'{');
            for (i, (k, v)) in e.properties.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, k);
                out.push(b':');
                json_str(out, v);
            }
            out.push(b'}');
        }
    }
}

fn text_value(out: &mut Vec<u8>, field: LogField, e: &Entry, end: &End) {
    let dash =
        |out: &mut Vec<u8>, s: Option<&str>| out.extend_from_slice(s.unwrap_or("-").as_bytes());
    match field {
        LogField::Time => push_time(out, end),
        LogField::Method => out.extend_from_slice(e.method.as_str().as_bytes()),
        LogField::Authority => out.extend_from_slice(e.authority.as_bytes()),
        LogField::Path => out.extend_from_slice(e.path.as_str().as_bytes()),
        LogField::Status => push_decimal(out, u64::from(end.status)),
        LogField::RequestBytes => push_decimal(out, end.request_bytes),
        LogField::ResponseBytes => push_decimal(out, end.response_bytes),
        LogField::DurationMs => push_millis(out, end.duration),
        LogField::Upstream => match end.upstream {
            Some(a) => push_addr(out, a),
            None => out.push(b'-'),
        },
        LogField::Attempts => push_decimal(out, u64::from(end.attempts)),
        LogField::Route => dash(out, e.route.as_deref()),
        LogField::Cluster => dash(out, e.cluster.as_deref()),
        LogField::Listener => out.extend_from_slice(e.listener.as_bytes()),
        LogField::Client => out.extend_from_slice(e.client.as_bytes()),
        LogField::PeerIdentity => dash(out, e.peer_identity.as_deref()),
        LogField::TraceId => match &e.trace {
            Some(t) => t.push_trace_id(out),
            None => out.push(b'-'),
        },
        LogField::Flags => push_flags(out, e, end),
        LogField::Properties => {
            for (i, (k, v)) in e.properties.iter().enumerate() {
                if i > 0 {
                    out.push(b';');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b'=');
                out.extend_from_slice(v.as_bytes());
            }
        }
    }
}
