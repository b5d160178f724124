"""Start a pushwarden binary on an ephemeral port, keep its logs, stop it with SIGTERM."""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from . import jwt

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "pushwarden"
LISTEN_RE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
START_TIMEOUT = 10.0


class Server:
    """One running pushwarden process.

    Stdout and stderr are drained by threads into `self.log` (kept whole: a test module is short) so
    the server never blocks on a full pipe and a failing test can show what the server said.
    """

    def __init__(self, extra_env: dict[str, str] | None = None, name: str = "pushwarden"):
        self.name = name
        self.secret = secrets.token_urlsafe(32)
        self.send_key = secrets.token_urlsafe(24)
        self._tmp = tempfile.TemporaryDirectory(prefix="pushwarden-pytest-")
        self.bin = os.environ.get("PUSHWARDEN_BIN") or str(DEFAULT_BIN)
        env = dict(os.environ)
        env.update(
            {
                "PUSHWARDEN_LISTEN": "127.0.0.1:0",
                "PUSHWARDEN_DATA_DIR": self._tmp.name,
                "PUSHWARDEN_JWT_HS256_SECRET": self.secret,
                "PUSHWARDEN_SEND_API_KEY": self.send_key,
                "RUST_LOG": os.environ.get("INTEROP_RUST_LOG", "info"),
                "NO_COLOR": "1",
                # The suites share one server per module and fail token requests on purpose
                # far more often than the per-address budget (10 a minute) allows; that budget
                # has its own tests (crates/app/tests/abuse.rs).
                "PUSHWARDEN_TOKEN_FAILURES_PER_MINUTE": "1000",
            }
        )
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.base_url: str | None = None
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Server":
        if not os.access(self.bin, os.X_OK):
            raise RuntimeError(f"pushwarden binary not found/executable: {self.bin} (set PUSHWARDEN_BIN)")
        self.proc = subprocess.Popen(
            [self.bin, "serve"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        for stream, tag in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
            threading.Thread(target=self._drain, args=(stream, tag), daemon=True).start()
        if not self._ready.wait(START_TIMEOUT) or self.base_url is None:
            self.stop()
            raise RuntimeError("pushwarden did not print 'listening on' in time:\n" + self.log_tail())
        return self

    def _drain(self, stream, tag: str) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self._lock:
                self.log.append(f"[{tag}] {line}")
            if tag == "out" and self.base_url is None:
                m = LISTEN_RE.search(line)
                if m:
                    self.base_url = m.group(1)
                    self._ready.set()
        if tag == "out":
            self._ready.set()  # exited before listening: unblock start()

    def stop(self, timeout: float = 10.0) -> int | None:
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(5)
        elif self.proc is not None:
            code = self.proc.returncode
        self._tmp.cleanup()
        log_dir = os.environ.get("INTEROP_SERVER_LOG_DIR")
        if log_dir:  # keep the whole server log for inspection
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            with self._lock:
                (Path(log_dir) / f"{self.name}.log").write_text("\n".join(self.log) + "\n")
        return code

    def log_tail(self, n: int = 60) -> str:
        with self._lock:
            return "\n".join(self.log[-n:])

    def log_mark(self) -> int:
        with self._lock:
            return len(self.log)

    def log_since(self, mark: int) -> str:
        with self._lock:
            return "\n".join(self.log[mark:])

    # -- helpers -------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        assert self.base_url
        return self.base_url + path

    def ws_url(self, path: str) -> str:
        return self.url(path).replace("http://", "ws://", 1)

    def user(self, **kw) -> "User":
        sub = kw.pop("sub", None) or str(uuid.uuid4())
        org = kw.pop("org", None) or str(uuid.uuid4())
        return User(sub, org, jwt.user_token(self.secret, sub=sub, orguser=[org], **kw))

    def send(self, body: dict, timeout: float = 10.0) -> tuple[int, dict]:
        """POST /send with the static key; returns (status, parsed JSON body)."""
        req = urllib.request.Request(
            self.url("/send"),
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.send_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else {})
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"raw": raw.decode(errors="replace")}


# Every module's server uses these: a 1 s keep-alive makes "stays connected while idle" meaningful
# in a 5 s test (several server Pings must arrive and be tolerated); 30 s client timeout (default).
BASE_SERVER_ENV = {
    "PUSHWARDEN_KEEP_ALIVE_INTERVAL": "1s",
    "PUSHWARDEN_CLIENT_TIMEOUT": "30s",
}


def start_server(name: str, extra_env: dict[str, str] | None = None) -> Server:
    env = dict(BASE_SERVER_ENV)
    env.update(extra_env or {})
    return Server(env, name=name).start()


class User:
    def __init__(self, user_id: str, org_id: str, token: str):
        self.user_id = user_id
        self.org_id = org_id
        self.token = token

    def __repr__(self) -> str:  # keep tokens out of assertion output
        return f"User({self.user_id})"


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> None:
    """Poll `predicate` until true; raise AssertionError after `timeout` (≤10 s by convention)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def delivered_to(server: Server, body: dict, expect: int = 1, timeout: float = 10.0) -> dict:
    """POST /send repeatedly until the server reports `expect` deliveries.

    Connections join their user/group at handshake; a client library may report "connected" a
    moment before the server finished registering it, so /send is retried until it counts the
    connection (bounded). Returns the last response body.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        status, resp = server.send(body)
        last = (status, resp)
        assert status == 200, f"/send answered {status} {resp}"
        if resp.get("delivered") == expect:
            return resp
        if time.monotonic() >= deadline:
            raise AssertionError(f"/send never delivered to {expect} connection(s): last {last}")
        time.sleep(0.1)
