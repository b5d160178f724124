//! HTTPS served by pushwarden itself, with rustls.
//!
//! Vaultwarden only accepts `https` URIs for its push relay and identity URIs, so an operator
//! who runs pushwarden as a push relay must be able to give it a certificate and key and have
//! it terminate TLS on its own, with no reverse proxy in front.
//!
//! [`load_server_config`] reads a PEM certificate chain and private key into a rustls
//! [`ServerConfig`] (aws-lc-rs provider, ALPN `http/1.1` only: pushwarden's WebSocket upgrade
//! is HTTP/1.1's, and a browser offered `h2` may try WebSockets over HTTP/2, RFC 8441). [`TlsListener`] is an
//! [`axum::serve::Listener`] that accepts TCP connections and runs each TLS handshake in its own
//! task, with a timeout, so a slow or silent client never holds up anyone else.
//!
//! axum provides `Connected<IncomingStream<'_, L>>` for [`SocketAddr`] only for its own
//! listeners and for [`TapIo`], and the orphan rule keeps us from adding it for
//! [`TlsListener`]; to keep `ConnectInfo<SocketAddr>` working, serve
//! [`TlsListener::for_connect_info`]:
//!
//! ```no_run
//! # async fn example(
//! #     router: axum::Router,
//! #     stop: impl std::future::Future<Output = ()> + Send + 'static,
//! # ) -> anyhow::Result<()> {
//! use std::net::SocketAddr;
//! use std::path::Path;
//!
//! use pushwarden::tls::{load_server_config, TlsListener};
//!
//! let config = load_server_config(Path::new("cert.pem"), Path::new("key.pem"))?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
//! axum::serve(
//!     TlsListener::new(listener, config).for_connect_info(),
//!     router.into_make_service_with_connect_info::<SocketAddr>(),
//! )
//! .with_graceful_shutdown(stop)
//! .await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use axum::serve::{Listener, ListenerExt, TapIo};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to complete its TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Pause after an accept error that is not about one connection (e.g. `EMFILE`), as axum's
/// own `TcpListener` does, instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Counter of TLS handshakes that failed or timed out (label `reason`: `error` or `timeout`).
pub const HANDSHAKE_FAILURES_METRIC: &str = "pushwarden_tls_handshake_failures_total";

/// Reads a PEM certificate chain (end-entity certificate first) and a PEM private key (PKCS#8,
/// PKCS#1/RSA or SEC1/EC) and builds a rustls server configuration: aws-lc-rs provider, safe
/// default protocol versions (TLS 1.2 and 1.3), no client authentication, ALPN `http/1.1`.
pub fn load_server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>> {
    let cert_pem = std::fs::read(cert_file)
        .with_context(|| format!("reading TLS certificate file {}", cert_file.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate file {}", cert_file.display()))?;
    if chain.is_empty() {
        bail!(
            "TLS certificate file {} contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cert_file.display()
        );
    }

    let key_pem = std::fs::read(key_file)
        .with_context(|| format!("reading TLS private key file {}", key_file.display()))?;
    crate::secrets::check_private(key_file, "the TLS private key file")?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => bail!(
            "TLS private key file {} contains no PEM private key \
             (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
            key_file.display()
        ),
        Err(e) => {
            return Err(anyhow!(e))
                .with_context(|| format!("parsing TLS private key file {}", key_file.display()))
        }
    };

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => anyhow!(
                "the private key in {} does not match the certificate in {}",
                key_file.display(),
                cert_file.display()
            ),
            other => anyhow!(other).context(format!(
                "using TLS certificate {} with private key {}",
                cert_file.display(),
                key_file.display()
            )),
        })?;
    // Not h2: WebSockets are upgraded the HTTP/1.1 way (see the module comment).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An [`axum::serve::Listener`] serving TLS over a [`TcpListener`].
///
/// A background task accepts TCP connections and runs every handshake in its own task (bounded
/// by a timeout); [`Listener::accept`] only hands out connections whose handshake has
/// completed. Failed handshakes are logged at debug level and counted in
/// `pushwarden_tls_handshake_failures_total`; they never stop the listener. Dropping the
/// `TlsListener` (as `axum::serve` does on graceful shutdown) stops the background task, closes
/// the listening socket and drops every handshake still in progress.
pub struct TlsListener {
    listener: Arc<TcpListener>,
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    task: JoinHandle<()>,
}

/// A [`TlsListener`] wrapped in a no-op [`TapIo`], for which axum implements
/// `Connected<IncomingStream<'_, _>>` for [`SocketAddr`]; see
/// [`TlsListener::for_connect_info`].
pub type ConnectInfoTlsListener = TapIo<TlsListener, fn(&mut TlsStream<TcpStream>)>;

impl TlsListener {
    /// Serves TLS with `config` on `listener`, with the default handshake timeout
    /// ([`HANDSHAKE_TIMEOUT`]). Must be called within a Tokio runtime: it spawns the accept task.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        Self::with_handshake_timeout(listener, config, HANDSHAKE_TIMEOUT)
    }

    /// Like [`TlsListener::new`], with a chosen handshake timeout.
    pub fn with_handshake_timeout(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        handshake_timeout: Duration,
    ) -> TlsListener {
        let listener = Arc::new(listener);
        let (sender, incoming) = mpsc::channel(ACCEPTED_QUEUE);
        let task = tokio::spawn(accept_loop(
            listener.clone(),
            TlsAcceptor::from(config),
            sender,
            handshake_timeout,
        ));
        TlsListener {
            listener,
            incoming,
            task,
        }
    }

    /// Wraps the listener so that `Router::into_make_service_with_connect_info::<SocketAddr>()`
    /// works with it: axum implements `Connected` for `SocketAddr` on [`TapIo`] listeners, and
    /// the orphan rule forbids implementing it here for `TlsListener` itself.
    pub fn for_connect_info(self) -> ConnectInfoTlsListener {
        fn no_op(_: &mut TlsStream<TcpStream>) {}
        self.tap_io(no_op as fn(&mut TlsStream<TcpStream>))
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            None => {
                // The accept task only returns once this receiver is gone, so it panicked.
                tracing::error!("the TLS accept task stopped; no more connections are accepted");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

async fn accept_loop(
    listener: Arc<TcpListener>,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    handshake_timeout: Duration,
) {
    // Owning the handshakes here means they are all dropped with this task.
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    handshakes.spawn(handshake(
                        acceptor.clone(),
                        stream,
                        peer,
                        sender.clone(),
                        handshake_timeout,
                    ));
                }
                Err(e) => handle_accept_error(e).await,
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            () = sender.closed() => return,
        }
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    handshake_timeout: Duration,
) {
    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // Fails only when the listener is gone, and then the connection goes with it.
            let _ = sender.send((tls, peer)).await;
        }
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            metrics::counter!(HANDSHAKE_FAILURES_METRIC, "reason" => "error").increment(1);
        }
        Err(_) => {
            tracing::debug!(%peer, timeout = ?handshake_timeout, "TLS handshake timed out");
            metrics::counter!(HANDSHAKE_FAILURES_METRIC, "reason" => "timeout").increment(1);
        }
    }
}

/// As axum's `TcpListener` does: errors about one connection are skipped, anything else
/// (e.g. `EMFILE`, too many open files) is logged and followed by a pause.
async fn handle_accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error; pausing before accepting again");
    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
}
