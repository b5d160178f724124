//! The negotiate exchange (`POST [hub]/negotiate?negotiateVersion=1`).
//!
//! Negotiate tells a client which transports the server offers and hands out the connection
//! id and the secret connection token used as `id=` on the transport URL. Bitwarden clients
//! skip it and connect the WebSocket directly, but other SignalR clients need it.

use serde::Deserialize;

use crate::json::write_json_string;

/// The highest negotiate version this implementation speaks; higher requests get this one.
pub const MAX_VERSION: u32 = 1;

/// Parse `negotiateVersion` from a raw query string: absent -> 0; non-integer ->
/// `Err("The client requested a non-integer protocol version.")`.
///
/// Negative versions are integers but below every server's minimum, so they get the .NET
/// "does not support this version" message instead.
pub fn requested_version(query: Option<&str>) -> Result<u32, String> {
    let Some(raw) = query_param(query, "negotiateVersion") else {
        return Ok(0);
    };
    let value = raw.trim();
    if let Ok(version) = value.parse::<u32>() {
        return Ok(version);
    }
    match value.parse::<i64>() {
        Ok(negative) if negative < 0 => Err(format!(
            "The client requested version '{negative}', but the server does not support this version."
        )),
        _ => Err("The client requested a non-integer protocol version.".to_string()),
    }
}

/// The version to answer with for a request of `requested` (echo, capped at [`MAX_VERSION`]).
pub fn response_version(requested: u32) -> u32 {
    requested.min(MAX_VERSION)
}

/// The decoded value of the first `name` parameter in a raw query string (absent without a
/// query). Names compare case-insensitively, as ASP.NET Core's query collection does. A leading
/// `?` is ignored; a parameter without `=` has the empty value.
///
/// Decoding follows `application/x-www-form-urlencoded`, as ASP.NET's `QueryHelpers` does: `+`
/// means a space. The JS client encodes with `encodeURIComponent` (a literal `+` arrives as
/// `%2B`), and neither JWTs nor auth-request ids contain spaces, so this never alters a real
/// value. The one implementation: auth reads `access_token` with it, the transports `id`.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let query = query?;
    let query = query.strip_prefix('?').unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.into_owned())
}

/// One entry of `availableTransports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailableTransport {
    /// `WebSockets`, `ServerSentEvents` or `LongPolling` (exact casing matters to clients).
    pub transport: &'static str,
    /// `Text` and/or `Binary`.
    pub transfer_formats: Vec<&'static str>,
}

impl AvailableTransport {
    /// WebSockets, both formats.
    pub fn web_sockets() -> Self {
        AvailableTransport {
            transport: "WebSockets",
            transfer_formats: vec!["Text", "Binary"],
        }
    }

    /// Server-Sent Events, text only.
    pub fn server_sent_events() -> Self {
        AvailableTransport {
            transport: "ServerSentEvents",
            transfer_formats: vec!["Text"],
        }
    }

    /// Long polling, both formats.
    pub fn long_polling() -> Self {
        AvailableTransport {
            transport: "LongPolling",
            transfer_formats: vec!["Text", "Binary"],
        }
    }
}

/// A successful negotiate response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiateResponse {
    /// Public id of the connection.
    pub connection_id: String,
    /// Secret id used as `id=` on transport requests; only in version 1 and later.
    pub connection_token: Option<String>,
    /// The negotiate version answered.
    pub negotiate_version: u32,
    /// What the client may use.
    pub available_transports: Vec<AvailableTransport>,
    /// Stateful reconnect was requested and granted.
    pub use_stateful_reconnect: bool,
}

/// Why a negotiate response does not lead straight to a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    /// The server answered `{"error":"..."}`.
    #[error("Negotiate failed: {0}")]
    Server(String),
    /// The server redirects the client elsewhere (Azure SignalR Service does this).
    #[error("Negotiate redirected to {url}")]
    Redirect {
        /// Where to negotiate next.
        url: String,
        /// Bearer token to use there.
        access_token: Option<String>,
    },
    /// An old ASP.NET (non-Core) SignalR server answered.
    #[error("Detected a connection attempt to an ASP.NET SignalR Server. This client only supports connecting to an ASP.NET Core SignalR Server.")]
    LegacyServer,
    /// The body is not a negotiate response.
    #[error("Invalid negotiate response: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResponse {
    connection_id: Option<String>,
    connection_token: Option<String>,
    negotiate_version: Option<u32>,
    available_transports: Option<Vec<RawTransport>>,
    use_stateful_reconnect: Option<bool>,
    error: Option<String>,
    url: Option<String>,
    access_token: Option<String>,
    #[serde(rename = "ProtocolVersion")]
    legacy_protocol_version: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTransport {
    transport: String,
    transfer_formats: Vec<String>,
}

