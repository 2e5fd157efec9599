//! Metrics, exported on the proxy's admin port in Prometheus format.
//!
//! Names get the prefix `weft_filter_` and a `filter` label with the filter's name, so a
//! filter's `retries_total` appears as `weft_filter_retries_total{filter="retry"}`. A
//! name or label that Prometheus would refuse is dropped with a warning in the log.

use crate::backend::host;

/// Describes a metric: its help text and, for a histogram, its bucket bounds.
/// Optional: undescribed histograms get latency-style buckets in seconds (0.0005 to 10).
pub fn describe(name: &str, help: &str, buckets: Option<&[f64]>) {
    host::metrics_describe(name, help, buckets)
}

/// Adds to a counter.
pub fn counter_add(name: &str, labels: &[(&str, &str)], value: u64) {
    host::metrics_counter_add(name, labels, value)
}

/// Adds one to a counter.
pub fn counter_inc(name: &str, labels: &[(&str, &str)]) {
    counter_add(name, labels, 1)
}

/// Sets a gauge.
pub fn gauge_set(name: &str, labels: &[(&str, &str)], value: f64) {
    host::metrics_gauge_set(name, labels, value)
}

/// Adds to a gauge (negative to subtract).
pub fn gauge_add(name: &str, labels: &[(&str, &str)], delta: f64) {
    host::metrics_gauge_add(name, labels, delta)
}

/// Records an observation in a histogram.
pub fn histogram_record(name: &str, labels: &[(&str, &str)], value: f64) {
    host::metrics_histogram_record(name, labels, value)
}
