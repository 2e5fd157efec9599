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
    observe(
        log,
        entry,
        ex.outcome.clone(),
        ex.start,
        ex.request_bytes.clone(),
        response,
    )
}

/// Logs when `response`'s body ends, from what the exchange knew.
fn observe(
    log: Arc<AccessLog>,
    entry: Entry,
    outcome: crate::exchange::forward::UpstreamOutcome,
    start: Instant,
    request_bytes: Option<Arc<AtomicU64>>,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let status = response.status().as_u16();
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
                json_field(out, field, entry, end);
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
    push_three(out, u64::from(since.subsec_millis()));
    out.push(b'Z');
}

/// A number below 1,000 as exactly three digits.
fn push_three(out: &mut Vec<u8>, n: u64) {
    let n = n % 1000;
    out.extend_from_slice(&[
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

/// A number in decimal; one digit and three (counts, statuses) without a loop.
fn push_number(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=9 => out.push(b'0' + n as u8),
        100..=999 => push_three(out, n),
        _ => push_decimal(out, n),
    }
}

/// A duration in milliseconds with three decimals.
fn push_millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros() as u64;
    push_number(out, micros / 1000);
    out.push(b'.');
    push_three(out, micros % 1000);
}

/// An address as `ip:port` (`[ip]:port` for IPv6). The last address's text is kept
/// per worker: a cluster has few endpoints, and consecutive lines often name the same.
fn push_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    thread_local! {
        static LAST: std::cell::RefCell<(Option<SocketAddr>, Vec<u8>)> =
            const { std::cell::RefCell::new((None, Vec::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != Some(addr) {
            last.1.clear();
            match addr {
                SocketAddr::V4(a) => {
                    for (i, octet) in a.ip().octets().iter().enumerate() {
                        if i > 0 {
                            last.1.push(b'.');
                        }
                        push_decimal(&mut last.1, u64::from(*octet));
                    }
                    last.1.push(b':');
                    push_decimal(&mut last.1, u64::from(a.port()));
                }
                SocketAddr::V6(a) => {
                    let _ = write!(last.1, "{a}");
                }
            }
            last.0 = Some(addr);
        }
        out.extend_from_slice(&last.1);
    });
}

/// Whether any byte of `s` must be escaped in a JSON string (a control character, `"`
/// or `\`), eight bytes at a time.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether any byte of `w` is zero (exact as a yes or no).
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let special = |c: &[u8; 8]| {
        let w = u64::from_le_bytes(*c);
        // Bytes below 0x20: `w - 0x20` borrows into the high bit only for them (bytes
        // of 0x80 and above are masked out by `!w`).
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
        control || zero(w ^ (ONES * u64::from(b'"'))) || zero(w ^ (ONES * u64::from(b'\\')))
    };
    let (chunks, rest) = s.as_chunks::<8>();
    if chunks.iter().any(special) {
        return true;
    }
    match s.len() {
        // The last eight bytes, overlapping the chunks already checked.
        8.. if !rest.is_empty() => special(s[s.len() - 8..].try_into().expect("eight bytes")),
        _ => rest.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\'),
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Most values need no escaping: copied at once.
    if !needs_escape(s.as_bytes()) {
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

/// A field of a JSON line: its key (`LogField::json_key`, written here as a literal so
/// that no copy of unknown length is made), then its value.
fn json_field(out: &mut Vec<u8>, field: LogField, e: &Entry, end: &End) {
    // A constant-length copy compiles to a few moves.
    #[inline(always)]
    fn key(out: &mut Vec<u8>, k: &'static [u8]) {
        out.extend_from_slice(k);
    }
    match field {
        LogField::Time => {
            key(out, b"\"time\":");
            out.push(b'"');
            push_time(out, end);
            out.push(b'"');
        }
        LogField::Method => {
            key(out, b",\"method\":");
            json_str(out, e.method.as_str());
        }
        LogField::Authority => {
            key(out, b",\"authority\":");
            json_str(out, &e.authority);
        }
        LogField::Path => {
            key(out, b",\"path\":");
            json_str(out, e.path.as_str());
        }
        LogField::Status => {
            key(out, b",\"status\":");
            push_number(out, u64::from(end.status));
        }
        LogField::RequestBytes => {
            key(out, b",\"request_bytes\":");
            push_number(out, end.request_bytes);
        }
        LogField::ResponseBytes => {
            key(out, b",\"response_bytes\":");
            push_number(out, end.response_bytes);
        }
        LogField::DurationMs => {
            key(out, b",\"duration_ms\":");
            push_millis(out, end.duration);
        }
        LogField::Upstream => {
            key(out, b",\"upstream\":");
            match end.upstream {
                Some(a) => {
                    out.push(b'"');
                    push_addr(out, a);
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        LogField::Attempts => {
            key(out, b",\"attempts\":");
            push_number(out, u64::from(end.attempts));
        }
        LogField::Route => {
            key(out, b",\"route\":");
            json_opt(out, e.route.as_deref());
        }
        LogField::Cluster => {
            key(out, b",\"cluster\":");
            json_opt(out, e.cluster.as_deref());
        }
        LogField::Listener => {
            key(out, b",\"listener\":");
            json_str(out, &e.listener);
        }
        LogField::Client => {
            key(out, b",\"client\":");
            json_str(out, &e.client);
        }
        LogField::PeerIdentity => {
            key(out, b",\"peer_identity\":");
            json_opt(out, e.peer_identity.as_deref());
        }
        LogField::TraceId => {
            key(out, b",\"trace_id\":");
            match &e.trace {
                Some(t) => {
                    out.push(b'"');
                    t.push_trace_id(out);
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        LogField::Flags => {
            key(out, b",\"flags\":");
            out.push(b'"');
            push_flags(out, e, end);
            out.push(b'"');
        }
        LogField::Properties => {
            key(out, b",\"properties\":");
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
        LogField::Status => push_number(out, u64::from(end.status)),
        LogField::RequestBytes => push_number(out, end.request_bytes),
        LogField::ResponseBytes => push_number(out, end.response_bytes),
        LogField::DurationMs => push_millis(out, end.duration),
        LogField::Upstream => match end.upstream {
            Some(a) => push_addr(out, a),
            None => out.push(b'-'),
        },
        LogField::Attempts => push_number(out, u64::from(end.attempts)),
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

/// One request's access-log work, for the criterion benchmark in
/// `proxy/benches/observe.rs`: the entry copied out of the request as `entry` does, the
/// response body observed, driven to its end, and the line built and handed to the sink.
#[doc(hidden)]
pub mod bench {
    use super::*;

    /// What stays the same from request to request.
    pub struct OneRequest {
        log: Arc<AccessLog>,
        listener: Arc<str>,
        route: Arc<str>,
        cluster: Arc<str>,
        client: Arc<str>,
        authority: String,
        path: http::uri::PathAndQuery,
        upstream: SocketAddr,
    }

    impl OneRequest {
        /// JSON lines appended to the file at `path` by the sink's writer thread.
        pub fn new(path: &std::path::Path) -> std::io::Result<OneRequest> {
            let registry = crate::metrics::Registry::default();
            let sink = crate::logsink::sink(
                &crate::logsink::Destination::File(path.to_owned()),
                &registry,
            )?;
            Ok(OneRequest {
                log: Arc::new(AccessLog { sink, format: None }),
                listener: "edge".into(),
                route: "api".into(),
                cluster: "backend".into(),
                client: "127.0.0.1:54321".into(),
                authority: "api.example.com".into(),
                path: http::uri::PathAndQuery::from_static("/v1/orders?page=2"),
                upstream: "127.0.0.1:8081".parse().expect("an address"),
            })
        }

        /// Logs one `GET` answered 200 with a 24-byte body.
        pub fn run(&self) {
            let entry = Entry {
                method: http::Method::GET,
                authority: self.authority.clone(),
                path: self.path.clone(),
                route: Some(self.route.clone()),
                cluster: Some(self.cluster.clone()),
                listener: self.listener.clone(),
                client: self.client.clone(),
                peer_identity: None,
                trace: None,
                properties: Vec::new(),
                early_flags: "",
            };
            let outcome = crate::exchange::forward::UpstreamOutcome {
                attempts: 1,
                failure: None,
                addr: Some(self.upstream),
            };
            let response = Response::new(ProxyBody::full("hello from the upstream\n"));
            let response = observe(
                self.log.clone(),
                entry,
                outcome,
                Instant::now(),
                None,
                response,
            );
            let mut body = std::pin::pin!(response.into_body());
            use http_body::Body as _;
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            while let std::task::Poll::Ready(Some(_)) = body.as_mut().poll_frame(&mut cx) {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_check_agrees_with_the_byte_by_byte_one() {
        let naive = |s: &[u8]| s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        // Every byte value at every position of strings up to 19 bytes long.
        for len in 1..20 {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[pos] = b;
                    assert_eq!(needs_escape(&s), naive(&s), "{s:?}");
                }
            }
        }
        assert!(!needs_escape(b""));
        assert!(!needs_escape(
            "h\u{e9}llo w\u{f6}rld / caf\u{e9} \u{1f600}".as_bytes()
        ));
    }

    #[test]
    fn json_strings_round_trip() {
        for s in [
            "plain",
            "a\"b",
            "back\\slash",
            "line\nbreak\t\u{1}",
            "caf\u{e9}",
            "",
        ] {
            let mut out = Vec::new();
            json_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn addresses_are_written_as_the_formatter_does() {
        for a in [
            "127.0.0.1:80",
            "10.20.30.40:65535",
            "[::1]:8080",
            "127.0.0.1:80",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut out = Vec::new();
            push_addr(&mut out, addr);
            assert_eq!(String::from_utf8(out).unwrap(), addr.to_string());
        }
    }

    #[test]
    fn json_lines_have_every_key_in_order() {
        let entry = Entry {
            method: http::Method::POST,
            authority: "a.example".into(),
            path: http::uri::PathAndQuery::from_static("/x?y=z"),
            route: Some("r".into()),
            cluster: None,
            listener: "edge".into(),
            client: "127.0.0.1:1".into(),
            peer_identity: None,
            trace: None,
            properties: vec![("k".into(), "v\n".into())],
            early_flags: "",
        };
        let end = End {
            status: 503,
            request_bytes: 12,
            response_bytes: 0,
            duration: Duration::from_micros(1500),
            upstream: Some("10.0.0.1:80".parse().unwrap()),
            attempts: 2,
            failure: Some(UpstreamFailure::Reset),
            completed: true,
        };
        let mut out = Vec::new();
        let mut at = 1;
        for f in LogField::ALL {
            json_field(&mut out, f, &entry, &end);
            let key = f.json_key().as_bytes();
            assert_eq!(&out[at - 1..at - 1 + key.len()], key);
            at = out.len() + 1;
        }
        let line = format!("{{{}}}", String::from_utf8(out).unwrap());
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["status"], 503);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["path"], "/x?y=z");
        assert_eq!(v["upstream"], "10.0.0.1:80");
        assert_eq!(v["flags"], "UR,RX");
        assert_eq!(v["cluster"], serde_json::Value::Null);
        assert_eq!(v["properties"]["k"], "v\n");
    }

    #[test]
    fn numbers_are_written_as_the_formatter_does() {
        for n in (0..2000).chain([9_999, 10_000, 123_456_789, u64::MAX]) {
            let mut out = Vec::new();
            push_number(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
        let mut out = Vec::new();
        push_millis(&mut out, Duration::from_micros(12_345));
        push_millis(&mut out, Duration::from_micros(7));
        assert_eq!(out, b"12.3450.007");
    }
}
