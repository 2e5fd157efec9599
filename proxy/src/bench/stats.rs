//! Latency distributions, in nanoseconds.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Nanoseconds, from one to a minute, to three significant digits.
pub struct Nanos(Histogram<u64>);

impl Default for Nanos {
    fn default() -> Self {
        Nanos(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds"))
    }
}

impl Nanos {
    /// Adds one observation.
    pub fn record(&mut self, nanos: u64) {
        self.0.saturating_record(nanos.max(1));
    }

    /// Adds another distribution's observations.
    pub fn merge(&mut self, other: &Nanos) {
        let _ = self.0.add(&other.0);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The summary a report shows.
    pub fn summary(&self) -> Summary {
        if self.0.is_empty() {
            return Summary::default();
        }
        Summary {
            p50_ns: self.0.value_at_quantile(0.50),
            p99_ns: self.0.value_at_quantile(0.99),
            p999_ns: self.0.value_at_quantile(0.999),
            mean_ns: self.0.mean().round() as u64,
        }
    }
}

/// Percentiles and mean of a distribution.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub mean_ns: u64,
}

/// Nanoseconds as a person reads them: `812 ns`, `12.3 µs`, `4.12 ms`, `3.2 s`.
pub fn human(nanos: u64) -> String {
    match nanos {
        0..=9_999 => format!("{nanos} ns"),
        10_000..=999_999 => format!("{:.1} µs", nanos as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", nanos as f64 / 1e6),
        _ => format!("{:.1} s", nanos as f64 / 1e9),
    }
}

/// A count with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_formatting() {
        let mut n = Nanos::default();
        for v in 1..=1000 {
            n.record(v * 100);
        }
        let s = n.summary();
        assert!((49_900..=50_100).contains(&s.p50_ns), "{s:?}");
        assert!((98_900..=99_100).contains(&s.p99_ns), "{s:?}");
        assert_eq!(human(812), "812 ns");
        assert_eq!(human(12_345), "12.3 µs");
        assert_eq!(human(1_053_700), "1.05 ms");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
