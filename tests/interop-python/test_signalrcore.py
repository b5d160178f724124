"""signalrcore 1.0.2 (threads, https://github.com/mandrewcito/signalrcore) against pushwarden.

What the library can do, read from its source (signalrcore/transport/*, hub/negotiation.py,
protocol/*):
- Transports: WebSockets (own RFC 6455 client on a raw socket), Server-Sent Events and long polling
  (own HTTP/1.1 clients), chosen with options["transport"]; all three are tested.
- Protocols: JSON and MessagePack. MessagePack over SSE is impossible (SSE is Text-only; the
  library's ProtocolFactory silently falls back to JSON there), so there is no such test.
  MessagePack over long polling does not work in the library: `LongPollingBaseClient._append` splits
  poll bodies on the JSON record separator 0x1E, which MessagePack framing never contains, so no
  hub message is ever handed on (the server's bytes do arrive: seen with RUST_LOG/library DEBUG);
  its `LongPollingBinaryClient` is unreachable (the transport is never told is_binary) and broken
  (`super(LongPollingTextClient, self)`). No test for it.
- Negotiate: `POST {hub}/negotiate` without `negotiateVersion` (version 0), then `id=<connectionId>`.
  The handshake carries `"version": <negotiateVersion>`, i.e. `{"protocol":"json","version":0}`;
  .NET accepts any version <= its own, and so must pushwarden.
- Skip negotiation: options["skip_negotiation"] (WebSockets only); tested.
- Auth: options["access_token_factory"] becomes an `Authorization: Bearer` header on negotiate, the
  WebSocket upgrade, the SSE GET and every POST; the `access_token` query parameter travels in the
  URL. Long polling's poll GETs carry only `Accept` (no Authorization header), so an authenticated
  hub can only be long-polled with the query-parameter token: that is what the test uses.
- MessagePack WebSocket handshake goes out in a Binary frame (opcode 2), like pysignalr.
"""
from __future__ import annotations

import datetime as dt
import queue
import threading
import time
import urllib.error
import uuid

import msgpack
import pytest
from signalrcore.hub_connection_builder import HubConnectionBuilder
from signalrcore.messages.message_type import MessageType
from signalrcore.transport.base_transport import TransportState
from signalrcore.transport.sockets.errors import SocketHandshakeError
from signalrcore.types import HttpTransportType, HubProtocolEncoding

from harness import jwt
from harness.server import delivered_to, start_server

WAIT = 10.0
REVISION_DATE = "2026-11-28T10:00:00Z"
ENCODINGS = {"json": HubProtocolEncoding.text, "messagepack": HubProtocolEncoding.binary}
TRANSPORTS = {
    "ws": HttpTransportType.web_sockets,
    "sse": HttpTransportType.server_sent_events,
    "lp": HttpTransportType.long_polling,
}


@pytest.fixture(scope="module")
def server():
    # A 2 s long-poll timeout makes the idle long-polling test go through empty poll answers.
    s = start_server("signalrcore", {"PUSHWARDEN_LONG_POLL_TIMEOUT": "2s"})
    yield s
    code = s.stop()
    assert code == 0, f"pushwarden exited {code} on SIGTERM:\n{s.log_tail()}"


class Conn:
    def __init__(self, hub, inbox: queue.Queue, seen: list, opened: threading.Event, closed: threading.Event):
        self.hub = hub
        self.inbox = inbox
        self.seen = seen
        self.opened = opened
        self.closed = closed

    def next(self, timeout: float = WAIT):
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no hub invocation within {timeout}s "
                                 f"(transport state {self.hub.transport.state if self.hub.transport else None})") from None

    def stop(self) -> None:
        t = threading.Thread(target=self.hub.stop, daemon=True)
        t.start()
        t.join(WAIT)


def open_conn(url: str, proto: str, transport: str, *, token: str | None = None,
              skip_negotiation: bool = False, targets=("ReceiveMessage",)) -> Conn:
    options: dict = {"transport": TRANSPORTS[transport]}
    if token is not None:
        options["access_token_factory"] = lambda: token
    if skip_negotiation:
        options["skip_negotiation"] = True
    hub = HubConnectionBuilder().with_url(url, options=options).with_hub_protocol(ENCODINGS[proto]).build()
    inbox: queue.Queue = queue.Queue()
    seen: list = []
    for target in targets:
        hub.on(target, lambda args, target=target: inbox.put((target, args)))

    # record every parsed hub message (Pings included): start() hands `self.on_message` to the transport
    original = hub.on_message

    def recording(messages):
        seen.extend((time.monotonic(), m.type) for m in messages)
        return original(messages)

    hub.on_message = recording
    opened, closed = threading.Event(), threading.Event()
    hub.on_open(opened.set)
    hub.on_close(closed.set)
    conn = Conn(hub, inbox, seen, opened, closed)
    assert hub.start() is True
    if not opened.wait(WAIT):
        conn.stop()
        raise AssertionError(f"signalrcore did not complete the handshake within {WAIT}s "
                             f"(state {hub.transport.state})")
    assert type(hub.transport).__name__ == {
        "ws": "WebsocketTransport", "sse": "SSETransport", "lp": "LongPollingTransport"}[transport]
    assert hub.protocol.protocol == proto
    return conn


