//! A small reverse proxy in front of pushwarden that calls itself nginx and can be broken in
//! the ways real configurations break: it drops the upgrade headers, does not route the
//! anonymous hub, buffers the event stream, or gives up on an upstream that takes longer
//! than its read timeout to answer (504).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// How the proxy is misconfigured; `Breakage::default()` is a correct proxy.
#[derive(Clone, Copy, Debug, Default)]
pub struct Breakage {
    /// Forgets `proxy_set_header Upgrade/Connection`: the hop-by-hop headers are dropped.
    pub strip_upgrade: bool,
    /// Has no location for `/notifications/anonymous-hub`: its own 404 page.
    pub anonymous_hub_unrouted: bool,
    /// `proxy_buffering on` (and `X-Accel-Buffering` ignored): the event stream is held back
    /// until it ends.
    pub buffer_event_stream: bool,
    /// `proxy_read_timeout`: an upstream answer that takes longer gets a 504.
    pub read_timeout: Option<Duration>,
    /// Has no route for `/push/` and answers it as Caddy does a path it has no handler for:
    /// `200` with an empty body.
    pub push_unrouted_empty_200: bool,
}

type Body = BoxBody<Bytes, hyper::Error>;

const NOT_FOUND_PAGE: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
const TIMEOUT_PAGE: &str = "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n<center><h1>504 Gateway Time-out</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// Starts the proxy on a random loopback port; it runs until the test ends.
pub async fn start(upstream: SocketAddr, breakage: Breakage) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| handle(request, upstream, breakage));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

fn page(status: StatusCode, html: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(html.as_bytes()))
            .map_err(|e| match e {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    nginx(response)
}

/// nginx replaces the upstream's `Server` header with its own.
fn nginx(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("nginx/1.24.0"));
    response
}

async fn handle(
    mut request: Request<Incoming>,
    upstream: SocketAddr,
    breakage: Breakage,
) -> Result<Response<Body>, Infallible> {
    if breakage.anonymous_hub_unrouted
        && request
            .uri()
            .path()
            .starts_with("/notifications/anonymous-hub")
    {
        return Ok(page(StatusCode::NOT_FOUND, NOT_FOUND_PAGE));
    }
    if breakage.push_unrouted_empty_200 && request.uri().path().starts_with("/push/") {
        return Ok(nginx(Response::new(
            Full::new(Bytes::new()).map_err(|e| match e {}).boxed(),
        )));
    }
    let wants_upgrade = request.headers().contains_key(header::UPGRADE) && !breakage.strip_upgrade;
    if breakage.strip_upgrade {
        request.headers_mut().remove(header::UPGRADE);
        request.headers_mut().remove(header::CONNECTION);
    }
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut request));

    let Ok(stream) = TcpStream::connect(upstream).await else {
        return Ok(page(StatusCode::BAD_GATEWAY, TIMEOUT_PAGE));
    };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return Ok(page(StatusCode::BAD_GATEWAY, TIMEOUT_PAGE));
    };
    tokio::spawn(connection.with_upgrades());
    let (parts, body) = request.into_parts();
    let upstream_request = Request::from_parts(parts, body.boxed());
    let answer = match breakage.read_timeout {
        Some(limit) => {
            match tokio::time::timeout(limit, sender.send_request(upstream_request)).await {
                Ok(answer) => answer,
                Err(_) => return Ok(page(StatusCode::GATEWAY_TIMEOUT, TIMEOUT_PAGE)),
            }
        }
        None => sender.send_request(upstream_request).await,
    };
    let Ok(mut answer) = answer else {
        return Ok(page(StatusCode::BAD_GATEWAY, TIMEOUT_PAGE));
    };

    if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut answer);
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                let (Ok(client), Ok(server)) = tokio::join!(client_upgrade, upstream_upgrade)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(server),
                )
                .await;
            });
        }
        let (parts, _) = answer.into_parts();
        return Ok(nginx(Response::from_parts(
            parts,
            Full::new(Bytes::new()).map_err(|e| match e {}).boxed(),
        )));
    }

    let event_stream = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let (parts, body) = answer.into_parts();
    let body = if breakage.buffer_event_stream && event_stream {
        // Everything arrives at once, when the stream ends.
        let held = futures_util::stream::once(async move {
            body.collect()
                .await
                .map(|collected| Frame::data(collected.to_bytes()))
        });
        StreamBody::new(held).boxed()
    } else {
        body.boxed()
    };
    Ok(nginx(Response::from_parts(parts, body)))
}
