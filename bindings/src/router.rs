//! Python bindings for agentgate_core::router: route dicts in, `RouteMatch` out.

use agentgate_core::router::{
    PathMatch, RouteMatch as CoreMatch, RouteSpec, RouteTable, Router as CoreRouter,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping, PyString};

const KEYS: [&str; 7] = [
    "id",
    "path",
    "path_prefix",
    "path_template",
    "methods",
    "host",
    "headers",
];

fn route_err(index: usize, id: &str, field: &str, msg: &str) -> PyErr {
    PyValueError::new_err(format!("route #{index} (id {id:?}): {field}: {msg}"))
}

/// Converts one route mapping into a core spec; errors name the route and the field.
fn to_spec(index: usize, route: &Bound<'_, PyAny>) -> PyResult<RouteSpec> {
    let map = route
        .cast::<PyMapping>()
        .map_err(|_| PyValueError::new_err(format!("route #{index}: must be a mapping")))?;
    let get = |k: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        match map.get_item(k) {
            Ok(v) if v.is_none() => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyKeyError>(route.py()) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let id: String = match get("id")? {
        Some(v) => v
            .extract()
            .map_err(|_| route_err(index, "", "id", "must be a string"))?,
        None => return Err(route_err(index, "", "id", "is required")),
    };
    for key in map.keys()?.iter() {
        let k: String = key.str()?.to_string();
        if !KEYS.contains(&k.as_str()) {
            let msg = format!("unknown key, expected one of {}", KEYS.join(", "));
            return Err(route_err(index, &id, &k, &msg));
        }
    }
    let string = |field: &str, v: Bound<'_, PyAny>| -> PyResult<String> {
        v.extract()
            .map_err(|_| route_err(index, &id, field, "must be a string"))
    };
    let mut paths = Vec::new();
    for (field, make) in [
        ("path", PathMatch::Exact as fn(String) -> PathMatch),
        ("path_prefix", PathMatch::Prefix),
        ("path_template", PathMatch::Template),
    ] {
        if let Some(v) = get(field)? {
            paths.push(make(string(field, v)?));
        }
    }
    if paths.len() != 1 {
        let msg = "give exactly one of path, path_prefix, path_template";
        return Err(route_err(index, &id, "path", msg));
    }
    let host = get("host")?.map(|v| string("host", v)).transpose()?;
    let methods = match get("methods")? {
        None => Vec::new(),
        Some(v) if v.is_instance_of::<PyString>() => {
            return Err(route_err(
                index,
                &id,
                "methods",
                "must be a list of strings, not a string",
            ))
        }
        Some(v) => v
            .extract::<Vec<String>>()
            .map_err(|_| route_err(index, &id, "methods", "must be a list of strings"))?,
    };
    let headers = match get("headers")? {
        None => Vec::new(),
        Some(v) => {
            let m = v
                .cast::<PyMapping>()
                .map_err(|_| route_err(index, &id, "headers", "must be a mapping of str to str"))?;
            m.items()?
                .iter()
                .map(|kv| kv.extract::<(String, String)>())
                .collect::<PyResult<Vec<_>>>()
                .map_err(|_| route_err(index, &id, "headers", "must be a mapping of str to str"))?
        }
    };
    Ok(RouteSpec {
        id,
        host,
        methods,
        path: paths.remove(0),
        headers,
    })
}

fn compile(routes: &Bound<'_, PyAny>) -> PyResult<RouteTable> {
    if routes.is_instance_of::<PyString>() || routes.cast::<PyMapping>().is_ok() {
        return Err(PyValueError::new_err(
            "routes must be a sequence of route mappings",
        ));
    }
    let specs = routes
        .try_iter()
        .map_err(|_| PyValueError::new_err("routes must be a sequence of route mappings"))?
        .enumerate()
        .map(|(i, r)| to_spec(i, &r?))
        .collect::<PyResult<Vec<_>>>()?;
    RouteTable::compile(&specs).map_err(|e| PyValueError::new_err(e.to_string()))
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
    fn new(routes: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            inner: CoreRouter::new(compile(routes)?),
        })
    }

    /// Compiles `routes` and swaps them in; on error the current table stays.
    fn replace(&self, routes: &Bound<'_, PyAny>) -> PyResult<()> {
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
                    .map_err(|_| PyValueError::new_err("headers must be a mapping of str to str"))?
                    .items()?,
            };
            for kv in items.iter() {
                let (k, v): (String, String) = kv.extract().map_err(|_| {
                    PyValueError::new_err("headers must be a mapping of str to str")
                })?;
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
