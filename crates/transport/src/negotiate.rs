//! `POST {hub}/negotiate`: creates a connection and tells the client how to reach it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, Method, StatusCode};
use pushwarden_protocol::negotiate::{self, AvailableTransport, NegotiateResponse};

use crate::dispatch::{plain, query_param, request_info};
use crate::endpoint::{ConnectionInfo, Endpoint};
use crate::registry::new_id;
use crate::Transport;

/// The newest negotiate version this server speaks.
const MAX_NEGOTIATE_VERSION: u32 = 1;

pub(crate) async fn negotiate<E: Endpoint>(
    State(transport): State<Arc<Transport<E>>>,
    request: Request,
) -> Response {
    if request.method() != Method::POST {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "Only POST requests are allowed.",
        );
    }
    if transport.registry.unclaimed() >= transport.options.max_pending_negotiations {
        metrics::counter!("pushwarden_negotiate_refused_total", "reason" => "pending").increment(1);
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many connections are being negotiated; try again later.",
        );
    }
    let info = request_info(&request);
    let principal = match transport.endpoint.authenticate(&info).await {
        Ok(p) => p,
        Err(rejection) => return rejection.into_response(),
    };
    let query = info.query.as_deref();
    let version = match negotiate::requested_version(query) {
        // A version above ours gets ours; the client then speaks it.
        Ok(v) => v.min(MAX_NEGOTIATE_VERSION),
        Err(message) => return json_ok(negotiate::error_response(&message)),
    };
    let stateful = transport.endpoint.allows_stateful_reconnect()
        && query_param(query, "useStatefulReconnect")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));

    let connection_id: Arc<str> = new_id().into();
    // Version 0 clients use the id itself as the token; version 1 gets a second, secret value
    // so that the id may be shown to others without letting them send on the connection.
    let token: Arc<str> = if version >= 1 {
        new_id().into()
    } else {
        connection_id.clone()
    };
    let session = transport.endpoint.open(
        &principal,
        ConnectionInfo {
            connection_id: Some(connection_id.clone()),
            stateful_reconnect: stateful,
        },
    );
    transport
        .registry
        .insert(token.clone(), principal, session, stateful);

    let opts = &transport.options;
    let mut available = Vec::new();
    if opts.websockets {
        available.push(AvailableTransport {
            transport: "WebSockets",
            transfer_formats: vec!["Text", "Binary"],
        });
    }
    if opts.server_sent_events {
        available.push(AvailableTransport {
            transport: "ServerSentEvents",
            transfer_formats: vec!["Text"],
        });
    }
    if opts.long_polling {
        available.push(AvailableTransport {
            transport: "LongPolling",
            transfer_formats: vec!["Text", "Binary"],
        });
    }
    let response = NegotiateResponse {
        connection_id: connection_id.to_string(),
        connection_token: (version >= 1).then(|| token.to_string()),
        negotiate_version: version,
        available_transports: available,
        use_stateful_reconnect: stateful,
    };
    json_ok(response.to_json())
}

fn json_ok(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