def hub_url(server, token: str | None = None) -> str:
    return server.url("/hub") + (f"?access_token={token}" if token else "")


def cipher_update(user_id: str, context_id: str) -> dict:
    return {
        "type": 0,
        "payload": {"id": str(uuid.uuid4()), "userId": user_id, "revisionDate": REVISION_DATE},
        "contextId": context_id,
    }


def assert_cipher_update(proto: str, target: str, args: list, body: dict) -> None:
    assert target == "ReceiveMessage"
    assert len(args) == 1, args
    msg = args[0]
    sent = body["payload"]
    if proto == "json":
        assert msg["type"] == 0
        assert msg["contextId"] == body["contextId"]
        assert msg["payload"]["userId"] == sent["userId"]
        assert msg["payload"]["id"] == sent["id"]
        assert msg["payload"]["revisionDate"] == REVISION_DATE
    else:
        assert set(msg) == {"Type", "Payload", "ContextId"}, msg
        assert msg["Type"] == 0
        assert msg["ContextId"] == body["contextId"]
        assert msg["Payload"]["UserId"] == sent["userId"]
        assert msg["Payload"]["Id"] == sent["id"]
        rev = msg["Payload"]["RevisionDate"]
        assert isinstance(rev, msgpack.Timestamp), f"RevisionDate should be a msgpack timestamp: {rev!r}"
        assert rev.to_datetime() == dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.timezone.utc)


# (protocol, transport, skip_negotiation, token via "factory" | "query")
HUB_MODES = [
    pytest.param("json", "ws", False, "factory", id="json-ws-negotiate-factory"),
    pytest.param("messagepack", "ws", False, "factory", id="messagepack-ws-negotiate-factory"),
    pytest.param("json", "ws", False, "query", id="json-ws-negotiate-query"),
    pytest.param("json", "ws", True, "query", id="json-ws-skipnegotiation-query"),
    pytest.param("messagepack", "ws", True, "factory", id="messagepack-ws-skipnegotiation-factory"),
    pytest.param("json", "sse", False, "factory", id="json-sse-factory"),
    pytest.param("json", "sse", False, "query", id="json-sse-query"),
    pytest.param("json", "lp", False, "query", id="json-longpolling-query"),
]


def connect_user(server, user, proto, transport, skip, token_via) -> Conn:
    url = hub_url(server, user.token if token_via == "query" else None)
    return open_conn(url, proto, transport, token=user.token if token_via == "factory" else None,
                     skip_negotiation=skip)


@pytest.mark.parametrize("proto,transport,skip,token_via", HUB_MODES)
def test_hub_receives_cipher_update(server, proto, transport, skip, token_via):
    user = server.user()
    conn = connect_user(server, user, proto, transport, skip, token_via)
    try:
        body = cipher_update(user.user_id, f"ctx-{uuid.uuid4()}")
        assert delivered_to(server, body) == {"delivered": 1}
        target, args = conn.next()
        assert_cipher_update(proto, target, args, body)
        assert conn.inbox.empty()
    finally:
        conn.stop()


