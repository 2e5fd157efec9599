//! Prometheus metrics: the proxy's own and those filters define.
//!
//! The core resolves its series once (a [`Counter`] or [`Histogram`] handle held by a
//! route or a filter) so the request path pays only an atomic add. Filters name their
//! metrics at each call; those are looked up under a read lock.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

/// Label names and values of one series, sorted by name.
pub type Labels = Vec<(String, String)>;

/// Default histogram buckets, in seconds: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds to the count.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1)
    }
    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    /// Adds to the value; returns the new value (exact among concurrent adds).
    pub fn add(&self, d: f64) -> f64 {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + d).to_bits();
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return f64::from_bits(next),
                Err(seen) => current = seen,
            }
        }
    }
    /// The value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A distribution of observations over fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum: Gauge,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram {
            bounds: bounds.to_vec(),
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: Gauge::default(),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum.add(v);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The bucket bounds, the observations in each bucket (not cumulative; those above
    /// the last bound are `count` less their sum), the count and the sum.
    pub fn read(&self) -> (&[f64], Vec<u64>, u64, f64) {
        let counts = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        (&self.bounds, counts, self.count(), self.sum.get())
    }
}

/// What kind a metric family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`Counter`].
    Counter,
    /// [`Gauge`].
    Gauge,
    /// [`Histogram`].
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A handle on one series, as filters hold them.
#[derive(Debug, Clone)]
pub enum SeriesRef {
    /// A counter.
    Counter(Arc<Counter>),
    /// A gauge.
    Gauge(Arc<Gauge>),
    /// A histogram.
    Histogram(Arc<Histogram>),
}

#[derive(Debug, Clone)]
enum Series {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

#[derive(Debug)]
struct Family {
    kind: Kind,
    help: String,
    buckets: Vec<f64>,
    series: HashMap<Labels, Series>,
}

/// Why a filter's metric operation was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// The name is not a valid Prometheus metric name.
    #[error("invalid metric name {0:?}")]
    InvalidName(String),
    /// A label name is not valid.
    #[error("invalid label name {0:?}")]
    InvalidLabel(String),
    /// The filter resolved too many series.
    #[error("more than {0} metric series")]
    TooManySeries(usize),
    /// The name is already used by a metric of another kind.
    #[error("metric {name:?} is a {existing}, not a {wanted}")]
    KindConflict {
        /// The metric.
        name: String,
        /// Its kind.
        existing: &'static str,
        /// The kind asked for.
        wanted: &'static str,
    },
}

/// Whether a name is a valid Prometheus metric name.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A metric's help text and histogram buckets, as a filter described it.
type Description = (String, Option<Vec<f64>>);

/// All metrics of the process.
#[derive(Debug, Default)]
pub struct Registry {
    families: RwLock<BTreeMap<String, Family>>,
    described: Mutex<HashMap<String, Description>>,
}

