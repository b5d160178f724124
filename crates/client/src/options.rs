//! How to connect.

use std::net::IpAddr;

use pushwarden_protocol::Protocol;

/// Options for [`crate::HubClient::connect`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Hub protocol to request in the handshake.
    pub protocol: Protocol,
    /// Bearer token: sent as `Authorization` on negotiate and as the `access_token` query
    /// parameter on the WebSocket URL (browsers cannot set WebSocket headers, so servers
    /// read it from there).
    pub access_token: Option<String>,
    /// `true` connects the WebSocket straight to the hub URL, as Bitwarden clients do;
    /// `false` negotiates first.
    pub skip_negotiation: bool,
    /// Ask for stateful reconnect in negotiate (and so use handshake version 2 if granted).
    pub stateful_reconnect: bool,
    /// Extra HTTP headers for negotiate and the WebSocket upgrade.
    pub extra_headers: Vec<(String, String)>,
    /// Bind the TCP socket to this source address, so load tests can spread connections
    /// over 127.0.0.0/8 beyond the ~64k ephemeral ports of a single address.
    pub local_addr: Option<IpAddr>,
}

impl Default for ConnectOptions {
    /// MessagePack, no token, negotiation skipped: what Bitwarden clients do.
    fn default() -> Self {
        ConnectOptions {
            protocol: Protocol::MessagePack,
            access_token: None,
            skip_negotiation: true,
            stateful_reconnect: false,
            extra_headers: Vec::new(),
            local_addr: None,
        }
    }
}
