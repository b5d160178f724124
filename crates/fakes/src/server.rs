//! The HTTP server under every fake: HTTP/1.1 and HTTP/2 with prior knowledge on one port,
//! counted connections, and a stop signal that closes the listener and every open connection.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Returned by a handler to drop the connection without an answer, which is how a service that
/// does not speak the client's protocol at all appears to that client.
#[derive(Debug)]
pub(crate) struct CloseConnection;

impl std::fmt::Display for CloseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed by the fake")
    }
}

impl std::error::Error for CloseConnection {}

pub(crate) trait Handler: Send + Sync + 'static {
    /// State kept for the life of one connection (APNs judges token changes per connection).
    type Conn: Default + Send + Sync + 'static;

    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<Self::Conn>,
    ) -> impl Future<Output = Result<Response<Body>, CloseConnection>> + Send;
}

#[derive(Default)]
pub(crate) struct Stats {
    connections: AtomicUsize,
    /// Connections by the protocol of their first request; one that never carried a request
    /// is in neither.
    http1_connections: AtomicUsize,
    http2_connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Stats {
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(crate) fn http1_connections(&self) -> usize {
        self.http1_connections.load(Ordering::SeqCst)
    }

    pub(crate) fn http2_connections(&self) -> usize {
        self.http2_connections.load(Ordering::SeqCst)
    }

    /// Counts the connection a first request arrived on, by that request's protocol (one
    /// connection never mixes them).
    fn first_request(&self, version: http::Version) {
        let counter = if version == http::Version::HTTP_2 {
            &self.http2_connections
        } else {
            &self.http1_connections
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// Counts a request as in flight until its handler finishes or is dropped with the connection.
struct InFlight(Arc<Stats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A bound listener not yet serving, so a fake can learn its own URL (FCM's token audience,
/// Web Push's VAPID audience) before the first request can arrive.
pub(crate) struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Bound {
    pub(crate) async fn bind(addr: Option<SocketAddr>) -> io::Result<Bound> {
        let listener = TcpListener::bind(addr.unwrap_or((Ipv4Addr::LOCALHOST, 0).into())).await?;
        let addr = listener.local_addr()?;
        Ok(Bound { listener, addr })
    }

    pub(crate) fn url(&self) -> String {
        url_for(self.addr)
    }

    pub(crate) fn serve<H: Handler>(self, handler: Arc<H>) -> Server {
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        tokio::spawn(accept_loop(self.listener, handler, stop_rx, stats.clone()));
        Server {
            addr: self.addr,
            stop,
            stats,
        }
    }
}

/// The base URL clients use. A wildcard listen address is not something to connect to, so it
/// is shown as the loopback address of the same family.
fn url_for(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

pub(crate) struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    stats: Arc<Stats>,
}

impl Server {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn url(&self) -> String {
        url_for(self.addr)
    }

    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Also fires if the sender is gone, which means the same thing.
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "fake push service: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        stats.connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve_connection(
            stream,
            handler.clone(),
            stop.clone(),
            stats.clone(),
        ));
    }
}

async fn serve_connection<H: Handler>(
    stream: tokio::net::TcpStream,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    let conn_state = Arc::new(H::Conn::default());
    let seen_request = Arc::new(AtomicBool::new(false));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let conn_state = conn_state.clone();
        if !seen_request.swap(true, Ordering::SeqCst) {
            stats.first_request(req.version());
        }
        let in_flight = stats.enter();
        async move {
            let response = handler.handle(req, conn_state).await;
            drop(in_flight);
            response
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::select! {
        // Errors here are clients going away or speaking garbage; the handler has already
        // recorded whatever is worth recording.
        _ = builder.serve_connection(TokioIo::new(stream), service) => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
}
