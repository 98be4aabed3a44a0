//! Python bindings for agentgate_core::sketch (DDSketch rollups of the metrics store).

use agentgate_core::rollup::{DecodedTable as CoreDecoded, Rollup, RollupTable as CoreTable};
use agentgate_core::sketch::{
    AtomicSketch as CoreAtomic, Sketch as CoreSketch, SketchError, RELATIVE_ACCURACY,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::enums::py_enum;
use crate::errors::SKETCH_ERROR;

py_enum! {
    /// What is wrong with a sketch operation.
    SketchErrorKind {
        /// Not a DDSketch encoding this module can read.
        Decode,
        /// Encoded with another relative accuracy.
        Mapping,
        /// A quantile outside 0..=1.
        Quantile,
    }
}

fn err(e: SketchError) -> PyErr {
    let kind = match e {
        SketchError::Decode(_) => SketchErrorKind::Decode,
        SketchError::Mapping(_) => SketchErrorKind::Mapping,
        SketchError::Quantile(_) => SketchErrorKind::Quantile,
    };
    SKETCH_ERROR.err(e.to_string(), move |exc| exc.setattr("kind", kind))
}

/// A mergeable DDSketch (1 % relative error) with exact count, sum, min and max.
#[pyclass(module = "agentgate._core")]
#[derive(Default)]
pub struct Sketch {
    inner: CoreSketch,
}

impl From<CoreSketch> for Sketch {
    fn from(inner: CoreSketch) -> Self {
        Sketch { inner }
    }
}

#[pymethods]
impl Sketch {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Reads an encoded sketch (SketchError naming the problem if it is not one).
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Sketch {
            inner: CoreSketch::from_bytes(data).map_err(err)?,
        })
    }

    /// Merges encoded sketches (None entries are skipped) into a new one.
    #[staticmethod]
    fn merged(blobs: Vec<Option<Bound<'_, PyBytes>>>) -> PyResult<Self> {
        // borrowed, not copied: a 30-day table merges tens of thousands of stored sketches
        let inner =
            CoreSketch::merge_encoded(blobs.iter().flatten().map(|b| b.as_bytes())).map_err(err)?;
        Ok(Sketch { inner })
    }

    /// Adds `value` `count` times (non-finite values are ignored).
    #[pyo3(signature = (value, count = 1))]
    fn add(&mut self, value: f64, count: u64) {
        self.inner.add(value, count);
    }

    /// Adds every value once.
    fn add_many(&mut self, values: Vec<f64>) {
        for v in values {
            self.inner.add(v, 1);
        }
    }

    /// Merges another sketch into this one.
    fn merge(&mut self, other: &Sketch) {
        self.inner.merge(&other.inner);
    }

    /// Merges encoded sketches into this one.
    fn merge_bytes(&mut self, data: &[u8]) -> PyResult<()> {
        let other = CoreSketch::from_bytes(data).map_err(err)?;
        self.inner.merge(&other);
        Ok(())
    }

    /// The `q` quantile (None when empty).
    fn quantile(&self, q: f64) -> PyResult<Option<f64>> {
        self.inner.quantile(q).map_err(err)
    }

    /// Several quantiles at once.
    fn quantiles(&self, qs: Vec<f64>) -> PyResult<Vec<Option<f64>>> {
        qs.into_iter()
            .map(|q| self.inner.quantile(q).map_err(err))
            .collect()
    }

    /// Estimated fraction of values at or below `value`.
    fn fraction_below(&self, value: f64) -> f64 {
        self.inner.fraction_below(value)
    }

    /// Number of values.
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }

    /// Sum of the values.
    #[getter]
    fn sum(&self) -> f64 {
        self.inner.sum()
    }

    /// Smallest value (None when empty).
    #[getter]
    fn min(&self) -> Option<f64> {
        self.inner.min()
    }

    /// Largest value (None when empty).
    #[getter]
    fn max(&self) -> Option<f64> {
        self.inner.max()
    }

    /// The encoded sketch.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    fn __repr__(&self) -> String {
        format!(
            "Sketch(count={}, sum={}, min={:?}, max={:?})",
            self.inner.count(),
            self.inner.sum(),
            self.inner.min(),
            self.inner.max()
        )
    }
}

/// A lock-free recorder of seconds into DDSketch bins; `take()` returns and resets.
#[pyclass(module = "agentgate._core", frozen)]
#[derive(Default)]
pub struct AtomicSketch {
    inner: CoreAtomic,
}

#[pymethods]
impl AtomicSketch {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Records one value in seconds (negative and NaN count as zero).
    fn observe(&self, seconds: f64) {
        self.inner.observe(seconds);
    }

    /// What was recorded since the last take, as a Sketch; resets.
    fn take(&self) -> Sketch {
        Sketch {
            inner: self.inner.take(),
        }
    }
}

