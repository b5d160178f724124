//! The HTTP negotiate step, when not skipped: `POST {hub}/negotiate?negotiateVersion=1`,
//! following redirects like the JS client (up to 100), and checking that the server offers
//! WebSockets in the transfer format our protocol needs.

use pushwarden_protocol::negotiate::{NegotiateError, NegotiateResponse};
use url::Url;

use crate::endpoint::{negotiate_url, parse_hub_url};
use crate::{ClientError, ConnectOptions};

/// Same cap as the JS client (`MAX_REDIRECTS`).
const MAX_REDIRECTS: usize = 100;

/// Negotiate responses are small; anything bigger is not a negotiate response.
const MAX_BODY: usize = 1 << 20;

/// What the WebSocket connection needs from negotiate.
pub(crate) struct Negotiated {
    /// The hub URL to connect to (differs from the input after a redirect).
    pub hub: Url,
    /// The access token to use from now on (a redirect may replace it).
    pub access_token: Option<String>,
    pub connection_id: String,
    /// `id=` value: the connection token (v1) or, from a v0 server, the connection id.
    pub connection_token: String,
    pub stateful_reconnect: bool,
}

pub(crate) async fn negotiate(
    hub: &Url,
    options: &ConnectOptions,
) -> Result<Negotiated, ClientError> {
    let mut builder = reqwest::Client::builder();
    if let Some(ip) = options.local_addr {
        builder = builder.local_address(ip);
    }
    let http = builder.build()?;
    let mut hub = hub.clone();
    let mut access_token = options.access_token.clone();
    for _ in 0..=MAX_REDIRECTS {
        let mut request = http.post(negotiate_url(&hub, options.stateful_reconnect));
        if let Some(token) = &access_token {
            request = request.bearer_auth(token);
        }
        for (name, value) in &options.extra_headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut response = request.send().await?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ClientError::Negotiate("response body too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(ClientError::Negotiate(format!("HTTP {status}: {text}")));
        }
        match NegotiateResponse::parse(&body) {
            Ok(response) => return accept(response, hub, access_token, options),
            Err(NegotiateError::Redirect {
                url,
                access_token: token,
            }) => {
                hub = parse_hub_url(&url)?;
                if token.is_some() {
                    access_token = token;
                }
            }
            Err(other) => return Err(ClientError::Negotiate(other.to_string())),
        }
    }
    Err(ClientError::Negotiate(
        "Negotiate redirection limit exceeded.".into(),
    ))
}

fn accept(
    response: NegotiateResponse,
    hub: Url,
    access_token: Option<String>,
    options: &ConnectOptions,
) -> Result<Negotiated, ClientError> {
    if response.use_stateful_reconnect && !options.stateful_reconnect {
        return Err(ClientError::Negotiate(
            "Client didn't negotiate Stateful Reconnect but the server did.".into(),
        ));
    }
    let format = options.protocol.transfer_format().as_str();
    let websockets = response
        .available_transports
        .iter()
        .any(|t| t.transport == "WebSockets" && t.transfer_formats.contains(&format));
    if !websockets {
        return Err(ClientError::Negotiate(format!(
            "the server does not offer WebSockets with the '{format}' transfer format"
        )));
    }
    let connection_token = match (&response.connection_token, response.negotiate_version) {
        (Some(token), version) if version >= 1 => token.clone(),
        _ => response.connection_id.clone(),
    };
    Ok(Negotiated {
        hub,
        access_token,
        connection_id: response.connection_id,
        connection_token,
        stateful_reconnect: response.use_stateful_reconnect,
    })
}
