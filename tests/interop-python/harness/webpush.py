"""Web Push on the receiving side, written without pushwarden's code: a subscriber (user agent)
key pair, decryption with `http_ece` (RFC 8188/8291), VAPID (RFC 8292) verification with
`cryptography`, and a tiny HTTP push service that records what it is sent."""
from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import http_ece
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- the user agent ----------------------------------------------------------------------------


class Subscriber:
    """A browser's (or UnifiedPush app's) side of a subscription: a P-256 key pair and a 16-byte
    auth secret, made here; pushwarden only ever sees the public half."""

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth_secret = os.urandom(16)

    @property
    def p256dh(self) -> str:
        """The uncompressed public point, base64url without padding (`PushSubscription.toJSON()`)."""
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        assert len(raw) == 65 and raw[0] == 4
        return b64url(raw)

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def web_push(self, endpoint: str) -> dict:
        return {"endpoint": endpoint, "p256dh": self.p256dh, "auth": self.auth}

    def decrypt(self, body: bytes) -> bytes:
        # http_ece's default version happens to be aes128gcm in 1.2.1, but older releases
        # defaulted to the legacy aesgcm: always say it.
        return http_ece.decrypt(
            body,
            private_key=self.private_key,
            auth_secret=self.auth_secret,
            version="aes128gcm",
        )


# -- VAPID ---------------------------------------------------------------------------------------


@dataclass
class Vapid:
    token: str
    key: str
    header: dict
    claims: dict


def parse_vapid(authorization: str) -> tuple[str, str]:
    """`vapid t=<JWT>, k=<key>` (RFC 8292 §3) → (t, k). Parameter order and spacing may vary."""
    scheme, _, params = authorization.strip().partition(" ")
    assert scheme.lower() == "vapid", f"Authorization scheme is {scheme!r}, not vapid: {authorization!r}"
    values = {}
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        assert sep, f"malformed vapid parameter {part!r} in {authorization!r}"
        values[name.strip().lower()] = value.strip()
    assert set(values) == {"t", "k"}, f"vapid parameters {sorted(values)} (want t and k)"
    return values["t"], values["k"]


def verify_vapid(authorization: str) -> Vapid:
    """Checks the ES256 JWS signature of `t` with public key `k`; returns the decoded parts.

    Raises `cryptography.exceptions.InvalidSignature` on a bad signature."""
    token, key = parse_vapid(authorization)
    parts = token.split(".")
    assert len(parts) == 3, f"JWT has {len(parts)} parts"
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    assert header.get("alg") == "ES256", f"JWT header {header}"
    signature = b64url_decode(parts[2])
    # JWS ES256 is raw r||s (RFC 7518 §3.4), not DER.
    assert len(signature) == 64, f"ES256 signature is {len(signature)} bytes, want 64"
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    raw_key = b64url_decode(key)
    assert len(raw_key) == 65 and raw_key[0] == 4, "k is not an uncompressed P-256 point"
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
    public.verify(
        encode_dss_signature(r, s),
        f"{parts[0]}.{parts[1]}".encode(),
        ec.ECDSA(hashes.SHA256()),
    )
    return Vapid(token=token, key=key, header=header, claims=claims)


def public_key_of_pem(pem: bytes) -> str:
    """The base64url uncompressed public key of a PEM private key, read by `cryptography`."""
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey), type(key)
    assert isinstance(key.curve, ec.SECP256R1), key.curve.name
    return b64url(
        key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )


# -- a push service ------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float = field(default_factory=time.monotonic)


class PushReceiver:
    """An RFC 8030 push service on 127.0.0.1:<free port>: records every request per path and
    answers 201 Created, or the status set for that path with `answer(path, status)`."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._requests: list[Received] = []
        self._status: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                with receiver._lock:
                    receiver._requests.append(
                        Received(
                            path=path,
                            method=self.command,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                        )
                    )
                    status = receiver._status.get(path, 201)
                    receiver._lock.notify_all()
                self.send_response(status)
                if status == 201:
                    self.send_header("Location", f"/message/{len(receiver._requests)}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = _handle
            do_PUT = _handle
            do_GET = _handle

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def endpoint(self, name: str) -> str:
        return f"{self.origin}/push/{name}"

    def answer(self, name: str, status: int) -> None:
        with self._lock:
            self._status[f"/push/{name}"] = status

    def received(self, name: str) -> list[Received]:
        with self._lock:
            return [r for r in self._requests if r.path == f"/push/{name}"]

    def wait_for(self, name: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """Blocks until `count` requests reached /push/<name>; returns them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self._requests if r.path == f"/push/{name}"]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"push service got {len(got)} request(s) for /push/{name} within {timeout}s, "
                        f"want {count} (all paths so far: {[r.path for r in self._requests]})"
                    )
                self._lock.wait(left)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- pushwarden's HTTP API ---------------------------------------------------------------------


def call(
    url: str,
    method: str = "GET",
    body: dict | bytes | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; returns (status, lower-case headers, raw body), errors included."""
    headers = {}
    data = None
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def call_json(url: str, method: str = "GET", body: dict | None = None, token: str | None = None):
    """Like `call`, with the body parsed as JSON (None when empty or not JSON)."""
    status, headers, raw = call(url, method, body, token)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed
