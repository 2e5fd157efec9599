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
    pub method: String,
    pub authority: String,
    pub path: String,
    pub route: Option<Arc<str>>,
    pub cluster: Option<Arc<str>>,
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub peer_identity: Option<String>,
    pub trace_id: Option<String>,
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
        method: req.map_or_else(String::new, |r| r.method.to_string()),
        authority,
        path: req.map_or_else(String::new, |r| {
            r.original_path
                .as_ref()
                .unwrap_or(&r.path)
                .as_str()
                .to_owned()
        }),
        route: Some(ex.route.name.clone()),
        cluster: req.map(|r| r.cluster.clone()),
        listener: conn.listener.clone(),
        client: conn.client,
        peer_identity: conn.peer_identity.clone(),
        trace_id: req.and_then(|r| r.trace_id.clone()),
        properties: req.map_or_else(Vec::new, |r| r.properties.clone()),
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
        log.sink.write(&line(&log, &entry, &end));
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
    log.sink.write(&line(log, &entry, &end));
}

/// A counter of request body bytes, for the log.
pub fn count_request(body: ProxyBody) -> (ProxyBody, Arc<AtomicU64>) {
    let counter: Arc<AtomicU64> = Arc::default();
    let c = counter.clone();
    let body = ObservedBody::wrap(body, move |end| c.store(end.bytes, Ordering::Relaxed));
    (body, counter)
}

fn flags(entry: &Entry, end: &End) -> String {
    let mut f = String::from(entry.early_flags);
    let mut add = |code: &str| {
        if !f.is_empty() {
            f.push(',');
        }
        f.push_str(code);
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
    if f.is_empty() {
        f.push('-');
    }
    f
}

fn line(log: &AccessLog, entry: &Entry, end: &End) -> Vec<u8> {
    let mut out = String::with_capacity(384);
    match &log.format {
        None => {
            out.push('{');
            for (i, field) in LogField::ALL.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(field.name());
                out.push_str("\":");
                json_value(&mut out, field, entry, end);
            }
            out.push('}');
        }
        Some(pieces) => {
            for p in pieces.iter() {
                match p {
                    LogPiece::Text(t) => out.push_str(t),
                    LogPiece::Field(f) => text_value(&mut out, *f, entry, end),
                }
            }
        }
    }
    out.push('\n');
    out.into_bytes()
}

fn time(end: &End) -> String {
    let at = SystemTime::now()
        .checked_sub(end.duration)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    humantime::format_rfc3339_millis(at).to_string()
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
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
        LogField::Time => json_str(out, &time(end)),
        LogField::Method => json_str(out, &e.method),
        LogField::Authority => json_str(out, &e.authority),
        LogField::Path => json_str(out, &e.path),
        LogField::Status => {
            let _ = write!(out, "{}", end.status);
        }
        LogField::RequestBytes => {
            let _ = write!(out, "{}", end.request_bytes);
        }
        LogField::ResponseBytes => {
            let _ = write!(out, "{}", end.response_bytes);
        }
        LogField::DurationMs => {
            let _ = write!(out, "{:.3}", end.duration.as_secs_f64() * 1e3);
        }
        LogField::Upstream => json_opt(out, end.upstream.map(|a| a.to_string()).as_deref()),
        LogField::Attempts => {
            let _ = write!(out, "{}", end.attempts);
        }
        LogField::Route => json_opt(out, e.route.as_deref()),
        LogField::Cluster => json_opt(out, e.cluster.as_deref()),
        LogField::Listener => json_str(out, &e.listener),
        LogField::Client => json_str(out, &e.client.to_string()),
        LogField::PeerIdentity => json_opt(out, e.peer_identity.as_deref()),
        LogField::TraceId => json_opt(out, e.trace_id.as_deref()),
        LogField::Flags => json_str(out, &flags(e, end)),
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
    let dash = |s: Option<&str>| s.unwrap_or("-").to_owned();
    let v = match field {
        LogField::Time => time(end),
        LogField::Method => e.method.clone(),
        LogField::Authority => e.authority.clone(),
        LogField::Path => e.path.clone(),
        LogField::Status => end.status.to_string(),
        LogField::RequestBytes => end.request_bytes.to_string(),
        LogField::ResponseBytes => end.response_bytes.to_string(),
        LogField::DurationMs => format!("{:.3}", end.duration.as_secs_f64() * 1e3),
        LogField::Upstream => end.upstream.map_or_else(|| "-".into(), |a| a.to_string()),
        LogField::Attempts => end.attempts.to_string(),
        LogField::Route => dash(e.route.as_deref()),
        LogField::Cluster => dash(e.cluster.as_deref()),
        LogField::Listener => e.listener.to_string(),
        LogField::Client => e.client.to_string(),
        LogField::PeerIdentity => dash(e.peer_identity.as_deref()),
        LogField::TraceId => dash(e.trace_id.as_deref()),
        LogField::Flags => flags(e, end),
        LogField::Properties => e
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";"),
    };
    out.push_str(&v);
}
