//! A tiny SignalR server for testing the client without the real one: it answers negotiate
//! with a scripted body, performs the handshake, then hands the WebSocket to the test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use pushwarden_protocol::handshake::{self, HandshakeRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How the mock answers.
#[derive(Clone, Default)]
pub struct Script {
    /// Body of every negotiate response (`None`: negotiate is not expected).
    pub negotiate_body: Option<String>,
    /// Handshake error to answer with, instead of success.
    pub handshake_error: Option<String>,
    /// Bytes appended to the handshake response in the same frame.
    pub after_handshake: Vec<u8>,
}

/// One accepted, handshaken connection.
pub struct Accepted {
    pub socket: WebSocketStream<TcpStream>,
    pub uri: String,
    pub peer: SocketAddr,
    pub handshake: HandshakeRequest,
    /// Frame type the handshake request came in (true = text).
    pub handshake_was_text: bool,
}

/// What the mock saw on HTTP (negotiate) requests: request line and headers, lowercased names.
pub type HttpLog = Arc<Mutex<Vec<String>>>;

pub struct MockServer {
    pub url: String,
    pub http_log: HttpLog,
    accepted: mpsc::Receiver<Accepted>,
}

impl MockServer {
    pub async fn start(script: Script) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(8);
        let http_log: HttpLog = Arc::default();
        let log = http_log.clone();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let (tx, script, log) = (tx.clone(), script.clone(), log.clone());
                tokio::spawn(async move { serve(stream, peer, script, tx, log).await });
            }
        });
        MockServer {
            url: format!("http://{addr}/hub"),
            http_log,
            accepted: rx,
        }
    }

    pub async fn accept(&mut self) -> Accepted {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.accepted.recv())
            .await
            .expect("no connection in time")
            .expect("server stopped")
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    script: Script,
    accepted: mpsc::Sender<Accepted>,
    log: HttpLog,
) {
    let mut first = [0u8; 4];
    if stream.peek(&mut first).await.unwrap_or(0) == 4 && &first == b"POST" {
        return negotiate(stream, script, log).await;
    }
    let uri = Arc::new(Mutex::new(String::new()));
    let seen = uri.clone();
    // The callback's signature is tungstenite's; its large error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request, response: Response| {
        *seen.lock().unwrap() = request.uri().to_string();
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (payload, was_text) = match socket.next().await {
        Some(Ok(Message::Text(t))) => (t.as_bytes().to_vec(), true),
        Some(Ok(Message::Binary(b))) => (b.to_vec(), false),
        _ => return,
    };
    let (request, _) = handshake::parse_request(&payload, 4096).unwrap().unwrap();
    let binary = request.protocol == "messagepack";
    let mut reply = handshake::encode_response(script.handshake_error.as_deref());
    reply.extend_from_slice(&script.after_handshake);
    let frame = if binary {
        Message::Binary(reply.into())
    } else {
        Message::Text(String::from_utf8(reply).unwrap().into())
    };
    socket.send(frame).await.unwrap();
    if script.handshake_error.is_some() {
        let _ = socket.close(None).await;
        return;
    }
    let uri = uri.lock().unwrap().clone();
    let _ = accepted
        .send(Accepted {
            socket,
            uri,
            peer,
            handshake: request,
            handshake_was_text: was_text,
        })
        .await;
}

async fn negotiate(mut stream: TcpStream, script: Script, log: HttpLog) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    for line in String::from_utf8_lossy(&head)
        .lines()
        .filter(|l| !l.is_empty())
    {
        log.lock().unwrap().push(line.to_ascii_lowercase());
    }
    let body = script
        .negotiate_body
        .unwrap_or_else(|| "{\"error\":\"unexpected\"}".into());
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
