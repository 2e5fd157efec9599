//! Where sampled spans go: an OTLP/HTTP (protobuf) exporter behind OpenTelemetry's
//! batch span processor, which sends from a thread of its own. A request hands its
//! spans over with a non-blocking enqueue; past `MAX_PENDING` spans waiting, spans are
//! dropped and counted (`weft_trace_spans_dropped_total`), so a slow or dead collector
//! never slows or fails a request. One exporter per endpoint for the life of the
//! process (reloads reuse it, like access-log sinks).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use super::span::{Kind, SpanRec};
use crate::metrics::{Counter, Registry};

/// Spans that may wait for export before new ones are dropped.
const MAX_PENDING: usize = 8192;
/// Spans sent in one export request.
const BATCH: usize = 512;
/// How long spans wait for a fuller batch.
const DELAY: Duration = Duration::from_millis(500);

/// Where spans go and how they are described.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExportTarget {
    /// The OTLP/HTTP traces URL (`.../v1/traces`).
    pub endpoint: String,
    /// The longest an export request may take.
    pub timeout: Duration,
    /// `service.name` of the spans' resource.
    pub service_name: String,
}

struct Counts {
    exported: Arc<Counter>,
    failed: Arc<Counter>,
    dropped: Arc<Counter>,
    pending: AtomicUsize,
}

/// The exporter of one endpoint.
pub struct Tracer {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
    counts: Arc<Counts>,
}

/// Counts what the OTLP exporter sent and what failed.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    counts: Arc<Counts>,
}

impl std::fmt::Debug for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Counts")
    }
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.counts.pending.fetch_sub(n, Ordering::Relaxed);
        match &result {
            Ok(()) => self.counts.exported.add(n as u64),
            Err(e) => {
                self.counts.failed.add(n as u64);
                tracing::warn!("trace export failed ({n} spans lost): {e}");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

fn tracers() -> &'static Mutex<HashMap<ExportTarget, Arc<Tracer>>> {
    static TRACERS: OnceLock<Mutex<HashMap<ExportTarget, Arc<Tracer>>>> = OnceLock::new();
    TRACERS.get_or_init(Default::default)
}

/// The exporter for `target`, made the first time it is asked for.
pub fn tracer(target: &ExportTarget, metrics: &Registry) -> Result<Arc<Tracer>, String> {
    let mut all = tracers().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = all.get(target) {
        return Ok(t.clone());
    }
    let inner = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(target.endpoint.clone())
        .with_timeout(target.timeout)
        .build()
        .map_err(|e| format!("OTLP exporter for {}: {e}", target.endpoint))?;
    let counts = Arc::new(Counts {
        exported: metrics.counter(
            "weft_trace_spans_exported_total",
            "Spans the OTLP collector accepted.",
            &[],
        ),
        failed: metrics.counter(
            "weft_trace_spans_failed_total",
            "Spans lost because their export request failed.",
            &[],
        ),
        dropped: metrics.counter(
            "weft_trace_spans_dropped_total",
            "Spans dropped because too many were waiting for export.",
            &[],
        ),
        pending: AtomicUsize::new(0),
    });
    let exporter = Counting {
        inner,
        counts: counts.clone(),
    };
    let config = BatchConfigBuilder::default()
        // Larger than what weft lets wait, so that weft, not the processor, drops.
        .with_max_queue_size(MAX_PENDING * 2)
        .with_max_export_batch_size(BATCH)
        .with_scheduled_delay(DELAY)
        .build();
    let mut processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build();
    processor.set_resource(
        &Resource::builder_empty()
            .with_service_name(target.service_name.clone())
            .build(),
    );
    let tracer = Arc::new(Tracer {
        processor,
        scope: InstrumentationScope::builder("weft")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
        counts,
    });
    all.insert(target.clone(), tracer.clone());
    Ok(tracer)
}

/// Sends every span waiting, as the process stops.
pub fn flush_all() {
    let all: Vec<Arc<Tracer>> = tracers()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    for t in all {
        let _ = t.processor.force_flush();
    }
}

impl Tracer {
    /// Queues one span for export, or drops and counts it when too many wait.
    pub(super) fn export(
        &self,
        trace_id: u128,
        flags: u8,
        remote_parent: bool,
        span: SpanRec,
        start: SystemTime,
        end: SystemTime,
    ) {
        if self.counts.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING {
            self.counts.pending.fetch_sub(1, Ordering::Relaxed);
            self.counts.dropped.inc();
            return;
        }
        let data = SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from(span.id),
                TraceFlags::new(flags),
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::from(span.parent),
            parent_span_is_remote: remote_parent,
            span_kind: match span.kind {
                Kind::Server => SpanKind::Server,
                Kind::Client => SpanKind::Client,
                Kind::Internal => SpanKind::Internal,
            },
            name: span.name,
            start_time: start,
            end_time: end,
            attributes: span.attributes,
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: match span.error {
                Some(why) => Status::Error {
                    description: Cow::Owned(why),
                },
                None => Status::Unset,
            },
            instrumentation_scope: self.scope.clone(),
        };
        self.processor.on_end(data);
    }
}

/// A key-value attribute.
pub fn attr(key: &'static str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(key, value)
}