impl NegotiateResponse {
    /// The response body. `useStatefulReconnect` comes first and only when granted, as in .NET;
    /// `connectionToken` only when present (version 1).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        if self.use_stateful_reconnect {
            out.extend_from_slice(b"\"useStatefulReconnect\":true,");
        }
        out.extend_from_slice(b"\"negotiateVersion\":");
        out.extend_from_slice(self.negotiate_version.to_string().as_bytes());
        out.extend_from_slice(b",\"connectionId\":");
        write_json_string(&self.connection_id, &mut out);
        if let Some(token) = &self.connection_token {
            out.extend_from_slice(b",\"connectionToken\":");
            write_json_string(token, &mut out);
        }
        out.extend_from_slice(b",\"availableTransports\":[");
        for (i, transport) in self.available_transports.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"transport\":");
            write_json_string(transport.transport, &mut out);
            out.extend_from_slice(b",\"transferFormats\":[");
            for (j, format) in transport.transfer_formats.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                write_json_string(format, &mut out);
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        out
    }

    /// Parses a negotiate response body (client side). Transport and format names the
    /// client does not know are dropped, since the client could not use them anyway.
    pub fn parse(json: &[u8]) -> Result<Self, NegotiateError> {
        let raw: RawResponse =
            serde_json::from_slice(json).map_err(|e| NegotiateError::Malformed(e.to_string()))?;
        if raw.legacy_protocol_version.is_some() {
            return Err(NegotiateError::LegacyServer);
        }
        if let Some(error) = raw.error {
            return Err(NegotiateError::Server(error));
        }
        if let Some(url) = raw.url {
            return Err(NegotiateError::Redirect {
                url,
                access_token: raw.access_token,
            });
        }
        let connection_id = raw
            .connection_id
            .ok_or(NegotiateError::Malformed("missing connectionId".into()))?;
        let available_transports = raw
            .available_transports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| {
                let transport = known_transport(&t.transport)?;
                let transfer_formats = t
                    .transfer_formats
                    .iter()
                    .filter_map(|f| known_format(f))
                    .collect();
                Some(AvailableTransport {
                    transport,
                    transfer_formats,
                })
            })
            .collect();
        Ok(NegotiateResponse {
            connection_id,
            connection_token: raw.connection_token,
            negotiate_version: raw.negotiate_version.unwrap_or(0),
            available_transports,
            use_stateful_reconnect: raw.use_stateful_reconnect.unwrap_or(false),
        })
    }
}

fn known_transport(name: &str) -> Option<&'static str> {
    ["WebSockets", "ServerSentEvents", "LongPolling"]
        .into_iter()
        .find(|&t| t == name)
}

fn known_format(name: &str) -> Option<&'static str> {
    ["Text", "Binary"].into_iter().find(|&f| f == name)
}

/// The error form of a negotiate response: `{"error":"..."}` (sent with HTTP 200).
pub fn error_response(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 12);
    out.extend_from_slice(b"{\"error\":");
    write_json_string(message, &mut out);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parsing() {
        assert_eq!(requested_version(None), Ok(0));
        assert_eq!(requested_version(Some("")), Ok(0));
        assert_eq!(requested_version(Some("id=abc")), Ok(0));
        assert_eq!(requested_version(Some("negotiateVersion=1")), Ok(1));
        assert_eq!(requested_version(Some("?a=b&negotiateVersion=7&c")), Ok(7));
        assert_eq!(
            requested_version(Some("negotiateVersion=one")),
            Err("The client requested a non-integer protocol version.".into())
        );
        assert_eq!(
            requested_version(Some("negotiateVersion=")),
            Err("The client requested a non-integer protocol version.".into())
        );
        assert!(requested_version(Some("negotiateVersion=-1"))
            .unwrap_err()
            .contains("'-1'"));
        assert_eq!(response_version(0), 0);
        assert_eq!(response_version(5), 1);
    }

    #[test]
    fn query_param_decodes() {
        assert_eq!(
            query_param(Some("access_token=a%2Bb+c&x=1"), "access_token").as_deref(),
            Some("a+b c")
        );
        assert_eq!(query_param(Some("flag&x=1"), "flag").as_deref(), Some(""));
        assert_eq!(query_param(Some("x=1"), "y"), None);
    }

    #[test]
    fn response_json_and_back() {
        let response = NegotiateResponse {
            connection_id: "abc".into(),
            connection_token: Some("tok".into()),
            negotiate_version: 1,
            available_transports: vec![
                AvailableTransport::web_sockets(),
                AvailableTransport::server_sent_events(),
                AvailableTransport::long_polling(),
            ],
            use_stateful_reconnect: true,
        };
        let json = response.to_json();
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            concat!(
                r#"{"useStatefulReconnect":true,"negotiateVersion":1,"connectionId":"abc","connectionToken":"tok","#,
                r#""availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]},"#,
                r#"{"transport":"ServerSentEvents","transferFormats":["Text"]},"#,
                r#"{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#
            )
        );
        assert_eq!(NegotiateResponse::parse(&json), Ok(response));
    }

    #[test]
    fn version_zero_has_no_token() {
        let response = NegotiateResponse {
            connection_id: "abc".into(),
            connection_token: None,
            negotiate_version: 0,
            available_transports: vec![],
            use_stateful_reconnect: false,
        };
        let json = String::from_utf8(response.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"negotiateVersion":0,"connectionId":"abc","availableTransports":[]}"#
        );
    }

    #[test]
    fn other_response_forms() {
        assert_eq!(error_response("no \"way\""), br#"{"error":"no \"way\""}"#);
        assert_eq!(
            NegotiateResponse::parse(&error_response("nope")),
            Err(NegotiateError::Server("nope".into()))
        );
        assert_eq!(
            NegotiateResponse::parse(br#"{"url":"http://x/","accessToken":"t"}"#),
            Err(NegotiateError::Redirect {
                url: "http://x/".into(),
                access_token: Some("t".into())
            })
        );
        assert_eq!(
            NegotiateResponse::parse(br#"{"ProtocolVersion":"1.5","ConnectionId":"x"}"#),
            Err(NegotiateError::LegacyServer)
        );
        assert!(matches!(
            NegotiateResponse::parse(b"{}"),
            Err(NegotiateError::Malformed(_))
        ));
    }
}
