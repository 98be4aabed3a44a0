//! The upstream HTTP/1.1 client: one endpoint, its keep-alive connections, and typed errors.
//!
//! Built on hyper's connection-level client (`hyper::client::conn::http1`) rather than a pooled
//! client: the gateway already knows which endpoint a request goes to (the balancer picked it),
//! so the pool here is a plain per-endpoint stack of idle connections, and every timer and error
//! is ours to classify. Endpoints are `http://host:port[/prefix]`, `https://…` (rustls, Mozilla
//! roots plus an optional CA file) or `unix:/path/to.sock`.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config;
use crate::proxy::body::{BodyError, ReqBody};
use crate::proxy::health::ProbeState;

/// Idle connections older than this are closed instead of reused.
const IDLE_TTL: Duration = Duration::from_secs(30);
/// Idle connections kept per endpoint.
const MAX_IDLE: usize = 512;

/// What went wrong with an upstream attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection could not be made (refused, unreachable, DNS, TLS).
    ConnectFailure,
    /// Connecting took longer than `timeouts.connect`.
    ConnectTimeout,
    /// No response head within `timeouts.first_byte`.
    FirstByteTimeout,
    /// No body bytes within `timeouts.idle`.
    IdleTimeout,
    /// The request ran past `timeouts.total`.
    TotalTimeout,
    /// The connection closed or broke before the response head.
    Reset,
    /// The upstream's answer is not HTTP/1.1.
    Protocol,
    /// The client's streamed body went over the route's `max_body`.
    BodyTooLarge,
    /// Reading the client's body failed (the client went away mid-upload).
    ClientBody,
}

impl ErrorKind {
    /// A stable name, for logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ConnectFailure => "connect_failure",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::FirstByteTimeout => "first_byte_timeout",
            ErrorKind::IdleTimeout => "idle_timeout",
            ErrorKind::TotalTimeout => "total_timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::ClientBody => "client_body",
        }
    }
}

/// A failed upstream attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct UpstreamError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Human detail (never contains request data).
    pub detail: String,
    /// It happened on a reused keep-alive connection before any response byte: the request
    /// may not have reached the upstream, and one immediate retry on a new connection is safe.
    pub stale: bool,
}

impl UpstreamError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        UpstreamError {
            kind,
            detail: detail.into(),
            stale: false,
        }
    }
}

enum Target {
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
        name: ServerName<'static>,
        tls: TlsConnector,
    },
    Unix(PathBuf),
}

struct Idle {
    tx: SendRequest<ReqBody>,
    since: Instant,
}

/// One upstream endpoint and its idle keep-alive connections.
pub struct Endpoint {
    /// The configured URL (the endpoint's id).
    pub url: Arc<str>,
    target: Target,
    /// `Host` sent with `host_header: upstream`.
    pub authority: HeaderValue,
    /// The URL's path, prepended to every forwarded path ("" for none).
    pub prefix: String,
    idle: parking_lot::Mutex<Vec<Idle>>,
    opened: AtomicU64,
    /// What the last health probes found.
    pub health: parking_lot::Mutex<ProbeState>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("url", &self.url).finish()
    }
}

fn tls_connector(tls: &config::Tls) -> Result<TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &tls.ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("tls.ca_file {path:?}: {e}"))?;
        let mut n = 0;
        for c in certs {
            let c = c.map_err(|e| format!("tls.ca_file {path:?}: {e}"))?;
            roots
                .add(c)
                .map_err(|e| format!("tls.ca_file {path:?}: {e}"))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("tls.ca_file {path:?}: no certificate in the file"));
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(cfg)))
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad IPv6 host in {authority:?}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| format!("bad port in {authority:?}"))?,
            None => default_port,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse()
                .map_err(|_| format!("bad port in {authority:?}"))?,
        )),
        None => Ok((authority.to_string(), default_port)),
    }
}

