//! Opening the WebSocket: our own TCP connect (so a source address can be chosen), then the
//! upgrade with small buffers, since a load generator holds many mostly idle sockets.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, HeaderValue};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;
use url::{Host, Url};

use crate::{ClientError, ConnectOptions};

/// tungstenite eagerly allocates 128 KiB per socket by default; 4 KiB keeps idle
/// connections cheap (see the tungstenite memory notes in the spec, B4).
const READ_BUFFER_SIZE: usize = 4 * 1024;

pub(crate) type Socket = WebSocketStream<TcpStream>;

pub(crate) async fn open(url: &Url, options: &ConnectOptions) -> Result<Socket, ClientError> {
    if url.scheme() == "wss" {
        return Err(ClientError::Unsupported(
            "TLS (wss/https) is not built into this client".into(),
        ));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| ClientError::InvalidUrl(format!("{url}: no port")))?;
    let addresses: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(Host::Domain(name)) => tokio::net::lookup_host((name, port)).await?.collect(),
        None => return Err(ClientError::InvalidUrl(format!("{url}: no host"))),
    };
    let stream = connect_any(&addresses, options.local_addr).await?;
    // Pushes are small and latency matters more than packet count.
    stream.set_nodelay(true)?;

    let mut request = url.as_str().into_client_request()?;
    for (name, value) in &options.extra_headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ClientError::InvalidUrl(format!("header name '{name}': {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| ClientError::InvalidUrl(format!("header value for '{name}': {e}")))?;
        request.headers_mut().append(name, value);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(0);
    let (socket, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    Ok(socket)
}

/// Tries each resolved address in turn (skipping those of the other IP family when a source
/// address is given) and returns the first connection, or the last error.
async fn connect_any(
    addresses: &[SocketAddr],
    local: Option<IpAddr>,
) -> Result<TcpStream, ClientError> {
    let mut last_error = None;
    for &address in addresses {
        let attempt = match local {
            None => TcpStream::connect(address).await,
            Some(local) if local.is_ipv4() != address.is_ipv4() => continue,
            Some(local) => {
                let socket = if local.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(local, 0))?;
                socket.connect(address).await
            }
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) => ClientError::Io(e),
        None => ClientError::InvalidUrl(
            "no address to connect to (check the source address family)".into(),
        ),
    })
}
