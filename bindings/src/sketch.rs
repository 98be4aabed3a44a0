//! Python bindings for agentgate_core::sketch (DDSketch rollups of the metrics store).

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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SketchErrorKind>()?;
    m.add_class::<Sketch>()?;
    m.add_class::<AtomicSketch>()?;
    m.add("SKETCH_RELATIVE_ACCURACY", RELATIVE_ACCURACY)?;
    Ok(())
}