impl Endpoint {
    /// An endpoint for a configured URL.
    pub fn new(url: &str, tls: &config::Tls) -> Result<Endpoint, String> {
        let (target, authority, prefix) = if let Some(path) = url.strip_prefix("unix:") {
            // unix:/path and unix:///path both name an absolute socket path
            let path = path.trim_start_matches("//");
            if !path.starts_with('/') {
                return Err(format!("unix socket path must be absolute, got {url:?}"));
            }
            (
                Target::Unix(PathBuf::from(path)),
                HeaderValue::from_static("localhost"),
                String::new(),
            )
        } else {
            let (scheme, rest) = url
                .split_once("://")
                .ok_or_else(|| format!("expected http://, https:// or unix:, got {url:?}"))?;
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
                None => (rest, ""),
            };
            if authority.is_empty() {
                return Err(format!("url has no host: {url:?}"));
            }
            let host_value =
                HeaderValue::from_str(authority).map_err(|_| format!("bad host in {url:?}"))?;
            let target = match scheme {
                "http" => {
                    let (host, port) = split_host_port(authority, 80)?;
                    Target::Tcp { host, port }
                }
                "https" => {
                    let (host, port) = split_host_port(authority, 443)?;
                    let name = ServerName::try_from(host.clone())
                        .map_err(|_| format!("bad TLS server name in {url:?}"))?;
                    Target::Tls {
                        host,
                        port,
                        name,
                        tls: tls_connector(tls)?,
                    }
                }
                other => return Err(format!("unsupported scheme {other:?} in {url:?}")),
            };
            (target, host_value, path.to_string())
        };
        Ok(Endpoint {
            url: url.into(),
            target,
            authority,
            prefix,
            idle: parking_lot::Mutex::new(Vec::new()),
            opened: AtomicU64::new(0),
            health: parking_lot::Mutex::new(ProbeState::default()),
        })
    }

    /// Connections opened so far (the rest of the requests reused one).
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Idle keep-alive connections right now.
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().len()
    }

    fn checkout(&self) -> Option<SendRequest<ReqBody>> {
        let mut idle = self.idle.lock();
        while let Some(c) = idle.pop() {
            if c.since.elapsed() < IDLE_TTL && !c.tx.is_closed() && c.tx.is_ready() {
                return Some(c.tx);
            }
        }
        None
    }

    fn checkin(&self, tx: SendRequest<ReqBody>) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    async fn connect(
        &self,
        timeout: Option<Duration>,
    ) -> Result<SendRequest<ReqBody>, UpstreamError> {
        let fut = self.open();
        let tx = match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| {
                UpstreamError::new(
                    ErrorKind::ConnectTimeout,
                    format!("connect to {} timed out", self.url),
                )
            })??,
            None => fut.await?,
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(tx)
    }

    async fn open(&self) -> Result<SendRequest<ReqBody>, UpstreamError> {
        let fail = |e: std::io::Error| {
            UpstreamError::new(
                ErrorKind::ConnectFailure,
                format!("connect to {} failed: {e}", self.url),
            )
        };
        match &self.target {
            Target::Tcp { host, port } => {
                let s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(fail)?;
                let _ = s.set_nodelay(true);
                handshake(TokioIo::new(s), &self.url).await
            }
            Target::Tls {
                host,
                port,
                name,
                tls,
            } => {
                let s = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(fail)?;
                let _ = s.set_nodelay(true);
                let s = tls.connect(name.clone(), s).await.map_err(|e| {
                    UpstreamError::new(
                        ErrorKind::ConnectFailure,
                        format!("TLS handshake with {} failed: {e}", self.url),
                    )
                })?;
                handshake(TokioIo::new(s), &self.url).await
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path).await.map_err(fail)?;
                handshake(TokioIo::new(s), &self.url).await
            }
        }
    }

    /// Sends one request and waits for the response head (at most `first_byte`); the response
    /// body streams from the connection, which returns to the idle stack once it is read.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<ReqBody>,
        connect: Option<Duration>,
        first_byte: Option<Duration>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (mut tx, reused) = match self.checkout() {
            Some(tx) => (tx, true),
            None => (self.connect(connect).await?, false),
        };
        let fut = tx.try_send_request(req);
        let res = match first_byte {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(UpstreamError::new(
                        ErrorKind::FirstByteTimeout,
                        format!("no response head from {} within {t:?}", self.url),
                    ))
                }
            },
            None => fut.await,
        };
        match res {
            Ok(resp) => {
                // back to the idle stack once the response body is read (hyper's own pool does
                // the same with a task per response)
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    if tx.ready().await.is_ok() {
                        me.checkin(tx);
                    }
                });
                Ok(resp)
            }
            Err(mut e) => {
                let unsent = e.take_message().is_some();
                let mut err = classify(e.error(), &self.url);
                // on a reused connection, a request that never got a byte back may never have
                // been read by the upstream: one fresh attempt is safe (checked by the caller)
                err.stale = reused
                    && (unsent || err.kind == ErrorKind::Reset)
                    && !matches!(err.kind, ErrorKind::BodyTooLarge | ErrorKind::ClientBody);
                Err(err)
            }
        }
    }
}

async fn handshake<T>(io: TokioIo<T>, url: &str) -> Result<SendRequest<ReqBody>, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (tx, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| UpstreamError::new(ErrorKind::ConnectFailure, format!("{url}: {e}")))?;
    tokio::spawn(async move {
        // upgrades keep the connection for WebSocket passthrough; errors end only this conn
        let _ = conn.with_upgrades().await;
    });
    Ok(tx)
}

/// The kind of a hyper client error.
pub fn classify(e: &hyper::Error, url: &str) -> UpstreamError {
    let mut src: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = src {
        if let Some(b) = s.downcast_ref::<BodyError>() {
            return match b {
                BodyError::TooLarge(n) => UpstreamError::new(
                    ErrorKind::BodyTooLarge,
                    format!("request body exceeds {n} bytes"),
                ),
                BodyError::Client(m) => {
                    UpstreamError::new(ErrorKind::ClientBody, format!("client body: {m}"))
                }
            };
        }
        src = s.source();
    }
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        return UpstreamError::new(
            ErrorKind::Protocol,
            format!("{url} answered with malformed HTTP: {e}"),
        );
    }
    UpstreamError::new(
        ErrorKind::Reset,
        format!("{url} closed the connection: {e}"),
    )
}
