//! The data-plane listener: accepts connections and serves HTTP/1.1 (with upgrades) and h2c
//! with hyper on the core's tokio runtime; shutdown stops accepting and drains what is open.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::handler::{handle, Shared};

/// hyper answers a bare 431 above this many header fields; below it, the gateway's own check
/// answers with a problem body. Raising it costs a heap allocation per request (hyper's docs).
const HYPER_MAX_HEADERS: usize = 100;

/// Binds a TCP listener (`SO_REUSEADDR`, backlog 1024) on `addr`; port 0 picks a free port.
pub fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    let sa: SocketAddr = addr.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("expected host:port with an IP address, got {addr:?}"),
        )
    })?;
    let domain = socket2::Domain::for_address(sa);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&sa.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// A running listener.
pub struct Listener {
    /// The bound address.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl Listener {
    /// Stops accepting and waits up to `grace` for open connections to finish their requests;
    /// returns whether they all did.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        let _ = self.stop.send(true);
        let mut done = self.done.clone();
        let finished = tokio::time::timeout(grace, done.wait_for(|d| *d)).await;
        finished.is_ok()
    }
}

/// Serves `listener` on the current runtime until shut down.
pub fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    max_header_bytes: usize,
    max_headers: usize,
) -> std::io::Result<Listener> {
    let listener = TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let (done_tx, done) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    {
        let mut h1 = builder.http1();
        h1.timer(TokioTimer::new());
        // hyper's default read buffer (~400 KiB) holds any head below it; only larger caps
        // need a larger buffer
        if max_header_bytes > 256 * 1024 {
            h1.max_buf_size(max_header_bytes + 16 * 1024);
        }
        if max_headers >= HYPER_MAX_HEADERS {
            h1.max_headers(max_headers + 1);
        }
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
        );
    tokio::spawn(accept_loop(listener, shared, builder, stop_rx, done_tx));
    Ok(Listener { addr, stop, done })
}

/// Whether a connection ended on a request head over hyper's limits (more fields than
/// `max_headers`, or larger than its read buffer), which hyper answers with a bare 431.
fn head_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<hyper::Error>()
        .is_some_and(hyper::Error::is_parse_too_large)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    builder: auto::Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
    done: watch::Sender<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let engine = shared.engine.clone();
                    let shared = shared.clone();
                    let svc = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(shared, req, peer).await) }
                    });
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            if head_too_large(&*e) {
                                // hyper answered 431 itself (past its parser's limits): count it
                                // with the gateway's own 431s
                                engine.gateway_stats.rejected(431);
                            }
                        }
                    });
                }
                // out of file descriptors or similar: back off instead of spinning
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    let _ = done.send(true);
}
