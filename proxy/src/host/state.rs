//! The data each filter instance's store carries: who the filter is, what it may use,
//! and what the current call lends it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use wasmtime::ResourceLimiter;

use super::call::{RequestCtx, ResponseCtx};
use super::imports::header_text::NameCache;
use super::services::{HostServices, Outbound};
use crate::metrics::{Kind, Labels, MetricError, SeriesRef};

/// Most metric series one filter may resolve; beyond, resolution answers the dropped
/// handle 0, so a filter labelling by an unbounded value cannot exhaust memory.
pub const MAX_SERIES: usize = 1_000;

/// Most series (label combinations) one metric of a filter may have: a label with an
/// unbounded value (a user id, a path) stops at this many, and what the scraper
/// stores per metric stays bounded.
pub const MAX_SERIES_PER_METRIC: usize = 100;

/// Who a filter is, for its logs, metrics and shared state.
#[derive(Debug)]
pub struct FilterIdentity {
    /// The filter's name in the configuration.
    pub name: String,
    /// The prefix of its shared-state keys: its name and a NUL, so no two filters can
    /// reach each other's keys.
    pub state_prefix: String,
    /// The metric series the filter resolved; handle `n` is entry `n - 1`.
    series: RwLock<Vec<SeriesRef>>,
    /// Handles by what they were resolved from, so every instance gets the same one.
    series_index: Mutex<HashMap<(Kind, String, Labels), u32>>,
}

impl FilterIdentity {
    /// The identity of the filter called `name`.
    pub fn new(name: &str) -> Arc<FilterIdentity> {
        Arc::new(FilterIdentity {
            name: name.to_owned(),
            state_prefix: format!("{name}\0"),
            series: RwLock::new(Vec::new()),
            series_index: Mutex::new(HashMap::new()),
        })
    }

    /// The handle of a series, resolving it through `make` the first time.
    pub fn resolve(
        &self,
        key: (Kind, String, Labels),
        make: impl FnOnce() -> Result<SeriesRef, MetricError>,
    ) -> Result<u32, MetricError> {
        let mut index = self.series_index.lock();
        if let Some(id) = index.get(&key) {
            return Ok(*id);
        }
        if index.len() >= MAX_SERIES {
            return Err(MetricError::TooManySeries(MAX_SERIES));
        }
        let same_metric = index.keys().filter(|(_, name, _)| *name == key.1).count();
        if same_metric >= MAX_SERIES_PER_METRIC {
            return Err(MetricError::TooManySeries(MAX_SERIES_PER_METRIC));
        }
        let series = make()?;
        let mut table = self.series.write();
        table.push(series);
        let id = table.len() as u32;
        index.insert(key, id);
        Ok(id)
    }

    /// The series behind a handle.
    pub fn series(&self, id: u32) -> Option<SeriesRef> {
        let i = (id as usize).checked_sub(1)?;
        self.series.read().get(i).cloned()
    }
}

/// Caps an instance's linear memory and tables, and remembers whether the cap was hit
/// (to tell an out-of-memory failure from other traps).
#[derive(Debug)]
pub struct MemoryCap {
    /// Most bytes of linear memory.
    pub limit: usize,
    /// Set when a growth was refused.
    pub hit: bool,
    /// The linear memory's size, in bytes (the largest memory, if there are several).
    pub size: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.size = self.size.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A store's data.
pub struct HostState {
    /// The filter.
    pub identity: Arc<FilterIdentity>,
    /// Logging, metrics, shared state, outbound calls.
    pub services: Arc<HostServices>,
    /// Where outbound calls go (the clusters of the filter's configuration).
    pub outbound: Arc<dyn Outbound>,
    /// The memory cap.
    pub memory: MemoryCap,
    /// The request lent for the current call.
    pub request: Option<Box<RequestCtx>>,
    /// The response lent for the current call.
    pub response: Option<Box<ResponseCtx>>,
    /// Time the current call spent waiting on the host (outbound calls), which does not
    /// count against its deadline.
    pub waited: Duration,
    /// The part of `waited` already added to the call's deadline.
    pub credited: Duration,
    /// This instance's copy of the series it used, by handle, so updates take no lock.
    pub series: Vec<Option<SeriesRef>>,
    /// Header names this instance changed lately, checked.
    pub names: NameCache,
    /// Calls into the host during the current call.
    pub host_calls: u32,
    /// Where shared-state keys are built, call after call.
    pub key_buf: String,
}

impl HostState {
    /// A fresh state for a new instance.
    pub fn new(
        identity: Arc<FilterIdentity>,
        services: Arc<HostServices>,
        outbound: Arc<dyn Outbound>,
        memory_limit: usize,
    ) -> Self {
        HostState {
            identity,
            services,
            outbound,
            memory: MemoryCap {
                limit: memory_limit,
                hit: false,
                size: 0,
            },
            request: None,
            response: None,
            waited: Duration::ZERO,
            credited: Duration::ZERO,
            series: Vec::new(),
            names: NameCache::default(),
            host_calls: 0,
            key_buf: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Registry;

    fn resolve(
        id: &FilterIdentity,
        r: &Registry,
        name: &str,
        user: &str,
    ) -> Result<u32, MetricError> {
        let labels = vec![("user".to_owned(), user.to_owned())];
        id.resolve((Kind::Counter, name.to_owned(), labels.clone()), || {
            r.filter_series(name, Kind::Counter, labels)
        })
    }

    #[test]
    fn a_metric_labelled_by_an_unbounded_value_stops_at_its_series_limit() {
        let r = Registry::default();
        let id = FilterIdentity::new("f");
        for i in 0..MAX_SERIES_PER_METRIC {
            resolve(&id, &r, "weft_filter_f_hits", &format!("u{i}")).expect("within the limit");
        }
        assert_eq!(
            resolve(&id, &r, "weft_filter_f_hits", "one-more"),
            Err(MetricError::TooManySeries(MAX_SERIES_PER_METRIC))
        );
        // A series already resolved still resolves, and other metrics are not affected.
        assert!(resolve(&id, &r, "weft_filter_f_hits", "u0").is_ok());
        assert!(resolve(&id, &r, "weft_filter_f_other", "one-more").is_ok());
        let text = r.render();
        assert!(
            !text.contains("weft_filter_f_hits{user=\"one-more\"}"),
            "{text}"
        );
        assert!(text.contains("weft_filter_f_hits{user=\"u99\"}"), "{text}");
    }

    #[test]
    fn a_filter_stops_at_its_total_series_limit() {
        let r = Registry::default();
        let id = FilterIdentity::new("f");
        let mut refused = 0;
        for m in 0..(MAX_SERIES / MAX_SERIES_PER_METRIC + 1) {
            for i in 0..MAX_SERIES_PER_METRIC {
                if resolve(&id, &r, &format!("weft_filter_f_m{m}"), &format!("u{i}")).is_err() {
                    refused += 1;
                }
            }
        }
        assert_eq!(
            refused, MAX_SERIES_PER_METRIC,
            "the last metric's series all refused"
        );
    }
}
