//! The connection: handshake, then a stream of events and a few ways to send.
//!
//! Nothing runs in the background: the socket is read only while [`HubClient::next_event`]
//! is awaited, which keeps a connection down to one task (the caller's) and makes every
//! behaviour visible to tests. WebSocket pings are answered by tungstenite while reading.

use bytes::Bytes;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pushwarden_protocol::{
    handshake, DecodedMessage, HubMessage, Invocation, MessageReader, Protocol, ProtocolError,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::socket::{self, Socket};
use crate::{endpoint, negotiate, Arguments, ClientError, ConnectOptions};

/// The JS client waits this long (its server timeout) for the handshake response.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A handshake response is a few bytes; a server sending more without a separator is broken.
const MAX_HANDSHAKE_RESPONSE: usize = 64 * 1024;
/// Largest hub message accepted from the server.
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// How long `close` waits for the server to answer the WebSocket close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Something the server sent.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// The server called a client method (e.g. Bitwarden's `ReceiveMessage`).
    Invocation {
        /// Method name.
        target: String,
        /// Its arguments.
        arguments: Arguments,
    },
    /// The server is closing the connection.
    Close {
        /// Why, when it is an error.
        error: Option<String>,
        /// Whether the client may reconnect.
        allow_reconnect: bool,
    },
    /// Any other hub message (Completion, StreamItem, Ack, Sequence, ...), as decoded.
    Other(DecodedMessage),
}

/// How many WebSocket data frames of each kind arrived (handshake included), so tests can
/// check that the server uses the frame type of the protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Text frames.
    pub text: u64,
    /// Binary frames.
    pub binary: u64,
}

/// One SignalR connection over a WebSocket.
#[derive(Debug)]
pub struct HubClient {
    socket: Socket,
    protocol: Protocol,
    reader: MessageReader,
    connection_id: Option<String>,
    stateful_reconnect: bool,
    received_trackable: u64,
    last_received: Option<Instant>,
    frames: FrameCounts,
    close_frame: Option<(u16, String)>,
}

