//! Entry point shared by the cargo-fuzz target `upgrade` (`fuzz/`) and the crate's tests: the
//! checks a request to a hub path goes through before it may become a WebSocket.

use http::{Request, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::dispatch::query_param;
use crate::upgrade::{self, Upgrade};

/// Runs a request through what `dispatch::connection` does before any connection exists: the
/// `id` parameter, whether a WebSocket is asked for, and the RFC 6455 header checks. The request
/// is given an upgrade handle, as hyper gives every HTTP/1.1 request, so that a request that
/// passes the checks is answered 101 and one that fails is answered with a client error.
pub fn upgrade(mut request: Request<()>) {
    let _ = query_param(request.uri().query(), "id");
    let _ = upgrade::is_requested(request.headers());
    let on_upgrade = hyper::upgrade::on(&mut request);
    request.extensions_mut().insert(on_upgrade);
    let (mut parts, ()) = request.into_parts();
    match Upgrade::from_parts(&mut parts) {
        Ok(upgrade) => {
            let (response, _pending) = upgrade.accept(WebSocketConfig::default());
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        }
        Err(response) => assert!(
            response.status().is_client_error(),
            "a refused upgrade was answered {}",
            response.status()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/hub?id=abc");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    const JS_CLIENT: &[(&str, &str)] = &[
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    /// The entry point's own assertions (101 for a good upgrade, 4xx otherwise) hold on the
    /// shapes the seeds cover.
    #[test]
    fn upgrades_are_answered_101_or_a_client_error() {
        upgrade(request("GET", JS_CLIENT));
        upgrade(request("POST", JS_CLIENT));
        upgrade(request("GET", &JS_CLIENT[1..]));
        upgrade(request("GET", &[("Upgrade", "websocket")]));
        upgrade(request(
            "GET",
            &[
                ("Connection", "keep-alive, Upgrade"),
                ("Upgrade", "WebSocket"),
                ("Sec-WebSocket-Version", "8"),
            ],
        ));
    }
}