/// A stored row: bucket, agent, the six status-class counts, in-flight and queue maxima,
/// latency sketch.
type RowIn<'py> = (
    i64,
    String,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    Option<Bound<'py, PyBytes>>,
);
/// What `rows()` gives per agent.
type RowOut = (String, [u64; 6], u64, u64, Sketch);

fn rollup(row: RowIn<'_>) -> (i64, String, Rollup) {
    let (bucket, key, c0, c1, c2, c3, c4, c5, in_flight_max, queue_max, latency) = row;
    let latency = latency.map(|b| b.as_bytes().to_vec()).unwrap_or_default();
    let classes = [c0, c1, c2, c3, c4, c5];
    let r = Rollup {
        classes,
        in_flight_max,
        queue_max,
        latency,
    };
    (bucket, key, r)
}

/// Per-agent rollups of a time range (counts by status class, gauge maxima, latency sketch),
/// merged a whole table at a time.
#[pyclass(module = "agentgate._core", frozen)]
pub struct RollupTable {
    inner: CoreTable,
}

#[pymethods]
impl RollupTable {
    #[new]
    fn new() -> Self {
        RollupTable {
            inner: CoreTable::default(),
        }
    }

    /// The table of stored rows, whatever their bucket (rows of one agent merged).
    #[staticmethod]
    fn from_rows(py: Python<'_>, rows: Vec<RowIn<'_>>) -> PyResult<Self> {
        let rows: Vec<(String, Rollup)> = rows
            .into_iter()
            .map(|row| {
                let (_, key, r) = rollup(row);
                (key, r)
            })
            .collect();
        let inner = py.detach(|| CoreTable::from_rows(rows)).map_err(err)?;
        Ok(RollupTable { inner })
    }

    /// One table per bucket of stored rows, in bucket order.
    #[staticmethod]
    fn by_bucket(py: Python<'_>, rows: Vec<RowIn<'_>>) -> PyResult<Vec<(i64, Self)>> {
        let rows: Vec<(i64, String, Rollup)> = rows.into_iter().map(rollup).collect();
        let tables = py.detach(|| CoreTable::by_bucket(rows)).map_err(err)?;
        Ok(tables
            .into_iter()
            .map(|(b, inner)| (b, RollupTable { inner }))
            .collect())
    }

    /// The union of tables (rows of one agent merged).
    #[staticmethod]
    fn merged(py: Python<'_>, tables: Vec<PyRef<'_, RollupTable>>) -> PyResult<Self> {
        let refs: Vec<&CoreTable> = tables.iter().map(|t| &t.inner).collect();
        let inner = py.detach(|| CoreTable::merged(&refs)).map_err(err)?;
        Ok(RollupTable { inner })
    }

    /// (agent, status-class counts, in-flight max, queue max, latency sketch) per agent.
    fn rows(&self) -> PyResult<Vec<RowOut>> {
        self.inner
            .iter()
            .map(|(k, r)| {
                let sketch = if r.latency.is_empty() {
                    CoreSketch::new()
                } else {
                    CoreSketch::from_bytes(&r.latency).map_err(err)?
                };
                Ok((
                    k.to_owned(),
                    r.classes,
                    r.in_flight_max,
                    r.queue_max,
                    Sketch { inner: sketch },
                ))
            })
            .collect()
    }

    /// Approximate memory held, in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "RollupTable(agents={}, nbytes={})",
            self.inner.len(),
            self.inner.nbytes()
        )
    }
}

/// A RollupTable with its sketches decoded, kept to be combined with rows still changing.
#[pyclass(module = "agentgate._core", frozen)]
pub struct DecodedTable {
    inner: CoreDecoded,
}

#[pymethods]
impl DecodedTable {
    /// Decodes `table` (ValueError naming the problem if a sketch is broken).
    #[new]
    fn new(py: Python<'_>, table: PyRef<'_, RollupTable>) -> PyResult<Self> {
        let table = &table.inner;
        let inner = py.detach(|| CoreDecoded::decode(table)).map_err(err)?;
        Ok(DecodedTable { inner })
    }

    /// Every agent's row with the tables' rows merged in (as `RollupTable.merged([table,
    /// *extra]).rows()`).
    fn rows_with(
        &self,
        py: Python<'_>,
        extra: Vec<PyRef<'_, RollupTable>>,
    ) -> PyResult<Vec<RowOut>> {
        let base = &self.inner;
        let extra: Vec<&CoreTable> = extra.iter().map(|t| &t.inner).collect();
        let rows = py.detach(|| base.with(&extra)).map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(k, c, inf, q, s)| (k, c, inf, q, Sketch { inner: s }))
            .collect())
    }

    /// Approximate memory held, in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SketchErrorKind>()?;
    m.add_class::<Sketch>()?;
    m.add_class::<RollupTable>()?;
    m.add_class::<DecodedTable>()?;
    m.add_class::<AtomicSketch>()?;
    m.add("SKETCH_RELATIVE_ACCURACY", RELATIVE_ACCURACY)?;
    Ok(())
}
