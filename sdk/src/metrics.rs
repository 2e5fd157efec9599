//! Metrics, exported on the proxy's admin port in Prometheus format.
//!
//! Names get the prefix `weft_filter_` and a `filter` label with the filter's name, so a
//! filter's `retries_total` appears as `weft_filter_retries_total{filter="retry"}`.
//!
//! Resolve a series once, in [`Filter::new`](crate::Filter::new), and keep the handle:
//! updating it is one cheap call with no strings.
//!
//! ```no_run
//! use weft_sdk::metrics::Counter;
//!
//! let denied = Counter::new("denied_total", &[("reason", "no_token")]);
//! denied.inc();
//! ```
//!
//! The free functions ([`counter_add`] and friends) take a name and labels at each call;
//! they resolve through a cache in the filter, so they cost a lookup more than a handle.
//! A name or label that Prometheus would refuse is dropped, with a warning in the log.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::backend::host;

/// What kind a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution over buckets.
    Histogram,
}

/// Describes a metric: its help text and, for a histogram, its bucket bounds. Call it
/// before resolving the metric's first series (in [`Filter::new`](crate::Filter::new)).
/// Undescribed histograms get latency-style buckets in seconds (0.0005 to 10).
pub fn describe(name: &str, help: &str, buckets: Option<&[f64]>) {
    host::metrics_describe(name, help, buckets)
}

/// A counter series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(u32);

impl Counter {
    /// Resolves a counter series.
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Counter {
        Counter(host::metrics_resolve(Kind::Counter, name, labels))
    }
    /// Adds to it.
    pub fn add(&self, value: u64) {
        host::metrics_counter_add(self.0, value)
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1)
    }
}

/// A gauge series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge(u32);

impl Gauge {
    /// Resolves a gauge series.
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Gauge {
        Gauge(host::metrics_resolve(Kind::Gauge, name, labels))
    }
    /// Sets it.
    pub fn set(&self, value: f64) {
        host::metrics_gauge_set(self.0, value)
    }
    /// Adds to it (negative to subtract).
    pub fn add(&self, delta: f64) {
        host::metrics_gauge_add(self.0, delta)
    }
}

/// A histogram series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram(u32);

impl Histogram {
    /// Resolves a histogram series.
    pub fn new(name: &str, labels: &[(&str, &str)]) -> Histogram {
        Histogram(host::metrics_resolve(Kind::Histogram, name, labels))
    }
    /// Records one observation.
    pub fn record(&self, value: f64) {
        host::metrics_histogram_record(self.0, value)
    }
}

type Entry = (Kind, String, Vec<(String, String)>, u32);

thread_local! {
    /// Handles the free functions resolved, by a hash of what they were resolved from.
    static RESOLVED: RefCell<HashMap<u64, Vec<Entry>>> = RefCell::new(HashMap::new());
}

fn cached(kind: Kind, name: &str, labels: &[(&str, &str)]) -> u32 {
    let mut h = DefaultHasher::new();
    (kind, name, labels).hash(&mut h);
    let hash = h.finish();
    let same = |e: &&Entry| {
        e.0 == kind
            && e.1 == name
            && e.2.len() == labels.len()
            && e.2
                .iter()
                .zip(labels)
                .all(|((k, v), (k2, v2))| k == k2 && v == v2)
    };
    if let Some(id) = RESOLVED.with(|r| {
        r.borrow()
            .get(&hash)
            .and_then(|v| v.iter().find(same).map(|e| e.3))
    }) {
        return id;
    }
    let id = host::metrics_resolve(kind, name, labels);
    let owned = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    RESOLVED.with(|r| {
        r.borrow_mut()
            .entry(hash)
            .or_default()
            .push((kind, name.to_owned(), owned, id))
    });
    id
}

/// Adds to a counter, by name and labels.
pub fn counter_add(name: &str, labels: &[(&str, &str)], value: u64) {
    host::metrics_counter_add(cached(Kind::Counter, name, labels), value)
}

/// Adds one to a counter, by name and labels.
pub fn counter_inc(name: &str, labels: &[(&str, &str)]) {
    counter_add(name, labels, 1)
}

/// Sets a gauge, by name and labels.
pub fn gauge_set(name: &str, labels: &[(&str, &str)], value: f64) {
    host::metrics_gauge_set(cached(Kind::Gauge, name, labels), value)
}

/// Adds to a gauge, by name and labels.
pub fn gauge_add(name: &str, labels: &[(&str, &str)], delta: f64) {
    host::metrics_gauge_add(cached(Kind::Gauge, name, labels), delta)
}

/// Records an observation in a histogram, by name and labels.
pub fn histogram_record(name: &str, labels: &[(&str, &str)], value: f64) {
    host::metrics_histogram_record(cached(Kind::Histogram, name, labels), value)
}
