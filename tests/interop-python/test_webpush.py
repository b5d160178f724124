"""Web Push and UnifiedPush from pushwarden, received by code pushwarden did not write.

A Python HTTP server on 127.0.0.1 plays the push service (RFC 8030). The subscriber's P-256 key
pair and auth secret are made here with `cryptography`; what arrives is decrypted with `http_ece`
1.2.1 (RFC 8188/8291, version aes128gcm) and the VAPID header (RFC 8292) is verified with
`cryptography`'s ECDSA. The VAPID key comes from `pushwarden vapid generate`.

Devices are registered through the vault-server API (`POST /push/register`, Bitwarden's
`PushRegistrationRequestModel` plus `webPush`) and pushed to through `POST /send` (what a vault
server posts for every change) or `POST /push/send` (the relay's `PushSendRequestModel`).
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from harness.server import DEFAULT_BIN, start_server
from harness.webpush import (
    PushReceiver,
    Subscriber,
    b64url,
    b64url_decode,
    call_json,
    public_key_of_pem,
    verify_vapid,
)

SUBJECT = "mailto:ops@example.com"
# A TTL other than the 24 h default, so the header is seen to come from the configuration.
TTL_SECS = 3600
DATE = "2026-11-28T10:00:00Z"
# How long "nothing else arrives" is watched after the expected push did arrive. The worker sends
# all deliveries of one message concurrently, so a wrong one would come within milliseconds.
QUIET = 1.0


def pushwarden_bin() -> str:
    return os.environ.get("PUSHWARDEN_BIN") or str(DEFAULT_BIN)


def cli(*args: str) -> subprocess.CompletedProcess:
    # No PUSHWARDEN_* from the caller's environment: `vapid public-key` reads
    # PUSHWARDEN_VAPID_PRIVATE_KEY, and a stray PUSHWARDEN_CONFIG would change what runs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWARDEN_")}
    return subprocess.run(
        [pushwarden_bin(), *args], env=env, capture_output=True, text=True, timeout=30
    )


class VapidKeyFile:
    def __init__(self, path: Path, printed: str):
        self.path = path
        self.printed = printed  # what `vapid generate` printed


@pytest.fixture(scope="module")
def vapid_key(tmp_path_factory) -> VapidKeyFile:
    path = tmp_path_factory.mktemp("vapid") / "vapid-private-key.pem"
    done = cli("vapid", "generate", "--out", str(path))
    assert done.returncode == 0, f"vapid generate failed: {done.stderr}"
    assert path.is_file()
    return VapidKeyFile(path, done.stdout.strip())


@pytest.fixture(scope="module")
def receiver():
    r = PushReceiver()
    yield r
    r.close()


def webpush_env(vapid_key: VapidKeyFile) -> dict[str, str]:
    return {
        "PUSHWARDEN_VAPID_PRIVATE_KEY": str(vapid_key.path),
        "PUSHWARDEN_VAPID_SUBJECT": SUBJECT,
        "PUSHWARDEN_WEBPUSH_TTL": f"{TTL_SECS}s",
    }


@pytest.fixture(scope="module")
def server(vapid_key):
    env = webpush_env(vapid_key)
    env["PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS"] = "true"
    s = start_server("webpush", env)
    yield s
    code = s.stop()
    assert code == 0, f"pushwarden exited {code} on SIGTERM:\n{s.log_tail()}"


def new_id() -> str:
    return str(uuid.uuid4())


def register(server, *, device_id: str, user_id: str, identifier: str, device_type: int, web_push: dict):
    return call_json(
        server.url("/push/register"),
        "POST",
        {
            "deviceId": device_id,
            "userId": user_id,
            "identifier": identifier,
            "type": device_type,
            "webPush": web_push,
        },
        token=server.send_key,
    )


def registered(server, receiver, *, user_id: str, identifier: str, device_type: int = 9, platform: str = "webpush"):
    """Registers a fresh subscriber at a fresh endpoint; returns (subscriber, endpoint name, device id)."""
    device_id = new_id()
    sub = Subscriber()
    name = f"{identifier}-{device_id}"
    status, body = register(
        server,
        device_id=device_id,
        user_id=user_id,
        identifier=identifier,
        device_type=device_type,
        web_push=sub.web_push(receiver.endpoint(name)),
    )
    assert status == 200, f"/push/register answered {status} {body}"
    assert body == {"deviceId": device_id, "platform": platform}
    return sub, name, device_id


def bitwarden_message(plaintext: bytes) -> tuple[int, dict]:
    """Checks the plaintext is Bitwarden's Web Push template `{"data":{"type":N,"payload":"<JSON>"}}`
    and returns (type, payload parsed from its string)."""
    message = json.loads(plaintext)
    assert list(message) == ["data"], message
    data = message["data"]
    assert set(data) == {"type", "payload"}, data
    assert isinstance(data["type"], int), data
    assert isinstance(data["payload"], str), "payload must be JSON text, parsed a second time by the apps"
    return data["type"], json.loads(data["payload"])


# -- a) a browser subscription, end to end --------------------------------------------------------


def test_browser_push_decrypts_with_http_ece_and_carries_verifiable_vapid(server, receiver, vapid_key):
    user = new_id()
    sub, name, _ = registered(server, receiver, user_id=user, identifier="browser-1", device_type=9)
    payload = {"userId": user, "date": DATE}

    sent_at = time.time()
    status, resp = server.send({"type": 5, "payload": payload, "contextId": "some-other-device"})
    assert status == 200, resp
    assert resp.get("queued") == 1, f"/send answered {resp}"

    (req,) = receiver.wait_for(name)
    assert req.method == "POST"
    # RFC 8030 headers
    assert req.headers.get("content-encoding") == "aes128gcm"
    assert req.headers.get("ttl") == str(TTL_SECS), req.headers
    assert req.headers.get("urgency") == "normal", req.headers  # SyncVault is not urgent

    # RFC 8188 header: salt(16) | rs(4) | idlen(1) | keyid = the sender's ephemeral public key
    body = req.body
    assert len(body) <= 4096
    rs = int.from_bytes(body[16:20], "big")
    assert rs >= 18 and body[20] == 65, (rs, body[20])
    keyid = body[21:86]
    assert keyid[0] == 4 and b64url(keyid) != sub.p256dh, "keyid must be a fresh ephemeral key"

    # Decryption by http_ece: the payload as the apps read it.
    push_type, inner = bitwarden_message(sub.decrypt(body))
    assert push_type == 5
    assert inner == payload
    # A different subscriber's key cannot open it (the check above is not vacuous).
    with pytest.raises(Exception):
        Subscriber().decrypt(body)

    # VAPID, checked by cryptography's ECDSA.
    vapid = verify_vapid(req.headers["authorization"])
    assert vapid.header.get("typ", "JWT") == "JWT"
    claims = vapid.claims
    assert claims["aud"] == receiver.origin, f"aud must be the endpoint's origin, port included: {claims}"
    assert claims["sub"] == SUBJECT
    assert isinstance(claims["exp"], int), claims
    now = time.time()
    assert claims["exp"] > now, claims
    assert claims["exp"] <= sent_at + 24 * 3600, f"exp more than 24 h ahead: {claims}"
    # A token whose claims were changed no longer verifies with k.
    forged_claims = b64url(json.dumps({**claims, "aud": "https://push.example.net"}).encode())
    head, _, sig = vapid.token.split(".")
    with pytest.raises(InvalidSignature):
        verify_vapid(f"vapid t={head}.{forged_claims}.{sig}, k={vapid.key}")

    # k is the key pushwarden's CLI reports for that PEM, and the key cryptography reads from it.
    printed = cli("vapid", "public-key", "--key", str(vapid_key.path))
    assert printed.returncode == 0, printed.stderr
    assert vapid.key == printed.stdout.strip() == vapid_key.printed
    assert vapid.key == public_key_of_pem(vapid_key.path.read_bytes())
    assert len(b64url_decode(vapid.key)) == 65


def test_vapid_private_key_file_is_private(vapid_key):
    mode = stat.S_IMODE(vapid_key.path.stat().st_mode)
    assert mode & 0o077 == 0, f"{vapid_key.path} has mode {oct(mode)}"
    again = cli("vapid", "generate", "--out", str(vapid_key.path))
    assert again.returncode != 0, "an existing key must not be overwritten without --force"
    assert public_key_of_pem(vapid_key.path.read_bytes()) == vapid_key.printed


def test_logout_push_is_high_urgency(server, receiver):
    user = new_id()
    sub, name, _ = registered(server, receiver, user_id=user, identifier="browser-1")
    payload = {"userId": user, "date": DATE}
    status, resp = server.send({"type": 11, "payload": payload, "contextId": None})
    assert status == 200 and resp.get("queued") == 1, resp
    (req,) = receiver.wait_for(name)
    assert req.headers.get("urgency") == "high", req.headers
    assert bitwarden_message(sub.decrypt(req.body)) == (11, payload)


# -- b) the sending device is left out -----------------------------------------------------------


def test_sending_device_is_excluded(server, receiver):
    user = new_id()
    sub1, name1, _ = registered(server, receiver, user_id=user, identifier="browser-1")
    sub2, name2, _ = registered(server, receiver, user_id=user, identifier="browser-2")
    payload = {"userId": user, "date": DATE}

    status, resp = server.send({"type": 5, "payload": payload, "contextId": "browser-2"})
    assert status == 200, resp
    assert resp.get("queued") == 1, f"browser-2 sent it and must be left out: {resp}"
    (req,) = receiver.wait_for(name1)
    assert bitwarden_message(sub1.decrypt(req.body)) == (5, payload)
    time.sleep(QUIET)
    assert receiver.received(name2) == [], "the sending device got its own push"
    assert len(receiver.received(name1)) == 1

    # Without a contextId both get the next one: browser-2 was excluded, not broken.
    status, resp = server.send({"type": 5, "payload": payload})
    assert status == 200 and resp.get("queued") == 2, resp
    (req2,) = receiver.wait_for(name2)
    assert bitwarden_message(sub2.decrypt(req2.body)) == (5, payload)
    receiver.wait_for(name1, count=2)


# -- c) UnifiedPush --------------------------------------------------------------------------------


def test_unifiedpush_registration_receives_relay_push(server, receiver):
    """An Android device (type 0) with a webPush subscription is a UnifiedPush distributor
    endpoint; here it is pushed to through the relay endpoint `POST /push/send`."""
    user = new_id()
    sub, name, _ = registered(
        server, receiver, user_id=user, identifier="android-1", device_type=0, platform="unifiedpush"
    )
    payload = {"id": new_id(), "userId": user, "organizationId": None, "revisionDate": DATE}
    status, resp = call_json(
        server.url("/push/send"),
        "POST",
        {"userId": user, "organizationId": None, "deviceId": None, "identifier": "some-other-device",
         "type": 1, "payload": payload, "clientType": None, "installationId": None},
        token=server.send_key,
    )
    assert status == 200, resp
    assert resp == {"queued": 1}
    (req,) = receiver.wait_for(name)
    assert req.headers.get("content-encoding") == "aes128gcm"
    assert bitwarden_message(sub.decrypt(req.body)) == (1, payload)
    verify_vapid(req.headers["authorization"])

    # clientType narrows: a Web (1) push does not reach this Mobile device.
    status, resp = call_json(
        server.url("/push/send"),
        "POST",
        {"userId": user, "type": 1, "payload": payload, "clientType": 1},
        token=server.send_key,
    )
    assert status == 200 and resp == {"queued": 0}, resp


# -- d) a dead subscription is removed -----------------------------------------------------------


def test_gone_subscription_is_unregistered(server, receiver):
    user = new_id()
    sub, name, device_id = registered(server, receiver, user_id=user, identifier="browser-dead")
    receiver.answer(name, 410)
    payload = {"userId": user, "date": DATE}

    status, resp = server.send({"type": 5, "payload": payload})
    assert status == 200 and resp.get("queued") == 1, resp
    (req,) = receiver.wait_for(name)
    bitwarden_message(sub.decrypt(req.body))

    # The registration goes once pushwarden has read the 410: poll briefly.
    deadline = time.monotonic() + 5.0
    while True:
        status, resp = server.send({"type": 5, "payload": payload})
        assert status == 200, resp
        if resp.get("queued") == 0:
            break
        assert time.monotonic() < deadline, f"the gone subscription is still registered: {resp}"
        time.sleep(0.1)
    # ...and it is gone from the registry, not just skipped.
    status, resp = call_json(server.url("/push/delete"), "POST", {"id": device_id}, token=server.send_key)
    assert status == 200 and resp == {"deleted": False}, resp


# -- e) the SSRF guard -----------------------------------------------------------------------------


def test_private_endpoints_are_refused_without_opt_in(vapid_key, receiver):
    s = start_server("webpush-ssrf", webpush_env(vapid_key))
    try:
        sub = Subscriber()
        user = new_id()
        refused = [
            receiver.endpoint("ssrf"),  # http://127.0.0.1:<port>/push/ssrf
            f"https://127.0.0.1:{receiver.port}/push/ssrf",
            "https://localhost/push/ssrf",
            "https://[::1]/push/ssrf",
            "https://[::ffff:127.0.0.1]/push/ssrf",
            "https://0.0.0.0/push/ssrf",
            "ftp://push.example.com/push/ssrf",
        ]
        for endpoint in refused:
            status, body = register(
                s, device_id=new_id(), user_id=user, identifier="browser-ssrf", device_type=9,
                web_push=sub.web_push(endpoint),
            )
            assert status == 400, f"{endpoint}: {status} {body}"
            assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
        # A public https endpoint is accepted (registration sends nothing to it, and nothing is
        # ever pushed to this user).
        status, body = register(
            s, device_id=new_id(), user_id=user, identifier="browser-ok", device_type=9,
            web_push=sub.web_push("https://push.example.com/push/abc"),
        )
        assert status == 200 and body.get("platform") == "webpush", body
        assert receiver.received("ssrf") == []
    finally:
        code = s.stop()
    assert code == 0, f"pushwarden exited {code} on SIGTERM"


# -- registration checks -----------------------------------------------------------------------


def test_malformed_subscription_keys_are_refused(server, receiver):
    sub = Subscriber()
    good = sub.web_push(receiver.endpoint("malformed"))
    raw_key = b64url_decode(sub.p256dh)
    compressed = bytes([2 + (raw_key[64] & 1)]) + raw_key[1:33]
    bad = {
        "compressed p256dh": {**good, "p256dh": b64url(compressed)},
        "p256dh not on the curve": {**good, "p256dh": b64url(b"\x04" + b"\x01" * 64)},
        "15-byte auth": {**good, "auth": b64url(os.urandom(15))},
        "auth not base64": {**good, "auth": "!!!!"},
        "endpoint not a URL": {**good, "endpoint": "not a url"},
        "endpoint missing": {"p256dh": good["p256dh"], "auth": good["auth"]},
    }
    for what, web_push in bad.items():
        status, body = register(
            server, device_id=new_id(), user_id=new_id(), identifier="x", device_type=9, web_push=web_push
        )
        assert status == 400, f"{what}: {status} {body}"
        assert isinstance(body, dict) and body.get("error"), f"{what}: {body}"
    status, body = call_json(server.url("/push/register"), "POST", {"deviceId": new_id()})
    assert status == 401, f"no bearer token: {status} {body}"
    assert receiver.received("malformed") == []


def test_health_reports_webpush_configured(server):
    status, body = call_json(server.url("/health"))
    assert status == 200, body
    assert body["providers"]["webpush"]["configured"] is True
    assert body["providers"]["apns"]["configured"] is False
    assert body["providers"]["fcm"]["configured"] is False
    assert body["database"] == "ok"
    assert body["status"] == "ok", body
