//! The network side every check shares: one HTTP client and one TLS configuration (system
//! roots plus `--ca-file`), answers read with a bound, WebSockets over TCP or TLS, and the
//! proxy recognised along the way.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;
use url::Url;

use crate::origin::{recognise, Answer};
use crate::target::Target;
use crate::verdict::Proxy;

/// How much of a body is kept: enough for any error page or pushwarden answer.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What a check cannot do without: the target, the clients and the deadlines.
pub struct Net {
    pub target: Target,
    /// Deadline of each step (connect, upgrade, handshake, first event).
    pub timeout: Duration,
    http: reqwest::Client,
    pub(crate) roots: Arc<RootCertStore>,
    tls: Arc<ClientConfig>,
    seen: Mutex<Option<Proxy>>,
}

/// Why a request got no HTTP answer.
#[derive(Debug, Clone)]
pub enum NoAnswer {
    /// Nothing within the deadline.
    Timeout(Duration),
    /// TLS handshake failed (the `tls.*` checks say why in detail).
    Tls(String),
    /// TCP connect or the connection failed.
    Connection(String),
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::Timeout(d) => write!(f, "no answer within {}", seconds(*d)),
            NoAnswer::Tls(e) => write!(f, "TLS failed: {e}"),
            NoAnswer::Connection(e) => write!(f, "connection failed: {e}"),
        }
    }
}

/// Any stream a WebSocket can run over (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Socket = WebSocketStream<Box<dyn Io>>;

/// An upgrade that did not become a WebSocket.
#[derive(Debug)]
pub enum UpgradeRefused {
    /// An HTTP answer other than 101.
    Answer(Answer),
    NoAnswer(NoAnswer),
}

impl Net {
    /// Builds the clients; `ca_file` adds trusted roots (PEM, one or more certificates).
    pub fn new(target: Target, timeout: Duration, ca_file: Option<&Path>) -> Result<Net, String> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--ca-file {}: no PEM certificate in it",
                    path.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            }
        }
        let roots = Arc::new(roots);
        let tls = client_config(roots.clone())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .user_agent(concat!("pushwarden-doctor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Net {
            target,
            timeout,
            http,
            roots,
            tls,
            seen: Mutex::new(None),
        })
    }

    /// The proxy recognised in any answer so far.
    pub fn proxy_seen(&self) -> Option<Proxy> {
        self.seen.lock().ok().and_then(|seen| *seen)
    }

    fn note(&self, headers: &HeaderMap, body: &[u8]) {
        if let Some(proxy) = recognise(headers, body) {
            if let Ok(mut seen) = self.seen.lock() {
                seen.get_or_insert(proxy);
            }
        }
    }

    /// Starts a request; the caller reads the body (for streams).
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
        deadline: Duration,
    ) -> Result<reqwest::Response, NoAnswer> {
        let mut request = self.http.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        match tokio::time::timeout(deadline, request.send()).await {
            Err(_) => Err(NoAnswer::Timeout(deadline)),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// A whole request: the answer with its body (bounded), all within `deadline`.
    pub async fn fetch(
        &self,
        method: Method,
        url: Url,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
        deadline: Duration,
    ) -> Result<Answer, NoAnswer> {
        let work = async {
            let response = self.send(method, url, headers, body, deadline).await?;
            self.read(response).await
        };
        tokio::time::timeout(deadline, work)
            .await
            .unwrap_or(Err(NoAnswer::Timeout(deadline)))
    }

    /// Reads a response's body up to [`BODY_LIMIT`].
    pub async fn read(&self, mut response: reqwest::Response) -> Result<Answer, NoAnswer> {
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while body.len() < BODY_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err(classify(&e)),
            }
        }
        body.truncate(BODY_LIMIT);
        self.note(&headers, &body);
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Records the proxy named by an answer's headers (for answers read piecemeal).
    pub fn note_headers(&self, headers: &HeaderMap) {
        self.note(headers, &[]);
    }

    /// Opens a WebSocket to `url` (http/https; the ws scheme is derived): TCP, TLS for https,
    /// then the upgrade, all within the step deadline.
    pub async fn websocket(&self, url: &Url) -> Result<(Socket, HeaderMap), UpgradeRefused> {
        let deadline = self.timeout;
        match tokio::time::timeout(deadline, self.open_websocket(url)).await {
            Err(_) => Err(UpgradeRefused::NoAnswer(NoAnswer::Timeout(deadline))),
            Ok(result) => result,
        }
    }

    async fn open_websocket(&self, url: &Url) -> Result<(Socket, HeaderMap), UpgradeRefused> {
        let stream = self.connect(url).await.map_err(UpgradeRefused::NoAnswer)?;
        let ws_url = Target::websocket(url);
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| UpgradeRefused::NoAnswer(NoAnswer::Connection(e.to_string())))?;
        if let Ok(agent) =
            http::HeaderValue::from_str(concat!("pushwarden-doctor/", env!("CARGO_PKG_VERSION")))
        {
            request
                .headers_mut()
                .insert(http::header::USER_AGENT, agent);
        }
        match tokio_tungstenite::client_async_with_config(request, stream, None).await {
            Ok((socket, response)) => {
                self.note(response.headers(), &[]);
                Ok((socket, response.headers().clone()))
            }
            Err(WsError::Http(response)) => {
                let (parts, body) = response.into_parts();
                let mut body = body.unwrap_or_default();
                body.truncate(BODY_LIMIT);
                self.note(&parts.headers, &body);
                Err(UpgradeRefused::Answer(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                }))
            }
            Err(e) => Err(UpgradeRefused::NoAnswer(NoAnswer::Connection(
                e.to_string(),
            ))),
        }
    }

    /// TCP to the URL's host and port, and TLS on top for https.
    pub async fn connect(&self, url: &Url) -> Result<Box<dyn Io>, NoAnswer> {
        let host = url
            .host_str()
            .ok_or_else(|| NoAnswer::Connection("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| NoAnswer::Connection(format!("{host}:{port}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        if !matches!(url.scheme(), "https" | "wss") {
            return Ok(Box::new(tcp));
        }
        let name = ServerName::try_from(host.clone())
            .map_err(|e| NoAnswer::Tls(format!("{host}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| NoAnswer::Tls(e.to_string()))?;
        Ok(Box::new(tls))
    }
}

/// The TLS client configuration: aws-lc-rs, safe defaults, these roots, HTTP/1.1 only (the
/// WebSocket upgrade and the event stream are HTTP/1.1 things).
pub(crate) fn client_config(roots: Arc<RootCertStore>) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Sorts a reqwest failure into TLS and connection failures, by its innermost cause (the
/// outer ones repeat the URL and say "error sending request").
fn classify(error: &reqwest::Error) -> NoAnswer {
    let mut root: &dyn std::error::Error = error;
    let mut tls = false;
    while let Some(cause) = root.source() {
        if cause.is::<rustls::Error>() {
            tls = true;
        }
        root = cause;
    }
    let text = root.to_string();
    if tls || text.contains("certificate") {
        NoAnswer::Tls(text)
    } else {
        NoAnswer::Connection(text)
    }
}

/// `12 ms`, `1.5 s`, `75 s`: durations in details.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{} ms", d.as_millis())
    } else if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}
