//! Python bindings for agentgate_core::http1::response: one call per received segment.

use agentgate_core::http1::response::{
    Limits, ResponseHead, ResponseParser, Version, DEFAULT_MAX_HEAD, DEFAULT_MAX_HEADERS,
};
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

fn value_err(e: agentgate_core::http1::response::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A parsed final response head; `headers`/`forward` are lists of (name, value) str tuples.
#[pyclass(module = "agentgate._core", frozen)]
pub struct Http1ResponseHead {
    #[pyo3(get)]
    status: u16,
    reason: Py<PyString>,
    http11: bool,
    headers: Py<PyList>,
    forward: Py<PyList>,
    #[pyo3(get)]
    has_request_id: bool,
    #[pyo3(get)]
    content_length: i64,
    #[pyo3(get)]
    retry_after: Option<f64>,
    #[pyo3(get)]
    keep_alive: bool,
    #[pyo3(get)]
    close_delimited: bool,
    #[pyo3(get)]
    chunked: bool,
}

/// Field names as Python strings; the names most responses carry come from interned strings
/// (created once per process) instead of a new string per response.
pub(crate) fn name_str<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyString> {
    match name {
        "Content-Type" => intern!(py, "Content-Type").clone(),
        "Content-Length" => intern!(py, "Content-Length").clone(),
        "Date" => intern!(py, "Date").clone(),
        "Server" => intern!(py, "Server").clone(),
        "Cache-Control" => intern!(py, "Cache-Control").clone(),
        "ETag" => intern!(py, "ETag").clone(),
        "Etag" => intern!(py, "Etag").clone(),
        "Last-Modified" => intern!(py, "Last-Modified").clone(),
        "Vary" => intern!(py, "Vary").clone(),
        "Location" => intern!(py, "Location").clone(),
        "Set-Cookie" => intern!(py, "Set-Cookie").clone(),
        "Content-Encoding" => intern!(py, "Content-Encoding").clone(),
        "Expires" => intern!(py, "Expires").clone(),
        "X-Request-Id" => intern!(py, "X-Request-Id").clone(),
        "X-Request-ID" => intern!(py, "X-Request-ID").clone(),
        "Retry-After" => intern!(py, "Retry-After").clone(),
        "Access-Control-Allow-Origin" => intern!(py, "Access-Control-Allow-Origin").clone(),
        "Strict-Transport-Security" => intern!(py, "Strict-Transport-Security").clone(),
        "X-Content-Type-Options" => intern!(py, "X-Content-Type-Options").clone(),
        "Accept-Ranges" => intern!(py, "Accept-Ranges").clone(),
        "Age" => intern!(py, "Age").clone(),
        "Pragma" => intern!(py, "Pragma").clone(),
        "Content-Disposition" => intern!(py, "Content-Disposition").clone(),
        "Link" => intern!(py, "Link").clone(),
        "Via" => intern!(py, "Via").clone(),
        "WWW-Authenticate" => intern!(py, "WWW-Authenticate").clone(),
        "Content-Language" => intern!(py, "Content-Language").clone(),
        "X-Frame-Options" => intern!(py, "X-Frame-Options").clone(),
        "accept-ranges" => intern!(py, "accept-ranges").clone(),
        "access-control-allow-origin" => intern!(py, "access-control-allow-origin").clone(),
        "age" => intern!(py, "age").clone(),
        "cache-control" => intern!(py, "cache-control").clone(),
        "content-disposition" => intern!(py, "content-disposition").clone(),
        "content-encoding" => intern!(py, "content-encoding").clone(),
        "content-language" => intern!(py, "content-language").clone(),
        "content-length" => intern!(py, "content-length").clone(),
        "content-type" => intern!(py, "content-type").clone(),
        "date" => intern!(py, "date").clone(),
        "etag" => intern!(py, "etag").clone(),
        "expires" => intern!(py, "expires").clone(),
        "last-modified" => intern!(py, "last-modified").clone(),
        "link" => intern!(py, "link").clone(),
        "location" => intern!(py, "location").clone(),
        "pragma" => intern!(py, "pragma").clone(),
        "retry-after" => intern!(py, "retry-after").clone(),
        "server" => intern!(py, "server").clone(),
        "set-cookie" => intern!(py, "set-cookie").clone(),
        "strict-transport-security" => intern!(py, "strict-transport-security").clone(),
        "vary" => intern!(py, "vary").clone(),
        "via" => intern!(py, "via").clone(),
        "www-authenticate" => intern!(py, "www-authenticate").clone(),
        "x-content-type-options" => intern!(py, "x-content-type-options").clone(),
        "x-frame-options" => intern!(py, "x-frame-options").clone(),
        "x-request-id" => intern!(py, "x-request-id").clone(),
        _ => PyString::new(py, name),
    }
}

impl Http1ResponseHead {
    /// Builds both lists once; `forward` shares the value strings (and unchanged names) of
    /// `headers`, since it is the same fields in the same order with some left out.
    pub(crate) fn from_core(py: Python<'_>, head: ResponseHead) -> PyResult<Self> {
        let mut headers = Vec::with_capacity(head.headers.len());
        let mut forward = Vec::with_capacity(head.forward.len());
        let mut pending = head.forward.iter().peekable();
        for (name, value) in &head.headers {
            let n = name_str(py, name);
            let v = PyString::new(py, value);
            if let Some((fname, fvalue)) = pending.peek() {
                // Whether a field is dropped depends on its lowercase name only, so the first
                // header matching the next forward entry is that entry.
                if fvalue == value && fname.eq_ignore_ascii_case(name) {
                    let fn_obj = if fname == name {
                        n.clone()
                    } else {
                        name_str(py, fname)
                    };
                    forward.push((fn_obj, v.clone()).into_pyobject(py)?);
                    pending.next();
                }
            }
            headers.push((n, v).into_pyobject(py)?);
        }
        for (fname, fvalue) in pending {
            forward.push((name_str(py, fname), PyString::new(py, fvalue)).into_pyobject(py)?);
        }
        Ok(Http1ResponseHead {
            status: head.status,
            reason: PyString::new(py, &head.reason).unbind(),
            http11: head.version == Version::Http11,
            headers: PyList::new(py, headers)?.unbind(),
            forward: PyList::new(py, forward)?.unbind(),
            has_request_id: head.has_request_id,
            content_length: head.content_length,
            retry_after: head.retry_after,
            keep_alive: head.keep_alive,
            close_delimited: head.close_delimited,
            chunked: head.chunked,
        })
    }
}

#[pymethods]
impl Http1ResponseHead {
    /// Reason phrase (latin-1 decoded, may be empty).
    #[getter]
    fn reason(&self, py: Python<'_>) -> Py<PyString> {
        self.reason.clone_ref(py)
    }
    /// "1.0" or "1.1".
    #[getter]
    fn version<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        if self.http11 {
            intern!(py, "1.1").clone()
        } else {
            intern!(py, "1.0").clone()
        }
    }
    /// Fields as received (original name case).
    #[getter]
    fn headers(&self, py: Python<'_>) -> Py<PyList> {
        self.headers.clone_ref(py)
    }
    /// Fields to pass on: lowercase names, no hop-by-hop or Connection-named fields.
    #[getter]
    fn forward(&self, py: Python<'_>) -> Py<PyList> {
        self.forward.clone_ref(py)
    }
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Http1ResponseHead(status={}, reason={:?}, version={:?}, content_length={})",
            self.status,
            self.reason.bind(py).to_string(),
            if self.http11 { "1.1" } else { "1.0" },
            self.content_length
        )
    }
}

