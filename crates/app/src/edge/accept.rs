//! The accept loop. Every connection takes a slot in the caps before anything is read from it;
//! a TLS handshake, each request's headers and the gaps between keep-alive requests are timed;
//! every request body gets a deadline; and each request learns who its client is.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use super::caps::{ConnectionCaps, Counted};
use super::deadline::DeadlineBody;
use super::peer::TrustedProxies;
use super::REFUSED_METRIC;

/// Largest request head (request line and headers) read; tokens in the query string are the
/// largest part a client sends (a few KB).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Refusals being written at once; past this a refused socket is just closed.
const MAX_REFUSING: usize = 32;
/// How long a refusal may take to write and linger.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
content-length: 41\r\nretry-after: 5\r\nconnection: close\r\n\r\n{\"error\":\"too many connections, try later\"}";

/// The edge's settings.
#[derive(Clone, Debug)]
pub struct EdgeOptions {
    /// Time for a TLS handshake, for a request's headers, and between keep-alive requests.
    pub header_read_timeout: Duration,
    /// Time for a whole request body.
    pub body_read_timeout: Duration,
    pub trusted: Arc<TrustedProxies>,
}

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            trusted: Arc::new(TrustedProxies::default()),
        }
    }
}

/// The TCP peer of a request (a request's `ConnectInfo` holds the client, which differs
/// behind a trusted proxy).
#[derive(Clone, Copy, Debug)]
pub struct TcpPeer(pub SocketAddr);

/// Whether the client reached the service over HTTPS: pushwarden's own TLS, or a trusted
/// proxy's `X-Forwarded-Proto: https` (a request extension, like [`TcpPeer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secure(pub bool);

struct Shared {
    router: Router,
    options: EdgeOptions,
    http: hyper::server::conn::http1::Builder,
    tls: Option<TlsAcceptor>,
}

/// Serves `router` on `listener` until `stop` completes, then lets each open HTTP exchange
/// finish (WebSockets, already upgraded, are the hubs' to close).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
    options: EdgeOptions,
    caps: Arc<ConnectionCaps>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let shared = Arc::new(Shared {
        router,
        options,
        http,
        tls: tls.map(TlsAcceptor::from),
    });
    let (closing, closing_rx) = watch::channel(false);
    let active = Arc::new(AtomicUsize::new(0));
    let refusing = Arc::new(AtomicUsize::new(0));
    let mut last_error_log: Option<Instant> = None;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e, &mut last_error_log).await;
                    continue;
                }
            },
        };
        let exempt = shared.options.trusted.contains(peer.ip());
        let slot = match caps.try_open(peer.ip(), exempt) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics::counter!(REFUSED_METRIC, "reason" => refusal.label()).increment(1);
                tracing::debug!(%peer, reason = refusal.label(), "connection refused: cap reached");
                refuse(stream, &refusing);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        active.fetch_add(1, Ordering::AcqRel);
        let guard = ActiveGuard(active.clone());
        let io = Counted::new(stream, slot);
        // Two task kinds, so that a plain connection's task does not carry room for a TLS
        // handshake: thousands of them are in flight while clients connect, and the heap keeps
        // that high-water mark.
        match shared.tls.clone() {
            None => tokio::spawn(plain(io, peer, shared.clone(), closing_rx.clone(), guard)),
            Some(acceptor) => tokio::spawn(handshake_then_serve(
                acceptor,
                io,
                peer,
                shared.clone(),
                closing_rx.clone(),
                guard,
            )),
        };
    }
    drop(listener);
    let _ = closing.send(true);
    while active.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Errors about one connection are skipped. Running out of file descriptors (which the caps
/// are sized to prevent) pauses briefly rather than for a second, so the service keeps
/// answering as soon as one is free; it is logged at most once a second.
async fn accept_error(e: io::Error, last_log: &mut Option<Instant>) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    metrics::counter!("pushwarden_accept_errors_total").increment(1);
    if last_log.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
        tracing::error!(error = %e, "accept error (lower PUSHWARDEN_MAX_CONNECTIONS or raise the open-file limit)");
        *last_log = Some(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Answers 503 and closes. The answer is written at once, without waiting (a fresh socket's
/// buffer takes it); a few refused sockets linger to drain what their client sent, so that
/// closing does not reset the connection before the answer is read. Bounded in number and time.
fn refuse(mut stream: TcpStream, refusing: &Arc<AtomicUsize>) {
    if stream.try_write(REFUSAL).is_err() {
        return;
    }
    if refusing.fetch_add(1, Ordering::AcqRel) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let refusing = refusing.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_TIME, async {
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
        refusing.fetch_sub(1, Ordering::AcqRel);
    });
}

async fn plain(
    io: Counted<TcpStream>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
    _active: ActiveGuard,
) {
    drive(io, peer, shared, closing, false).await;
}

async fn handshake_then_serve(
    acceptor: TlsAcceptor,
    io: Counted<TcpStream>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    closing: watch::Receiver<bool>,
    _active: ActiveGuard,
) {
    let limit = shared.options.header_read_timeout;
    let mut stopping = closing.clone();
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(limit, acceptor.accept(io)) => handshake,
        // A handshake in progress does not hold a shutdown up.
        _ = async { let _ = stopping.wait_for(|c| *c).await; } => return,
    };
    match handshake {
        Ok(Ok(tls)) => drive(tls, peer, shared, closing, true).await,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            metrics::counter!(crate::tls::HANDSHAKE_FAILURES_METRIC, "reason" => "error")
                .increment(1);
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?limit, "TLS handshake timed out");
            metrics::counter!(crate::tls::HANDSHAKE_FAILURES_METRIC, "reason" => "timeout")
                .increment(1);
        }
    }
}

async fn drive<I>(
    io: I,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut closing: watch::Receiver<bool>,
    tls: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |request| {
        let shared = service_shared.clone();
        route(&shared, peer, tls, request)
    });
    let conn = shared
        .http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
        }
        _ = async { let _ = closing.wait_for(|c| *c).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn route(
    shared: &Shared,
    peer: SocketAddr,
    tls: bool,
    request: http::Request<Incoming>,
) -> axum::routing::future::RouteFuture<std::convert::Infallible> {
    let trusted = &shared.options.trusted;
    let client = trusted.client(peer.ip(), request.headers());
    let secure =
        tls || (trusted.contains(peer.ip()) && super::peer::forwarded_https(request.headers()));
    let (mut parts, body) = request.into_parts();
    parts
        .extensions
        .insert(ConnectInfo(SocketAddr::new(client, peer.port())));
    parts.extensions.insert(TcpPeer(peer));
    parts.extensions.insert(Secure(secure));
    // Bodiless requests (upgrades, polls) skip the deadline and its timer.
    let body = if body.is_end_stream() {
        axum::body::Body::new(body)
    } else {
        axum::body::Body::new(DeadlineBody::new(body, shared.options.body_read_timeout))
    };
    shared
        .router
        .clone()
        .call(http::Request::from_parts(parts, body))
}

/// Raises the soft open-file limit to the hard one and returns the limit in force (the caps
/// are sized from it).
pub fn open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "could not read the open-file limit; assuming 1024");
            1024
        }
    }
}
