//! `weft:filter/metrics`: filter metrics under `weft_filter_`, labelled with the filter.

use crate::host::bindings::weft::filter::metrics::{Host, Labels};
use crate::host::state::HostState;
use crate::metrics::MetricError;

impl HostState {
    fn metric_name(&self, name: &str) -> String {
        format!("weft_filter_{name}")
    }

    fn metric_labels(&self, labels: Labels) -> crate::metrics::Labels {
        let mut l: crate::metrics::Labels = labels.into_iter().filter(|(k, _)| k != "filter").collect();
        l.push(("filter".to_owned(), self.identity.name.clone()));
        l.sort();
        l
    }

    fn report(&self, result: Result<(), MetricError>) {
        if let Err(e) = result {
            if self.services.first_warning(format!("{}:{e}", self.identity.name)) {
                tracing::warn!(filter = %self.identity.name, "metric dropped: {e}");
            }
        }
    }
}

impl Host for HostState {
    fn describe(&mut self, name: String, help: String, buckets: Option<Vec<f64>>) -> wasmtime::Result<()> {
        let r = self.services.metrics.describe(&self.metric_name(&name), &help, buckets);
        self.report(r);
        Ok(())
    }

    fn counter_add(&mut self, name: String, labels: Labels, value: u64) -> wasmtime::Result<()> {
        let r = self.services.metrics.filter_counter_add(&self.metric_name(&name), self.metric_labels(labels), value);
        self.report(r);
        Ok(())
    }

    fn gauge_set(&mut self, name: String, labels: Labels, value: f64) -> wasmtime::Result<()> {
        let r = self.services.metrics.filter_gauge(&self.metric_name(&name), self.metric_labels(labels), value, false);
        self.report(r);
        Ok(())
    }

    fn gauge_add(&mut self, name: String, labels: Labels, delta: f64) -> wasmtime::Result<()> {
        let r = self.services.metrics.filter_gauge(&self.metric_name(&name), self.metric_labels(labels), delta, true);
        self.report(r);
        Ok(())
    }

    fn histogram_record(&mut self, name: String, labels: Labels, value: f64) -> wasmtime::Result<()> {
        let r = self.services.metrics.filter_observe(&self.metric_name(&name), self.metric_labels(labels), value);
        self.report(r);
        Ok(())
    }
}