/// Incremental parser of the responses on one upstream connection (one thread at a time).
#[pyclass(module = "agentgate._core")]
pub struct Http1ResponseParser {
    inner: ResponseParser,
}

impl Http1ResponseParser {
    /// Wraps a core parser, state included (a connection handing its stream over to Python).
    pub(crate) fn from_core(inner: ResponseParser) -> Self {
        Http1ResponseParser { inner }
    }
}

#[pymethods]
impl Http1ResponseParser {
    #[new]
    #[pyo3(signature = (max_head = DEFAULT_MAX_HEAD, max_headers = DEFAULT_MAX_HEADERS))]
    fn new(max_head: usize, max_headers: usize) -> PyResult<Self> {
        if max_head == 0 {
            return Err(PyValueError::new_err("max_head must be >= 1, got 0"));
        }
        Ok(Http1ResponseParser {
            inner: ResponseParser::new(Limits {
                max_head,
                max_headers,
            }),
        })
    }

    /// A request went out; expect its response (`is_head`: it has no body).
    fn start(&mut self, is_head: bool) -> PyResult<()> {
        self.inner.start(is_head).map_err(value_err)
    }

    /// (head or None, body bytes or None, done, reusable) for one received segment.
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &Bound<'py, PyBytes>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let bytes = data.as_bytes();
        let fed = self.inner.feed(bytes).map_err(value_err)?;
        let head = match fed.head {
            Some(h) => Some(Bound::new(py, Http1ResponseHead::from_core(py, h)?)?),
            None => None,
        };
        let body = if fed.body.is_empty() {
            None
        } else if let Some(r) = fed.body.single() {
            if r.start == 0 && r.end == bytes.len() {
                // The whole segment is body: hand the same object back, no copy.
                Some(data.clone())
            } else {
                Some(PyBytes::new(py, bytes.get(r).unwrap_or_default()))
            }
        } else {
            Some(PyBytes::new_with(py, fed.body.len(), |buf| {
                fed.body.copy_into(bytes, buf);
                Ok(())
            })?)
        };
        (head, body, fed.done, fed.reusable).into_pyobject(py)
    }

    /// The upstream closed: True if that ended a close-delimited body, False when idle.
    fn feed_eof(&mut self) -> PyResult<bool> {
        self.inner.feed_eof().map_err(value_err)
    }

    /// No request in flight.
    #[getter]
    fn idle(&self) -> bool {
        self.inner.is_idle()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Http1ResponseParser>()?;
    m.add_class::<Http1ResponseHead>()
}
