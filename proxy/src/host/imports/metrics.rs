//! `weft:filter/metrics`: filter metrics under `weft_filter_`, labelled with the filter,
//! resolved once into handles that the request path updates without strings or locks.

use crate::host::bindings::weft::filter::metrics::{Host, Labels, Series};
use crate::host::state::HostState;
use crate::metrics::{Kind, MetricError, SeriesRef};
use weft_abi::answer::Metric;

impl HostState {
    fn report(&self, e: &MetricError) {
        if self
            .services
            .first_warning(format!("{}:{e}", self.identity.name))
        {
            tracing::warn!(filter = %self.identity.name, "metric dropped: {e}");
        }
    }

    fn resolve(&mut self, name: String, labels: Labels, kind: Kind) -> Series {
        let mut full_labels: crate::metrics::Labels =
            labels.into_iter().filter(|(k, _)| k != "filter").collect();
        full_labels.push(("filter".to_owned(), self.identity.name.clone()));
        full_labels.sort();
        let full_name = format!("weft_filter_{name}");
        let metrics = self.services.metrics.clone();
        let key = (kind, full_name.clone(), full_labels.clone());
        match self
            .identity
            .resolve(key, || metrics.filter_series(&full_name, kind, full_labels))
        {
            Ok(id) => id,
            Err(e) => {
                self.report(&e);
                0
            }
        }
    }

    /// The series behind a handle, from this instance's copy when it has one.
    fn series(&mut self, id: Series) -> Option<&SeriesRef> {
        let i = (id as usize).checked_sub(1)?;
        if self.series.get(i).is_none_or(Option::is_none) {
            let found = self.identity.series(id)?;
            if self.series.len() <= i {
                self.series.resize(i + 1, None);
            }
            self.series[i] = Some(found);
        }
        self.series[i].as_ref()
    }
}

impl HostState {
    /// Applies one metric update, from a host call or buffered in an answer.
    pub(crate) fn metric_update(&mut self, update: Metric) {
        match update {
            Metric::CounterAdd(id, v) => {
                if let Some(SeriesRef::Counter(c)) = self.series(id) {
                    c.add(v);
                }
            }
            Metric::GaugeSet(id, v) => {
                if let Some(SeriesRef::Gauge(g)) = self.series(id) {
                    g.set(v);
                }
            }
            Metric::GaugeAdd(id, v) => {
                if let Some(SeriesRef::Gauge(g)) = self.series(id) {
                    g.add(v);
                }
            }
            Metric::HistogramRecord(id, v) => {
                if let Some(SeriesRef::Histogram(h)) = self.series(id) {
                    h.observe(v);
                }
            }
        }
    }
}

impl Host for HostState {
    fn describe(
        &mut self,
        name: String,
        help: String,
        buckets: Option<Vec<f64>>,
    ) -> wasmtime::Result<()> {
        self.host_calls += 1;
        if let Err(e) =
            self.services
                .metrics
                .describe(&format!("weft_filter_{name}"), &help, buckets)
        {
            self.report(&e);
        }
        Ok(())
    }

    fn counter(&mut self, name: String, labels: Labels) -> wasmtime::Result<Series> {
        self.host_calls += 1;
        Ok(self.resolve(name, labels, Kind::Counter))
    }

    fn gauge(&mut self, name: String, labels: Labels) -> wasmtime::Result<Series> {
        self.host_calls += 1;
        Ok(self.resolve(name, labels, Kind::Gauge))
    }

    fn histogram(&mut self, name: String, labels: Labels) -> wasmtime::Result<Series> {
        self.host_calls += 1;
        Ok(self.resolve(name, labels, Kind::Histogram))
    }

    fn counter_add(&mut self, series: Series, value: u64) -> wasmtime::Result<()> {
        self.host_calls += 1;
        self.metric_update(Metric::CounterAdd(series, value));
        Ok(())
    }

    fn gauge_set(&mut self, series: Series, value: f64) -> wasmtime::Result<()> {
        self.host_calls += 1;
        self.metric_update(Metric::GaugeSet(series, value));
        Ok(())
    }

    fn gauge_add(&mut self, series: Series, delta: f64) -> wasmtime::Result<()> {
        self.host_calls += 1;
        self.metric_update(Metric::GaugeAdd(series, delta));
        Ok(())
    }

    fn histogram_record(&mut self, series: Series, value: f64) -> wasmtime::Result<()> {
        self.host_calls += 1;
        self.metric_update(Metric::HistogramRecord(series, value));
        Ok(())
    }
}
