//! Access logs: one line per request when its response ends (or is abandoned), as JSON
//! with every field or in the listener's format. Built on the worker when the response
//! ends, written by the sink's own thread.

use std::fmt::Write as _;
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

fn push_flags(out: &mut String, entry: &Entry, end: &End) {
    let before = out.len();
    out.push_str(entry.early_flags);
    let mut add = |code: &str| {
        if out.len() > before {
            out.push(',');
        }
        out.push_str(code);
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
        out.push('-');
    }
}

thread_local! {
    /// The line being built (a worker reuses one buffer for all its lines).
    static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
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
        log.sink.write(out.as_bytes());
    });
}

fn build(out: &mut String, log: &AccessLog, entry: &Entry, end: &End) {
    match &log.format {
        None => {
            out.push('{');
            for field in LogField::ALL {
                out.push_str(field.json_key());
                json_value(out, field, entry, end);
            }
            out.push('}');
        }
        Some(pieces) => {
            for p in pieces.iter() {
                match p {
                    LogPiece::Text(t) => out.push_str(t),
                    LogPiece::Field(f) => text_value(out, *f, entry, end),
                }
            }
        }
    }
    out.push('\n');
}

/// The time the request arrived, as RFC 3339 with milliseconds (UTC); the seconds'
/// text is formatted once per second per worker.
fn push_time(out: &mut String, end: &End) {
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
        out.push_str(&cached.1);
    });
    out.push('.');
    push_padded(out, u64::from(since.subsec_millis()), 3);
    out.push('Z');
}

/// Two-digit pairs, `00` to `99`.
const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";

/// A number in decimal (two digits a step).
fn push_u64(out: &mut String, mut n: u64) {
    if n < 10 {
        out.push(char::from(b'0' + n as u8));
        return;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("digits"));
}

/// A number in decimal with at least `width` digits.
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = 1;
    let mut m = n / 10;
    while m > 0 {
        digits += 1;
        m /= 10;
    }
    for _ in digits..width {
        out.push('0');
    }
    push_u64(out, n);
}

/// A duration in milliseconds with three decimals.
fn push_millis(out: &mut String, d: Duration) {
    let micros = d.as_micros() as u64;
    push_u64(out, micros / 1000);
    out.push('.');
    push_padded(out, micros % 1000, 3);
}

/// An address as `ip:port` (`[ip]:port` for IPv6).
fn push_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, octet) in a.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(*octet));
            }
            out.push(':');
            push_u64(out, u64::from(a.port()));
        }
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    // Most values need no escaping: copied at once.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

fn json_value(out: &mut String, field: LogField, e: &Entry, end: &End) {
    match field {
        LogField::Time => {
            out.push('"');
            push_time(out, end);
            out.push('"');
        }
        LogField::Method => json_str(out, e.method.as_str()),
        LogField::Authority => json_str(out, &e.authority),
        LogField::Path => json_str(out, e.path.as_str()),
        LogField::Status => push_u64(out, u64::from(end.status)),
        LogField::RequestBytes => push_u64(out, end.request_bytes),
        LogField::ResponseBytes => push_u64(out, end.response_bytes),
        LogField::DurationMs => push_millis(out, end.duration),
        LogField::Upstream => match end.upstream {
            Some(a) => {
                out.push('"');
                push_addr(out, a);
                out.push('"');
            }
            None => out.push_str("null"),
        },
        LogField::Attempts => push_u64(out, u64::from(end.attempts)),
        LogField::Route => json_opt(out, e.route.as_deref()),
        LogField::Cluster => json_opt(out, e.cluster.as_deref()),
        LogField::Listener => json_str(out, &e.listener),
        LogField::Client => json_str(out, &e.client),
        LogField::PeerIdentity => json_opt(out, e.peer_identity.as_deref()),
        LogField::TraceId => match &e.trace {
            Some(t) => {
                out.push('"');
                t.push_trace_id(out);
                out.push('"');
            }
            None => out.push_str("null"),
        },
        LogField::Flags => {
            out.push('"');
            push_flags(out, e, end);
            out.push('"');
        }
        LogField::Properties => {
            out.push('{');
            for (i, (k, v)) in e.properties.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_str(out, k);
                out.push(':');
                json_str(out, v);
            }
            out.push('}');
        }
    }
}

fn text_value(out: &mut String, field: LogField, e: &Entry, end: &End) {
    let dash = |out: &mut String, s: Option<&str>| out.push_str(s.unwrap_or("-"));
    match field {
        LogField::Time => push_time(out, end),
        LogField::Method => out.push_str(e.method.as_str()),
        LogField::Authority => out.push_str(&e.authority),
        LogField::Path => out.push_str(e.path.as_str()),
        LogField::Status => push_u64(out, u64::from(end.status)),
        LogField::RequestBytes => push_u64(out, end.request_bytes),
        LogField::ResponseBytes => push_u64(out, end.response_bytes),
        LogField::DurationMs => push_millis(out, end.duration),
        LogField::Upstream => match end.upstream {
            Some(a) => push_addr(out, a),
            None => out.push('-'),
        },
        LogField::Attempts => push_u64(out, u64::from(end.attempts)),
        LogField::Route => dash(out, e.route.as_deref()),
        LogField::Cluster => dash(out, e.cluster.as_deref()),
        LogField::Listener => out.push_str(&e.listener),
        LogField::Client => out.push_str(&e.client),
        LogField::PeerIdentity => dash(out, e.peer_identity.as_deref()),
        LogField::TraceId => match &e.trace {
            Some(t) => t.push_trace_id(out),
            None => out.push('-'),
        },
        LogField::Flags => push_flags(out, e, end),
        LogField::Properties => {
            for (i, (k, v)) in e.properties.iter().enumerate() {
                if i > 0 {
                    out.push(';');
                }
                out.push_str(k);
                out.push('=');
                out.push_str(v);
            }
        }
    }
}
