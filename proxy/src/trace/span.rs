//! One request's trace: its ids, whether it is sampled, and (when it is) the spans the
//! proxy records for it: the request itself (kind server), each upstream attempt (kind
//! client, whose id is the `traceparent` the upstream receives) and each filter phase
//! call (kind internal). They are handed to the exporter when the last holder of the
//! [`Trace`] lets it go, after the response's last filter call.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use opentelemetry::KeyValue;
use parking_lot::Mutex;

use super::context::{self, Parent, SAMPLED};
use super::export::Tracer;

/// What a span is, in OpenTelemetry's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The proxy serving the request.
    Server,
    /// An upstream attempt.
    Client,
    /// A filter call.
    Internal,
}

/// A finished span of the request, not yet exported.
#[derive(Debug)]
pub struct SpanRec {
    /// Its id.
    pub id: u64,
    /// The span it is part of (the request's span for attempts and filter calls).
    pub parent: u64,
    /// Its name.
    pub name: Cow<'static, str>,
    /// Its kind.
    pub kind: Kind,
    /// When it started.
    pub start: Instant,
    /// When it ended.
    pub end: Instant,
    /// What it says.
    pub attributes: Vec<KeyValue>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// The request's own span, completed when the response head is known.
#[derive(Default)]
struct Root {
    name: String,
    end: Option<Instant>,
    attributes: Vec<KeyValue>,
    error: Option<String>,
}

/// A request's trace context: its ids, always (a copy costs no allocation), and, when
/// it is sampled and there is an exporter, the recorder its spans go to.
#[derive(Clone)]
pub struct Trace {
    trace_id: u128,
    /// The proxy's span for the request.
    span_id: u64,
    flags: u8,
    recorder: Option<Arc<Recorder>>,
}

/// The spans of a sampled request, exported when the last holder lets go.
struct Recorder {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    /// The caller's span, when the request came with a `traceparent`.
    parent: Option<u64>,
    start: Instant,
    start_wall: SystemTime,
    spans: Mutex<Vec<SpanRec>>,
    root: Mutex<Root>,
    tracer: Arc<Tracer>,
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trace")
            .field("trace_id", &context::trace_id_hex(self.trace_id))
            .field("span_id", &self.span_id)
            .field("sampled", &self.sampled())
            .field("recording", &self.recording())
            .finish()
    }
}

impl Trace {
    /// Starts the trace of a request that arrived at `start` with `traceparent`
    /// (continued when valid, a new trace otherwise). A new trace is sampled with
    /// probability `ratio`; a continued one as the caller decided. Spans are recorded
    /// only when sampled and there is somewhere to export them.
    pub fn start(
        traceparent: Option<&[u8]>,
        ratio: f64,
        tracer: Option<&Arc<Tracer>>,
        start: Instant,
    ) -> Trace {
        let (trace_id, parent, flags) = match traceparent.and_then(context::parse) {
            Some(Parent {
                trace_id,
                span_id,
                flags,
            }) => (trace_id, Some(span_id), flags & SAMPLED),
            None => {
                let sampled = context::sample(ratio);
                (
                    context::new_trace_id(),
                    None,
                    if sampled { SAMPLED } else { 0 },
                )
            }
        };
        let span_id = context::new_span_id();
        let recorder = tracer.filter(|_| flags & SAMPLED != 0).map(|tracer| {
            Arc::new(Recorder {
                trace_id,
                span_id,
                flags,
                parent,
                start,
                start_wall: SystemTime::now() - start.elapsed(),
                spans: Mutex::new(Vec::new()),
                root: Mutex::new(Root::default()),
                tracer: tracer.clone(),
            })
        });
        Trace {
            trace_id,
            span_id,
            flags,
            recorder,
        }
    }

    /// Whether the proxy records and exports this request's spans.
    pub fn recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// Whether the trace is sampled (the flag passed on upstream).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace id as 32 hex digits.
    pub fn trace_id_hex(&self) -> String {
        context::trace_id_hex(self.trace_id)
    }

    /// Appends the trace id as 32 hex digits.
    pub fn push_trace_id(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 32];
        context::put_hex(&mut buf, self.trace_id);
        out.extend_from_slice(&buf);
    }

    /// The proxy's span for the request.
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// A new span id and the `traceparent` naming it, for an upstream attempt.
    pub fn child(&self) -> (u64, http::HeaderValue) {
        let id = context::new_span_id();
        (id, context::traceparent(self.trace_id, id, self.flags))
    }

    /// Records a finished span (only when recording).
    pub fn record(&self, span: SpanRec) {
        if let Some(r) = &self.recorder {
            r.spans.lock().push(span);
        }
    }

    /// Completes the request's own span.
    pub fn finish(
        &self,
        name: String,
        end: Instant,
        attributes: Vec<KeyValue>,
        error: Option<String>,
    ) {
        if let Some(r) = &self.recorder {
            let mut root = r.root.lock();
            root.name = name;
            root.end = Some(end);
            root.attributes = attributes;
            root.error = error;
        }
    }
}

impl Recorder {
    fn wall(&self, at: Instant) -> SystemTime {
        self.start_wall + at.saturating_duration_since(self.start)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let root = std::mem::take(self.root.get_mut());
        let end = root.end.unwrap_or_else(Instant::now);
        let mut spans = std::mem::take(self.spans.get_mut());
        spans.push(SpanRec {
            id: self.span_id,
            parent: self.parent.unwrap_or(0),
            name: if root.name.is_empty() {
                Cow::Borrowed("request")
            } else {
                Cow::Owned(root.name)
            },
            kind: Kind::Server,
            start: self.start,
            end,
            attributes: root.attributes,
            error: root.error,
        });
        for s in spans {
            let remote = s.id == self.span_id && self.parent.is_some();
            let (start, end) = (self.wall(s.start), self.wall(s.end));
            self.tracer
                .export(self.trace_id, self.flags, remote, s, start, end);
        }
    }
}