fn sorted(labels: &[(&str, &str)]) -> Labels {
    let mut l: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    l.sort();
    l
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn series(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: Labels,
    ) -> Result<Series, MetricError> {
        if let Some(f) = self.families.read().get(name) {
            if f.kind != kind {
                return Err(MetricError::KindConflict {
                    name: name.to_owned(),
                    existing: f.kind.as_str(),
                    wanted: kind.as_str(),
                });
            }
            if let Some(s) = f.series.get(&labels) {
                return Ok(s.clone());
            }
        }
        if !valid_metric_name(name) {
            return Err(MetricError::InvalidName(name.to_owned()));
        }
        if let Some((bad, _)) = labels.iter().find(|(k, _)| !valid_label_name(k)) {
            return Err(MetricError::InvalidLabel(bad.clone()));
        }
        let mut families = self.families.write();
        let described = self.described.lock().get(name).cloned();
        let family = families.entry(name.to_owned()).or_insert_with(|| {
            let (help, buckets) = described.unwrap_or_else(|| (help.to_owned(), None));
            Family {
                kind,
                help,
                buckets: buckets.unwrap_or_else(|| LATENCY_BUCKETS.to_vec()),
                series: HashMap::new(),
            }
        });
        if family.kind != kind {
            return Err(MetricError::KindConflict {
                name: name.to_owned(),
                existing: family.kind.as_str(),
                wanted: kind.as_str(),
            });
        }
        let buckets = family.buckets.clone();
        Ok(family
            .series
            .entry(labels)
            .or_insert_with(|| match kind {
                Kind::Counter => Series::Counter(Arc::default()),
                Kind::Gauge => Series::Gauge(Arc::default()),
                Kind::Histogram => Series::Histogram(Arc::new(Histogram::new(&buckets))),
            })
            .clone())
    }

    /// A counter series, created on first use. Panics on a name the proxy itself got
    /// wrong (never on filter input, which goes through the `filter_*` methods).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Counter> {
        match self.series(name, help, Kind::Counter, sorted(labels)) {
            Ok(Series::Counter(c)) => c,
            other => panic!("core metric {name}: {other:?}"),
        }
    }

    /// A gauge series, created on first use.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Gauge> {
        match self.series(name, help, Kind::Gauge, sorted(labels)) {
            Ok(Series::Gauge(g)) => g,
            other => panic!("core metric {name}: {other:?}"),
        }
    }

    /// A histogram series with the default latency buckets, created on first use.
    pub fn histogram(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Arc<Histogram> {
        match self.series(name, help, Kind::Histogram, sorted(labels)) {
            Ok(Series::Histogram(h)) => h,
            other => panic!("core metric {name}: {other:?}"),
        }
    }

    /// The value of a gauge without labels, if it exists.
    pub fn gauge_value(&self, name: &str) -> Option<f64> {
        match self.families.read().get(name)?.series.get(&Vec::new())? {
            Series::Gauge(g) => Some(g.get()),
            _ => None,
        }
    }

    /// A histogram series with its own buckets (the family's, when it already exists),
    /// created on first use.
    pub fn histogram_with(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[f64],
    ) -> Arc<Histogram> {
        self.described
            .lock()
            .entry(name.to_owned())
            .or_insert_with(|| (help.to_owned(), Some(buckets.to_vec())));
        self.histogram(name, help, labels)
    }

    /// Records a filter's description of a metric (help text, histogram buckets); it
    /// applies when the metric is first created.
    pub fn describe(
        &self,
        name: &str,
        help: &str,
        buckets: Option<Vec<f64>>,
    ) -> Result<(), MetricError> {
        if !valid_metric_name(name) {
            return Err(MetricError::InvalidName(name.to_owned()));
        }
        let buckets = buckets.map(|mut b| {
            b.retain(|x| x.is_finite());
            b.sort_by(f64::total_cmp);
            b.dedup();
            b
        });
        self.described
            .lock()
            .insert(name.to_owned(), (help.to_owned(), buckets));
        Ok(())
    }

    /// A filter's series of the given kind, created on first use. Filter input is
    /// checked: a bad name, label or kind is an error, never a panic.
    pub fn filter_series(
        &self,
        name: &str,
        kind: Kind,
        labels: Labels,
    ) -> Result<SeriesRef, MetricError> {
        Ok(match self.series(name, "", kind, labels)? {
            Series::Counter(c) => SeriesRef::Counter(c),
            Series::Gauge(g) => SeriesRef::Gauge(g),
            Series::Histogram(h) => SeriesRef::Histogram(h),
        })
    }

    /// The value of a counter or gauge series, if it exists (for tests and the admin
    /// API).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let families = self.families.read();
        match families.get(name)?.series.get(&sorted(labels))? {
            Series::Counter(c) => Some(c.get() as f64),
            Series::Gauge(g) => Some(g.get()),
            Series::Histogram(h) => Some(h.count() as f64),
        }
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in self.families.read().iter() {
            if !f.help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help));
            }
            let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
            let mut series: Vec<_> = f.series.iter().collect();
            series.sort_by(|a, b| a.0.cmp(b.0));
            for (labels, s) in series {
                match s {
                    Series::Counter(c) => line(&mut out, name, labels, None, c.get() as f64),
                    Series::Gauge(g) => line(&mut out, name, labels, None, g.get()),
                    Series::Histogram(h) => {
                        let mut cumulative = 0;
                        for (bound, count) in h.bounds.iter().zip(&h.counts) {
                            cumulative += count.load(Ordering::Relaxed);
                            let le = format_float(*bound);
                            line(
                                &mut out,
                                &format!("{name}_bucket"),
                                labels,
                                Some(&le),
                                cumulative as f64,
                            );
                        }
                        line(
                            &mut out,
                            &format!("{name}_bucket"),
                            labels,
                            Some("+Inf"),
                            h.count() as f64,
                        );
                        line(&mut out, &format!("{name}_sum"), labels, None, h.sum.get());
                        line(
                            &mut out,
                            &format!("{name}_count"),
                            labels,
                            None,
                            h.count() as f64,
                        );
                    }
                }
            }
        }
        out
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

fn line(out: &mut String, name: &str, labels: &Labels, le: Option<&str>, value: f64) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        if let Some(le) = le {
            if !first {
                out.push(',');
            }
            let _ = write!(out, "le=\"{le}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_float(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let r = Registry::new();
        r.counter("weft_requests_total", "Requests.", &[("route", "a")])
            .add(3);
        r.histogram("weft_latency_seconds", "Latency.", &[])
            .observe(0.003);
        let text = r.render();
        assert!(
            text.contains("# TYPE weft_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("weft_requests_total{route=\"a\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("weft_latency_seconds_bucket{le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("weft_latency_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("weft_latency_seconds_count 1"), "{text}");
    }

    #[test]
    fn filter_metrics_are_checked() {
        let r = Registry::new();
        let Ok(SeriesRef::Counter(c)) = r.filter_series("ok_total", Kind::Counter, vec![]) else {
            panic!()
        };
        c.inc();
        assert!(matches!(
            r.filter_series("bad name", Kind::Counter, vec![]),
            Err(MetricError::InvalidName(_))
        ));
        let bad_label = vec![("0x".to_owned(), "v".to_owned())];
        assert!(matches!(
            r.filter_series("ok_total", Kind::Counter, bad_label),
            Err(MetricError::InvalidLabel(_))
        ));
        assert!(matches!(
            r.filter_series("ok_total", Kind::Gauge, vec![]),
            Err(MetricError::KindConflict { .. })
        ));
        assert_eq!(r.value("ok_total", &[]), Some(1.0));
    }

    #[test]
    fn described_buckets_apply() {
        let r = Registry::new();
        r.describe("sizes", "Sizes.", Some(vec![10.0, 1.0, 100.0]))
            .unwrap();
        let Ok(SeriesRef::Histogram(h)) = r.filter_series("sizes", Kind::Histogram, vec![]) else {
            panic!()
        };
        h.observe(5.0);
        let text = r.render();
        assert!(text.contains("# HELP sizes Sizes."), "{text}");
        assert!(
            text.contains("sizes_bucket{le=\"1\"} 0\nsizes_bucket{le=\"10\"} 1"),
            "{text}"
        );
    }
}
