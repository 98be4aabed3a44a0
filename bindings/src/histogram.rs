//! Python bindings for agentgate_core::histogram (values cross in nanoseconds or seconds).

use std::sync::Arc;

use agentgate_core::histogram::{
    HistogramSet as CoreSet, LatencyHistogram as CoreHist, Snapshot, OVERFLOW_KEY, RELATIVE_ERROR,
};
use agentgate_core::setting::{bound_to_nanos, fraction, int_in, nanos_to_secs as s};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::setting_error;

fn to_nanos(value: i64) -> PyResult<u64> {
    int_in("nanos", value, 0..=i64::MAX).map_err(setting_error)
}

fn secs_to_nanos(seconds: f64) -> PyResult<u64> {
    agentgate_core::setting::secs_to_nanos("seconds", seconds).map_err(setting_error)
}

/// Summary of a latency histogram; times in seconds.
#[pyclass(module = "agentgate._core", frozen)]
pub struct HistogramSnapshot {
    inner: Snapshot,
}

#[pymethods]
impl HistogramSnapshot {
    /// Number of recorded values.
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count
    }
    /// Sum of recorded values.
    #[getter]
    fn sum(&self) -> f64 {
        s(self.inner.sum)
    }
    /// Mean (0 when empty).
    #[getter]
    fn mean(&self) -> f64 {
        // the core's mean is fractional nanoseconds
        self.inner.mean / 1e9
    }
    /// Exact minimum.
    #[getter]
    fn min(&self) -> f64 {
        s(self.inner.min)
    }
    /// Exact maximum.
    #[getter]
    fn max(&self) -> f64 {
        s(self.inner.max)
    }
    /// Median.
    #[getter]
    fn p50(&self) -> f64 {
        s(self.inner.p50)
    }
    /// 90th percentile.
    #[getter]
    fn p90(&self) -> f64 {
        s(self.inner.p90)
    }
    /// 95th percentile.
    #[getter]
    fn p95(&self) -> f64 {
        s(self.inner.p95)
    }
    /// 99th percentile.
    #[getter]
    fn p99(&self) -> f64 {
        s(self.inner.p99)
    }
    /// 99.9th percentile.
    #[getter]
    fn p999(&self) -> f64 {
        s(self.inner.p999)
    }
    /// All fields as a dict (for JSON).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("count", self.inner.count)?;
        for (k, v) in [
            ("sum", self.sum()),
            ("mean", self.mean()),
            ("min", self.min()),
            ("max", self.max()),
            ("p50", self.p50()),
            ("p90", self.p90()),
            ("p95", self.p95()),
            ("p99", self.p99()),
            ("p999", self.p999()),
        ] {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "HistogramSnapshot(count={}, mean={:?}, min={:?}, max={:?}, p50={:?}, p99={:?})",
            self.inner.count,
            self.mean(),
            self.min(),
            self.max(),
            self.p50(),
            self.p99()
        )
    }
}

/// A lock-free latency histogram (2 significant digits, 0 ns .. 1 h).
#[pyclass(module = "agentgate._core", frozen)]
pub struct LatencyHistogram {
    inner: Arc<CoreHist>,
}

#[pymethods]
impl LatencyHistogram {
    #[new]
    fn new() -> Self {
        Self {
            inner: Arc::new(CoreHist::new()),
        }
    }
    /// Records a latency in nanoseconds.
    fn record(&self, nanos: i64) -> PyResult<()> {
        self.inner.record(to_nanos(nanos)?);
        Ok(())
    }
    /// Records a latency in seconds.
    fn record_seconds(&self, seconds: f64) -> PyResult<()> {
        self.inner.record(secs_to_nanos(seconds)?);
        Ok(())
    }
    /// Count, mean, min, max and percentiles, in seconds.
    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            inner: self.inner.snapshot(),
        }
    }
    /// The value (seconds) at quantile `q` in [0, 1].
    fn quantile(&self, q: f64) -> PyResult<f64> {
        let q = fraction("q", q).map_err(setting_error)?;
        Ok(s(self.inner.quantile(q)))
    }
    /// Cumulative counts of values <= each bound (seconds), Prometheus style.
    fn buckets(&self, bounds: Vec<f64>) -> PyResult<Vec<u64>> {
        let b = bounds
            .iter()
            .enumerate()
            .map(|(i, x)| bound_to_nanos(&format!("bounds[{i}]"), *x))
            .collect::<Result<Vec<u64>, _>>()
            .map_err(setting_error)?;
        Ok(self.inner.buckets(&b))
    }
    /// Clears all counts.
    fn reset(&self) {
        self.inner.reset()
    }
    /// Number of recorded values.
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }
}

/// Latency histograms by key, bounded; extra keys go to an overflow histogram.
#[pyclass(module = "agentgate._core", frozen)]
pub struct HistogramSet {
    inner: CoreSet,
}

#[pymethods]
impl HistogramSet {
    #[new]
    #[pyo3(signature = (max_keys=1024))]
    fn new(max_keys: i64) -> PyResult<Self> {
        let max_keys = int_in("max_keys", max_keys, 0..=i64::MAX).map_err(setting_error)?;
        Ok(Self {
            inner: CoreSet::new(max_keys),
        })
    }
    /// Records a latency in nanoseconds under `key`.
    fn record(&self, key: &str, nanos: i64) -> PyResult<()> {
        self.inner.record(key, to_nanos(nanos)?);
        Ok(())
    }
    /// Records a latency in seconds under `key`.
    fn record_seconds(&self, key: &str, seconds: f64) -> PyResult<()> {
        self.inner.record(key, secs_to_nanos(seconds)?);
        Ok(())
    }
    /// The histogram of an existing key (shared: records into it show up in the set).
    fn get(&self, key: &str) -> Option<LatencyHistogram> {
        self.inner.get(key).map(|inner| LatencyHistogram { inner })
    }
    /// The histogram of `key`, created if there is room, else the overflow histogram.
    fn histogram(&self, key: &str) -> LatencyHistogram {
        LatencyHistogram {
            inner: self.inner.get_or_insert(key),
        }
    }
    /// Snapshot of one key (or of the overflow histogram under its key), None if unknown.
    fn snapshot(&self, key: &str) -> Option<HistogramSnapshot> {
        self.inner
            .snapshot(key)
            .map(|inner| HistogramSnapshot { inner })
    }
    /// Snapshots of every key, plus the overflow key if it recorded anything.
    fn snapshot_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, inner) in self.inner.snapshot_all() {
            d.set_item(k, HistogramSnapshot { inner })?;
        }
        Ok(d)
    }
    /// The keys, sorted.
    fn keys(&self) -> Vec<String> {
        self.inner.keys()
    }
    /// Resets every histogram, keeping the keys.
    fn reset(&self) {
        self.inner.reset()
    }
    fn __len__(&self) -> usize {
        self.inner.len()
    }
    fn __contains__(&self, key: &str) -> bool {
        self.inner.get(key).is_some()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LatencyHistogram>()?;
    m.add_class::<HistogramSet>()?;
    m.add_class::<HistogramSnapshot>()?;
    m.add("HISTOGRAM_OVERFLOW_KEY", OVERFLOW_KEY)?;
    m.add("HISTOGRAM_RELATIVE_ERROR", RELATIVE_ERROR)
}
