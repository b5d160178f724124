//! Requests to the hub path itself: picks the transport from method, headers and `id`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, Method, StatusCode};

use crate::endpoint::{Endpoint, Rejection, RequestInfo, TransportKind};
use crate::registry::{Entry, Registry};
use crate::upgrade::{self, Upgrade};
use crate::{http_send, long_polling, sse, websocket, Transport};

/// A short `text/plain` answer, as ASP.NET Core's dispatcher gives for transport errors.
pub(crate) fn plain(status: StatusCode, message: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

pub(crate) use pushwarden_protocol::negotiate::query_param;

pub(crate) fn request_info(request: &Request) -> RequestInfo {
    RequestInfo {
        headers: request.headers().clone(),
        query: request.uri().query().map(str::to_owned),
        peer: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
    }
}

pub(crate) async fn connection<E: Endpoint>(
    State(transport): State<Arc<Transport<E>>>,
    request: Request,
) -> Response {
    let info = request_info(&request);
    let id = query_param(info.query.as_deref(), "id");
    let method = request.method().clone();
    if !matches!(method, Method::GET | Method::POST | Method::DELETE) {
        // As ASP.NET Core: refused before the connection is even looked up.
        return plain(StatusCode::METHOD_NOT_ALLOWED, "Unsupported HTTP method.");
    }

    if method == Method::GET && upgrade::is_requested(request.headers()) {
        if !transport.options.websockets {
            return plain(StatusCode::NOT_FOUND, "WebSockets transport is disabled.");
        }
        let (mut parts, _body) = request.into_parts();
        let upgrade = match Upgrade::from_parts(&mut parts) {
            Ok(u) => u,
            Err(response) => return *response,
        };
        return match id {
            None => {
                let principal = match transport.endpoint.authenticate(&info).await {
                    Ok(p) => p,
                    Err(r) => return r.into_response(),
                };
                websocket::accept_new(transport, upgrade, principal)
            }
            Some(id) => match authorized_entry(&transport, &id, &info).await {
                Ok(entry) => websocket::accept_existing(transport, upgrade, entry),
                Err(resp) => resp,
            },
        };
    }

    let Some(id) = id else {
        return plain(StatusCode::BAD_REQUEST, "Connection ID required");
    };
    let entry = match authorized_entry(&transport, &id, &info).await {
        Ok(entry) => entry,
        Err(resp) => return resp,
    };
    match method {
        Method::GET if accepts_event_stream(&request) => {
            if !transport.options.server_sent_events {
                return plain(
                    StatusCode::NOT_FOUND,
                    "ServerSentEvents transport is disabled.",
                );
            }
            sse::stream(transport, entry)
        }
        Method::GET => {
            if !transport.options.long_polling {
                return plain(StatusCode::NOT_FOUND, "LongPolling transport is disabled.");
            }
            long_polling::poll(transport, entry).await
        }
        Method::POST => http_send::send(transport, entry, request).await,
        _ => long_polling::delete(transport, entry),
    }
}

/// Looks up a negotiated connection and checks that the request comes from its owner.
async fn authorized_entry<E: Endpoint>(
    transport: &Transport<E>,
    id: &str,
    info: &RequestInfo,
) -> Result<Arc<Entry<E>>, Response> {
    let Some(entry) = transport.registry.get(id) else {
        return Err(plain(StatusCode::NOT_FOUND, "No Connection with that ID"));
    };
    let principal = transport
        .endpoint
        .authenticate(info)
        .await
        .map_err(IntoResponse::into_response)?;
    if !transport
        .endpoint
        .same_principal(&entry.principal, &principal)
    {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "The connection belongs to another user.",
        )
        .into_response());
    }
    Ok(entry)
}

/// A transport error: status and `text/plain` message.
pub(crate) type Refusal = (StatusCode, &'static str);

/// Claims the entry for a transport: the first request picks it, later ones must match.
/// Returns whether this request was the first.
pub(crate) fn claim_transport<E: Endpoint>(
    registry: &Registry<E>,
    entry: &Entry<E>,
    kind: TransportKind,
) -> Result<bool, Refusal> {
    let mut st = entry.state.lock();
    if st.terminated {
        return Err((StatusCode::NOT_FOUND, "No Connection with that ID"));
    }
    match st.transport {
        None => {
            st.transport = Some(kind);
            drop(st);
            registry.settle(entry);
            Ok(true)
        }
        Some(current) if current == kind => Ok(false),
        Some(_) => Err((
            StatusCode::BAD_REQUEST,
            "Cannot change transports mid-connection",
        )),
    }
}

fn accepts_event_stream(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}
