"""pysignalr 1.3.3 (asyncio, https://github.com/baking-bad/pysignalr) against pushwarden.

What the library can do, read from its source (pysignalr/transport/websocket.py, client.py, utils.py):
- Transport: WebSockets only (`WebsocketTransport` is its sole transport). No Server-Sent Events, no
  long polling, so no tests for those.
- Protocols: JSON (`JSONProtocol`) and MessagePack (`MessagepackProtocol`), both tested.
- Negotiate: `POST {hub}/negotiate` *without* `negotiateVersion`, i.e. negotiate version 0; it then
  connects with `id=<connectionId>`. So these tests cover the server's v0 path.
- Skip negotiation: `WebsocketTransport(skip_negotiation=True)` exists but `SignalRClient` does not
  forward it; the tests set the transport's `_skip_negotiation` flag (the transport's own code path,
  nothing re-implemented).
- Auth: `access_token_factory` is consulted only in `_handshake()`, i.e. after negotiate and after the
  WebSocket upgrade, so the first negotiate goes out without a token and a server that requires one
  answers 401 (a pysignalr bug, not a server one: the same 401 any ASP.NET Core hub with
  [Authorize] gives). The tests therefore pass the token as a static `Authorization: Bearer` header
  (sent on negotiate and on the upgrade) or as the `access_token` query parameter.
- Handshake: JSON sends the handshake in a Text frame; MessagePack sends it in a Binary frame
  (`orjson.dumps(...)` bytes), unlike the JS client. Both must be accepted.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid

import msgpack
import pytest
from pysignalr.client import SignalRClient
from pysignalr.exceptions import AuthorizationError, NegotiationFailure
from pysignalr.messages import MessageType
from pysignalr.protocol.json import JSONProtocol
from pysignalr.protocol.messagepack import MessagepackProtocol

from harness import jwt
from harness.server import delivered_to, start_server

WAIT = 10.0  # every single wait is bounded by this
REVISION_DATE = "2026-11-28T10:00:00Z"


@pytest.fixture(scope="module")
def server():
    s = start_server("pysignalr")
    yield s
    code = s.stop()
    assert code == 0, f"pushwarden exited {code} on SIGTERM:\n{s.log_tail()}"


class RecordingJSON(JSONProtocol):
    """The library's JSON protocol, recording the type of every decoded message (Pings included)."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[float, MessageType]] = []

    def decode(self, raw_message):
        msgs = super().decode(raw_message)
        self.seen.extend((time.monotonic(), m.type) for m in msgs)
        return msgs


class RecordingMessagePack(MessagepackProtocol):
    def __init__(self):
        super().__init__()
        self.seen: list[tuple[float, MessageType]] = []

    def decode(self, raw_message):
        msgs = super().decode(raw_message)
        self.seen.extend((time.monotonic(), m.type) for m in msgs)
        return msgs


PROTOCOLS = {"json": RecordingJSON, "messagepack": RecordingMessagePack}