impl HubClient {
    /// Connects and completes the handshake.
    ///
    /// `url`: `http(s)://host:port/hub?query` (the `ws` scheme is derived). With
    /// `skip_negotiation = false`: `POST {path}/negotiate?negotiateVersion=1` (plus
    /// `useStatefulReconnect=true` if asked) with `Authorization: Bearer`, then the WebSocket
    /// to `url` + `id=<connectionToken>`. The token goes in the `access_token` query
    /// parameter of the WebSocket URL, as the JS client does. The handshake uses version 2
    /// when stateful reconnect was asked for and either granted or negotiation was skipped,
    /// else 1. Errors if the server rejects the handshake.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<HubClient, ClientError> {
        let mut hub = endpoint::parse_hub_url(url)?;
        let mut access_token = options.access_token.clone();
        let mut connection_id = None;
        let mut connection_token = None;
        let mut stateful_reconnect = options.stateful_reconnect;
        if !options.skip_negotiation {
            let negotiated = negotiate::negotiate(&hub, &options).await?;
            hub = negotiated.hub;
            access_token = negotiated.access_token;
            connection_id = Some(negotiated.connection_id);
            connection_token = Some(negotiated.connection_token);
            stateful_reconnect = negotiated.stateful_reconnect;
        }
        let ws_url =
            endpoint::websocket_url(&hub, connection_token.as_deref(), access_token.as_deref());
        let socket = socket::open(&ws_url, &options).await?;
        let mut client = HubClient {
            socket,
            protocol: options.protocol,
            reader: MessageReader::new(options.protocol, MAX_MESSAGE_SIZE),
            connection_id,
            stateful_reconnect,
            received_trackable: 0,
            last_received: None,
            frames: FrameCounts::default(),
            close_frame: None,
        };
        let version = if stateful_reconnect { 2 } else { 1 };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, client.handshake(version))
            .await
            .map_err(|_| ClientError::HandshakeTimeout)??;
        Ok(client)
    }

    /// Sends the handshake request (always a text frame, like the JS client) and reads the
    /// response; hub messages that arrive in the same frame are kept for `next_event`.
    async fn handshake(&mut self, version: u32) -> Result<(), ClientError> {
        let request = handshake::encode_request(self.protocol.name(), version);
        self.send_frame(request, false).await?;
        let mut buffer = Vec::new();
        loop {
            match self.read_frame().await? {
                Some(bytes) => buffer.extend_from_slice(&bytes),
                None => return Err(ClientError::ClosedDuringHandshake),
            }
            match handshake::parse_response(&buffer) {
                Ok(Some((response, used))) => {
                    if let Some(error) = response.error {
                        return Err(ClientError::Handshake(error));
                    }
                    self.reader.push(&buffer[used..]);
                    return Ok(());
                }
                Ok(None) if buffer.len() > MAX_HANDSHAKE_RESPONSE => {
                    return Err(ClientError::Handshake(
                        "handshake response too large".into(),
                    ))
                }
                Ok(None) => {}
                Err(e) => return Err(ClientError::Handshake(e.to_string())),
            }
        }
    }

    /// Next event. Answers nothing automatically; records receipt (see
    /// [`HubClient::received_trackable`]) and skips Ping messages and unknown message types.
    /// `Ok(None)` when the socket closed. Cancel-safe: may be used in `tokio::select!`.
    pub async fn next_event(&mut self) -> Result<Option<ClientEvent>, ClientError> {
        loop {
            match self.reader.next() {
                Ok(Some(message)) => {
                    if let Some(event) = self.on_message(message) {
                        return Ok(Some(event));
                    }
                    continue;
                }
                Ok(None) => {}
                // Newer servers may send types we do not know; peers are told to ignore them.
                Err(ProtocolError::UnknownMessageType(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            match self.read_frame().await? {
                Some(bytes) => self.reader.push(&bytes),
                None => return Ok(None),
            }
        }
    }

    fn on_message(&mut self, message: DecodedMessage) -> Option<ClientEvent> {
        self.last_received = Some(Instant::now());
        if message.is_trackable() {
            self.received_trackable += 1;
        }
        match message {
            DecodedMessage::Json(HubMessage::Ping)
            | DecodedMessage::MessagePack(HubMessage::Ping) => None,
            DecodedMessage::Json(HubMessage::Invocation(inv)) => Some(ClientEvent::Invocation {
                target: inv.target,
                arguments: Arguments::Json(inv.arguments),
            }),
            DecodedMessage::MessagePack(HubMessage::Invocation(inv)) => {
                Some(ClientEvent::Invocation {
                    target: inv.target,
                    arguments: Arguments::MessagePack(inv.arguments),
                })
            }
            DecodedMessage::Json(HubMessage::Close {
                error,
                allow_reconnect,
            })
            | DecodedMessage::MessagePack(HubMessage::Close {
                error,
                allow_reconnect,
            }) => Some(ClientEvent::Close {
                error,
                allow_reconnect,
            }),
            other => Some(ClientEvent::Other(other)),
        }
    }

    /// The payload of the next WebSocket data frame, not decoded (it may hold several hub
    /// messages, pings included): for a load generator that only needs to find its markers
    /// in what arrives, at the cost of a raw reader. `None` once the server closed the
    /// WebSocket. Do not mix with [`HubClient::next_event`] on the same connection.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, ClientError> {
        self.read_frame().await
    }

    /// Payload of the next data frame; `None` once the server closed the WebSocket.
    async fn read_frame(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.socket.next().await {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Ok(None)
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Text(text))) => {
                    self.frames.text += 1;
                    return Ok(Some(Bytes::from(text)));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    self.frames.binary += 1;
                    return Ok(Some(bytes));
                }
                Some(Ok(Message::Close(frame))) => {
                    self.close_frame = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    return Ok(None);
                }
                // Pings are answered by tungstenite; pongs and raw frames carry no messages.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            }
        }
    }

    /// Sends a SignalR Ping.
    pub async fn send_ping(&mut self) -> Result<(), ClientError> {
        match self.protocol {
            Protocol::Json => {
                self.send_message(&DecodedMessage::Json(HubMessage::Ping))
                    .await
            }
            Protocol::MessagePack => {
                self.send_message(&DecodedMessage::MessagePack(HubMessage::Ping))
                    .await
            }
        }
    }

    /// Sends any hub message; it must be in the connection's protocol.
    pub async fn send_message(&mut self, message: &DecodedMessage) -> Result<(), ClientError> {
        if message.protocol() != self.protocol {
            return Err(ClientError::WrongProtocol);
        }
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        self.send_frame(bytes, self.protocol == Protocol::MessagePack)
            .await
    }

    /// Sends an Invocation of a hub method. `invocation_id: None` makes it non-blocking
    /// (the server must not answer with a Completion).
    pub async fn send_invocation(
        &mut self,
        target: &str,
        arguments: Arguments,
        invocation_id: Option<&str>,
    ) -> Result<(), ClientError> {
        let message =
            match arguments {
                Arguments::Json(arguments) => DecodedMessage::Json(HubMessage::Invocation(
                    invocation(target, arguments, invocation_id),
                )),
                Arguments::MessagePack(arguments) => DecodedMessage::MessagePack(
                    HubMessage::Invocation(invocation(target, arguments, invocation_id)),
                ),
            };
        self.send_message(&message).await
    }

    /// Sends an Ack for every trackable message received so far (stateful reconnect).
    pub async fn send_ack(&mut self) -> Result<(), ClientError> {
        let sequence_id = self.received_trackable;
        let message = match self.protocol {
            Protocol::Json => DecodedMessage::Json(HubMessage::Ack { sequence_id }),
            Protocol::MessagePack => DecodedMessage::MessagePack(HubMessage::Ack { sequence_id }),
        };
        self.send_message(&message).await
    }

    /// Sends bytes as they are, in a binary or a text frame. Text frames are sent even when
    /// the bytes are not UTF-8, so tests can check how the server copes.
    pub async fn send_raw(&mut self, bytes: Vec<u8>, binary: bool) -> Result<(), ClientError> {
        self.send_frame(bytes, binary).await
    }

    async fn send_frame(&mut self, bytes: Vec<u8>, binary: bool) -> Result<(), ClientError> {
        let message = if binary {
            Message::Binary(bytes.into())
        } else {
            match String::from_utf8(bytes) {
                Ok(text) => Message::Text(text.into()),
                Err(e) => Message::Frame(Frame::message(
                    e.into_bytes(),
                    OpCode::Data(Data::Text),
                    true,
                )),
            }
        };
        self.socket.send(message).await?;
        Ok(())
    }

    /// Closes gracefully: a SignalR Close message, then the WebSocket close handshake
    /// (waiting up to 5 s for the server's reply).
    pub async fn close(mut self) -> Result<(), ClientError> {
        let close = match self.protocol {
            Protocol::Json => DecodedMessage::Json(HubMessage::Close {
                error: None,
                allow_reconnect: false,
            }),
            Protocol::MessagePack => DecodedMessage::MessagePack(HubMessage::Close {
                error: None,
                allow_reconnect: false,
            }),
        };
        // The server may already be gone; the WebSocket close below reports what matters.
        let _ = self.send_message(&close).await;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        match self.socket.close(Some(frame)).await {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
            Err(e) => return Err(e.into()),
        }
        let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
        Ok(())
    }

    /// The connection id from negotiate; `None` when negotiation was skipped.
    pub fn connection_id(&self) -> Option<&str> {
        self.connection_id.as_deref()
    }

    /// The hub protocol in use.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Whether stateful reconnect is in effect (granted by negotiate, or asked for with
    /// negotiation skipped).
    pub fn stateful_reconnect(&self) -> bool {
        self.stateful_reconnect
    }

    /// Trackable messages (Invocation, StreamItem, Completion, ...) received so far: the
    /// sequence id this client would acknowledge.
    pub fn received_trackable(&self) -> u64 {
        self.received_trackable
    }

    /// When the last hub message (including Ping) arrived.
    pub fn last_received(&self) -> Option<Instant> {
        self.last_received
    }

    /// Data frames received so far, by kind.
    pub fn frame_counts(&self) -> FrameCounts {
        self.frames
    }

    /// Code and reason of the server's WebSocket Close frame, once received.
    pub fn close_frame(&self) -> Option<(u16, &str)> {
        self.close_frame
            .as_ref()
            .map(|(code, reason)| (*code, reason.as_str()))
    }
}

fn invocation<V>(target: &str, arguments: Vec<V>, id: Option<&str>) -> Invocation<V> {
    Invocation {
        headers: Vec::new(),
        invocation_id: id.map(str::to_owned),
        target: target.to_owned(),
        arguments,
        stream_ids: Vec::new(),
    }
}