@pytest.mark.parametrize("proto,transport,skip", [
    pytest.param("json", "ws", False, id="json-ws-negotiate"),
    pytest.param("messagepack", "ws", False, id="messagepack-ws-negotiate"),
    pytest.param("json", "ws", True, id="json-ws-skipnegotiation"),
    pytest.param("messagepack", "ws", True, id="messagepack-ws-skipnegotiation"),
    pytest.param("json", "sse", False, id="json-sse"),
    pytest.param("json", "lp", False, id="json-longpolling"),
])
def test_anonymous_hub_receives_auth_request_response(server, proto, transport, skip):
    auth_request_id = str(uuid.uuid4())
    user_id = str(uuid.uuid4())
    targets = ("AuthRequestResponseRecieved", "ReceiveMessage")
    conn = open_conn(server.url(f"/anonymous-hub?Token={auth_request_id}"), proto, transport,
                     skip_negotiation=skip, targets=targets)
    bystander = None
    try:
        bystander = open_conn(server.url(f"/anonymous-hub?Token={uuid.uuid4()}"), proto, transport,
                              skip_negotiation=skip, targets=targets)
        body = {"type": 16, "payload": {"id": auth_request_id, "userId": user_id}, "contextId": "device-1"}
        assert delivered_to(server, body) == {"delivered": 1}, "only the connection whose Token is the id"
        target, args = conn.next()
        assert target == "AuthRequestResponseRecieved"
        assert len(args) == 1, args
        msg = args[0]
        if proto == "json":
            assert msg == {"type": 16, "payload": {"id": auth_request_id, "userId": user_id}, "contextId": "device-1"}
        else:
            assert msg == {"Type": 16, "Payload": {"Id": auth_request_id, "UserId": user_id}, "ContextId": "device-1"}
        assert bystander.inbox.empty()
    finally:
        conn.stop()
        if bystander is not None:
            bystander.stop()


def forged_token() -> str:
    return jwt.user_token("not-the-server-secret-" + "x" * 20, sub=str(uuid.uuid4()), orguser=[str(uuid.uuid4())])


@pytest.mark.parametrize("transport", ["ws", "sse", "lp"])
@pytest.mark.parametrize("token_via", ["factory", "query"])
def test_bad_token_fails_negotiate(server, transport, token_via):
    """A token signed with another key: negotiate answers 401 and start() raises it."""
    token = forged_token()
    url = hub_url(server, token if token_via == "query" else None)
    hub = HubConnectionBuilder().with_url(url, options={
        "transport": TRANSPORTS[transport],
        **({"access_token_factory": lambda: token} if token_via == "factory" else {}),
    }).build()
    with pytest.raises(urllib.error.HTTPError) as info:
        hub.start()
    assert info.value.code == 401
    assert hub.transport is None


@pytest.mark.parametrize("token_via", ["factory", "query"])
def test_bad_token_fails_websocket_without_negotiate(server, token_via):
    """Skip negotiation: the WebSocket upgrade is answered 401 instead of 101."""
    token = forged_token()
    url = hub_url(server, token if token_via == "query" else None)
    hub = HubConnectionBuilder().with_url(url, options={
        "transport": HttpTransportType.web_sockets,
        "skip_negotiation": True,
        **({"access_token_factory": lambda: token} if token_via == "factory" else {}),
    }).build()
    with pytest.raises(SocketHandshakeError) as info:
        hub.start()
    status_line = str(info.value).split("\r\n", 1)[0]
    assert " 401 " in status_line, status_line
    assert hub.transport.state != TransportState.connected


@pytest.mark.parametrize("proto,transport,skip,token_via", [
    pytest.param("json", "ws", False, "factory", id="json-ws-negotiate"),
    pytest.param("messagepack", "ws", False, "factory", id="messagepack-ws-negotiate"),
    pytest.param("json", "ws", True, "query", id="json-ws-skipnegotiation"),
    pytest.param("messagepack", "ws", True, "factory", id="messagepack-ws-skipnegotiation"),
    pytest.param("json", "sse", False, "factory", id="json-sse"),
    pytest.param("json", "lp", False, "query", id="json-longpolling"),
])
def test_idle_connection_kept_alive(server, proto, transport, skip, token_via):
    """5 s without the client sending anything (signalrcore pings only with automatic reconnect, or
    after 15 s of silence): server Pings every 1 s arrive and parse (long polling has none: its
    2 s poll timeout answers empty polls instead), the connection survives, a push gets through."""
    user = server.user()
    conn = connect_user(server, user, proto, transport, skip, token_via)
    try:
        t0 = time.monotonic()
        time.sleep(5)
        assert not conn.closed.is_set(), "connection dropped while idle"
        assert conn.hub.transport.state == TransportState.connected
        pings = [t for t, kind in conn.seen if kind == MessageType.ping and t >= t0]
        if transport == "lp":
            assert pings == [], "no keep-alive Pings over long polling"
        else:
            assert len(pings) >= 3, f"expected ≥3 server Pings in 5 s with a 1 s keep-alive, got {len(pings)}"
        body = cipher_update(user.user_id, "after-idle")
        assert delivered_to(server, body) == {"delivered": 1}
        target, args = conn.next()
        assert_cipher_update(proto, target, args, body)
    finally:
        conn.stop()