class Conn:
    def __init__(self, client: SignalRClient, protocol, inbox: asyncio.Queue, task: asyncio.Task):
        self.client = client
        self.protocol = protocol
        self.inbox = inbox
        self.task = task
        self.closed = asyncio.Event()

    async def next(self, timeout: float = WAIT):
        """Next (target, arguments) the hub invoked on this client."""
        get = asyncio.ensure_future(self.inbox.get())
        done, _ = await asyncio.wait({get, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            return get.result()
        get.cancel()
        if self.task in done:
            raise AssertionError(f"client stopped before a message arrived: {self.task.exception()!r}")
        raise AssertionError(f"no hub invocation within {timeout}s")


@contextlib.asynccontextmanager
async def connect(url: str, proto: str, *, token: str | None = None, skip_negotiation: bool = False,
                  targets=("ReceiveMessage",), **client_kw):
    if skip_negotiation:
        url = url.replace("http://", "ws://", 1)  # without negotiate the URL is connected to as is
    protocol = PROTOCOLS[proto]()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    client = SignalRClient(url, protocol=protocol, headers=headers, connection_timeout=int(WAIT), **client_kw)
    if skip_negotiation:
        client._transport._skip_negotiation = True  # see module docstring
    inbox: asyncio.Queue = asyncio.Queue()
    for target in targets:
        async def on_invocation(args, target=target):
            await inbox.put((target, args))
        client.on(target, on_invocation)
    opened = asyncio.Event()

    async def on_open():
        opened.set()

    client.on_open(on_open)
    task = asyncio.create_task(client.run())
    conn = Conn(client, protocol, inbox, task)

    async def on_close():
        conn.closed.set()

    client.on_close(on_close)
    try:
        wait_open = asyncio.ensure_future(opened.wait())
        done, _ = await asyncio.wait({wait_open, task}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        if wait_open not in done:
            wait_open.cancel()
            if task in done:
                raise AssertionError(f"pysignalr failed to connect: {task.exception()!r}")
            raise AssertionError(f"pysignalr did not connect within {WAIT}s")
        yield conn
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, WAIT)


def hub_url(server, token: str | None = None, path: str = "/hub") -> str:
    return server.url(path) + (f"?access_token={token}" if token else "")


async def send_until_delivered(server, body: dict, expect: int = 1) -> dict:
    return await asyncio.to_thread(delivered_to, server, body, expect)


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


MODES = [
    # (protocol, skip_negotiation, token via header or query)
    pytest.param("json", False, "header", id="json-negotiate-header"),
    pytest.param("messagepack", False, "header", id="messagepack-negotiate-header"),
    pytest.param("json", False, "query", id="json-negotiate-query"),
    pytest.param("messagepack", False, "query", id="messagepack-negotiate-query"),
    pytest.param("json", True, "query", id="json-skipnegotiation-query"),
    pytest.param("messagepack", True, "header", id="messagepack-skipnegotiation-header"),
]


@pytest.mark.parametrize("proto,skip,token_via", MODES)
def test_hub_receives_cipher_update(server, proto, skip, token_via):
    user = server.user()

    async def run():
        url = hub_url(server, user.token if token_via == "query" else None)
        token = user.token if token_via == "header" else None
        async with connect(url, proto, token=token, skip_negotiation=skip) as conn:
            body = cipher_update(user.user_id, f"ctx-{uuid.uuid4()}")
            resp = await send_until_delivered(server, body)
            assert resp == {"delivered": 1}
            target, args = await conn.next()
            assert_cipher_update(proto, target, args, body)

    asyncio.run(run())


@pytest.mark.parametrize("proto,skip", [
    pytest.param("json", False, id="json-negotiate"),
    pytest.param("messagepack", False, id="messagepack-negotiate"),
    pytest.param("json", True, id="json-skipnegotiation"),
    pytest.param("messagepack", True, id="messagepack-skipnegotiation"),
])
def test_anonymous_hub_receives_auth_request_response(server, proto, skip):
    auth_request_id = str(uuid.uuid4())
    user_id = str(uuid.uuid4())

    async def run():
        url = server.url(f"/anonymous-hub?Token={auth_request_id}")
        other = server.url(f"/anonymous-hub?Token={uuid.uuid4()}")
        async with connect(url, proto, skip_negotiation=skip, targets=("AuthRequestResponseRecieved", "ReceiveMessage")) as conn, \
                connect(other, proto, skip_negotiation=skip, targets=("AuthRequestResponseRecieved",)) as bystander:
            body = {"type": 16, "payload": {"id": auth_request_id, "userId": user_id}, "contextId": "device-1"}
            resp = await send_until_delivered(server, body)
            assert resp == {"delivered": 1}, "only the connection whose Token is the auth request id"
            target, args = await conn.next()
            assert target == "AuthRequestResponseRecieved"
            assert len(args) == 1, args
            msg = args[0]
            if proto == "json":
                assert msg["type"] == 16
                assert msg["payload"] == {"id": auth_request_id, "userId": user_id}
                assert msg["contextId"] == "device-1"
            else:
                assert msg["Type"] == 16
                assert msg["Payload"] == {"Id": auth_request_id, "UserId": user_id}
                assert msg["ContextId"] == "device-1"
            assert bystander.inbox.empty()

    asyncio.run(run())


def forged_token(server) -> str:
    return jwt.user_token("not-the-server-secret-" + "x" * 20, sub=str(uuid.uuid4()), orguser=[str(uuid.uuid4())])


@pytest.mark.parametrize("proto", ["json", "messagepack"])
def test_bad_token_fails_negotiate(server, proto):
    """Negotiate with a token signed by another key: 401, surfaced as AuthorizationError."""
    async def run():
        client = SignalRClient(server.url("/hub"), protocol=PROTOCOLS[proto](),
                               headers={"Authorization": f"Bearer {forged_token(server)}"},
                               connection_timeout=int(WAIT))
        opened = asyncio.Event()

        async def on_open():
            opened.set()

        client.on_open(on_open)
        with pytest.raises(AuthorizationError):
            await asyncio.wait_for(client.run(), WAIT)
        assert not opened.is_set()

    asyncio.run(run())


@pytest.mark.parametrize("proto", ["json", "messagepack"])
def test_bad_token_fails_websocket_without_negotiate(server, proto):
    """Skip negotiation: the upgrade itself is refused (HTTP 401), pysignalr reports NegotiationFailure."""
    async def run():
        url = hub_url(server, forged_token(server)).replace("http://", "ws://", 1)
        client = SignalRClient(url, protocol=PROTOCOLS[proto](),
                               connection_timeout=int(WAIT), retry_count=1)
        client._transport._skip_negotiation = True
        opened = asyncio.Event()

        async def on_open():
            opened.set()

        client.on_open(on_open)
        with pytest.raises(NegotiationFailure) as info:
            await asyncio.wait_for(client.run(), WAIT)
        cause = info.value.__cause__
        assert getattr(getattr(cause, "response", None), "status_code", None) == 401, repr(cause)
        assert not opened.is_set()

    asyncio.run(run())


@pytest.mark.parametrize("proto,skip", [
    pytest.param("json", False, id="json-negotiate"),
    pytest.param("messagepack", False, id="messagepack-negotiate"),
    pytest.param("json", True, id="json-skipnegotiation"),
    pytest.param("messagepack", True, id="messagepack-skipnegotiation"),
])
def test_idle_connection_kept_alive(server, proto, skip):
    """5 s without the client sending anything (its own SignalR ping is every 15 s): the server's
    1 s keep-alive Pings arrive and parse, the socket stays open, and a push still gets through."""
    user = server.user()

    async def run():
        async with connect(hub_url(server, user.token), proto, skip_negotiation=skip) as conn:
            t0 = time.monotonic()
            await asyncio.sleep(5)
            pings = [t for t, kind in conn.protocol.seen if kind == MessageType.ping and t >= t0]
            assert not conn.closed.is_set(), "connection dropped while idle"
            assert not conn.task.done(), f"client stopped: {conn.task.exception()!r}"
            assert len(pings) >= 3, f"expected ≥3 server Pings in 5 s with a 1 s keep-alive, got {len(pings)}"
            body = cipher_update(user.user_id, "after-idle")
            assert await send_until_delivered(server, body) == {"delivered": 1}
            target, args = await conn.next()
            assert_cipher_update(proto, target, args, body)

    asyncio.run(run())
