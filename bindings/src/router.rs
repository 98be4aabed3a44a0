//! Python bindings for agentgate_core::router: route dicts in, `RouteMatch` out.

use agentgate_core::router::{
    RouteMatch as CoreMatch, RouteSpec, RouteTable, Router as CoreRouter,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyMapping, PyString};
use serde_json::Value;

use crate::errors::ROUTER_ERROR;

fn router_error(e: agentgate_core::router::RouterError) -> PyErr {
    let message = e.to_string();
    ROUTER_ERROR.err(message, move |exc| {
        exc.setattr("index", e.index)?;
        exc.setattr("id", e.id)?;
        exc.setattr("field", e.field)
    })
}

/// A Python value as JSON, for the core to read: str, int, float, bool, None, mappings (keys
/// as `str()`) and other iterables; anything else is a TypeError.
fn to_json(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if v.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::String(s.to_str()?.to_string()));
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyInt>() {
        return Ok(Value::from(v.extract::<i64>()?));
    }
    if v.is_instance_of::<PyFloat>() {
        return Ok(
            serde_json::Number::from_f64(v.extract::<f64>()?).map_or(Value::Null, Value::Number)
        );
    }
    if let Ok(m) = v.cast::<PyMapping>() {
        let mut map = serde_json::Map::new();
        for kv in m.items()?.iter() {
            let (k, item): (Bound<'_, PyAny>, Bound<'_, PyAny>) = kv.extract()?;
            map.insert(k.str()?.to_string(), to_json(&item)?);
        }
        return Ok(Value::Object(map));
    }
    match v.try_iter() {
        Ok(items) => Ok(Value::Array(
            items.map(|i| to_json(&i?)).collect::<PyResult<_>>()?,
        )),
        Err(_) => Err(PyTypeError::new_err(format!(
            "cannot read a {} in a route",
            v.get_type().name()?
        ))),
    }
}

/// Compiles route mappings (see `agentgate.routing`); the core checks every field.
fn compile(routes: Vec<Bound<'_, PyAny>>) -> PyResult<RouteTable> {
    let specs = routes
        .iter()
        .enumerate()
        .map(|(i, r)| RouteSpec::from_json(i, &to_json(r)?).map_err(router_error))
        .collect::<PyResult<Vec<_>>>()?;
    RouteTable::compile(&specs).map_err(router_error)
}

/// The route chosen for a request.
#[pyclass(module = "agentgate._core", frozen)]
pub struct RouteMatch {
    inner: CoreMatch,
    remainder: String,
}

#[pymethods]
impl RouteMatch {
    /// The route's id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    /// Position of the route in the routes list.
    #[getter]
    fn index(&self) -> usize {
        self.inner.index
    }
    /// Template captures, raw (not percent-decoded).
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.inner.params {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
    /// The path after a matched prefix ("" if it was the whole path); the whole path otherwise.
    #[getter]
    fn remainder(&self) -> &str {
        &self.remainder
    }
    /// Bytes of the path matched by a prefix route (0 for exact and template routes).
    #[getter]
    fn prefix_len(&self) -> usize {
        self.inner.prefix_len
    }
    fn __repr__(&self) -> String {
        format!(
            "RouteMatch(id={:?}, index={}, params={:?}, remainder={:?})",
            &*self.inner.id, self.inner.index, self.inner.params, self.remainder
        )
    }
}

/// A live route table: lookups never block, `replace` swaps the whole table atomically.
#[pyclass(module = "agentgate._core", frozen)]
pub struct Router {
    inner: CoreRouter,
}

#[pymethods]
impl Router {
    #[new]
    fn new(routes: Vec<Bound<'_, PyAny>>) -> PyResult<Self> {
        Ok(Self {
            inner: CoreRouter::new(compile(routes)?),
        })
    }

    /// Compiles `routes` and swaps them in; on error the current table stays.
    fn replace(&self, routes: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        self.inner.replace(compile(routes)?);
        Ok(())
    }

    /// The best route for a request, or None.
    #[pyo3(signature = (method, path, host="", headers=None))]
    fn lookup(
        &self,
        method: &str,
        path: &str,
        host: &str,
        headers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<RouteMatch>> {
        let table = self.inner.load();
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let (true, Some(h)) = (table.needs_headers(), headers) {
            let items = match h.cast::<PyDict>() {
                Ok(d) => d.items(),
                Err(_) => h
                    .cast::<PyMapping>()
                    .map_err(|_| PyTypeError::new_err("headers must be a mapping of str to str"))?
                    .items()?,
            };
            for kv in items.iter() {
                let (k, v): (String, String) = kv
                    .extract()
                    .map_err(|_| PyTypeError::new_err("headers must be a mapping of str to str"))?;
                pairs.push((k.to_ascii_lowercase(), v));
            }
        }
        let found = table.lookup(method, host, path, |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        });
        Ok(found.map(|m| {
            let remainder = m.remainder(path).to_string();
            RouteMatch {
                inner: m,
                remainder,
            }
        }))
    }

    fn __len__(&self) -> usize {
        self.inner.load().len()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Router>()?;
    m.add_class::<RouteMatch>()
}
