#!/usr/bin/env python3
"""Writes the hand-made seeds of every target into corpus/<target>/seed-*.

The seeds are real payloads: SignalR handshakes and hub messages as Bitwarden clients and
servers send them, Bitwarden `/send` and `/push/*` bodies, `/connect/token` forms, Web Push
subscriptions as browsers and UnifiedPush distributors register them, and WebSocket upgrades
as the SignalR JS client and .NET client make them. Running the fuzzers adds to each corpus;
`cargo fuzz cmin` keeps it small. Run from `fuzz/`: `python3 seeds.py`.
"""

import base64
import json
import os
import struct

RS = b"\x1e"
U = "d2ea5b72-1111-4a4a-9f9f-000000000001"
O = "aaaaaaaa-2222-4b4b-8e8e-000000000002"
I = "bbbbbbbb-3333-4c4c-8d8d-000000000003"
D = "cccccccc-4444-4d4d-8c8c-000000000004"


# --- a minimal MessagePack writer (enough for SignalR messages) ---------------------------
def mp(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v < 2**32:
            return b"\xce" + struct.pack(">I", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        if len(b) < 256:
            return b"\xd9" + bytes([len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    if isinstance(v, Ts):
        return b"\xd6\xff" + struct.pack(">I", v.secs)
    raise TypeError(v)


class Ts:
    def __init__(self, secs):
        self.secs = secs


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def framed(body):
    return varint(len(body)) + body


def j(v):
    return json.dumps(v, separators=(",", ":")).encode()


SEEDS = {}


def seed(target, name, data):
    SEEDS.setdefault(target, []).append((name, data if isinstance(data, bytes) else data.encode()))


# --- handshake ---------------------------------------------------------------------------
for name, data in [
    ("json", b'{"protocol":"json","version":1}' + RS),
    ("messagepack", b'{"protocol":"messagepack","version":1}' + RS),
    ("pretty", b'{ "protocol" : "json" , "version" : 1 }' + RS + b'{"type":6}' + RS),
    ("no-separator", b'{"protocol":"json","version":1}'),
    ("response-ok", b"{}" + RS),
    ("response-error", b'{"error":"Requested protocol \'x\' is not available."}' + RS),
    ("unknown-protocol", b'{"protocol":"blazorpack","version":2}' + RS),
    ("not-json", b"\x93\x06" + RS),
]:
    seed("handshake", name, data)

# --- JSON hub messages (one record, without the separator) -------------------------------
sync = {"type": 0, "payload": {"id": D, "userId": U, "organizationId": None,
                               "collectionIds": None, "revisionDate": "2025-11-28T03:20:00.1234567Z"},
        "contextId": None}
json_messages = {
    "invocation-receive": {"type": 1, "target": "ReceiveMessage", "arguments": [sync]},
    "invocation-id": {"type": 1, "invocationId": "1", "target": "Send", "arguments": ["a", 1, 2.5, True, None, [1], {"k": "v"}],
                      "headers": {"h": "v"}},
    "auth-response": {"type": 1, "target": "AuthRequestResponseRecieved",
                      "arguments": [{"type": 16, "payload": {"id": D, "userId": U}, "contextId": None}]},
    "heartbeat": {"type": 1, "target": "Heartbeat", "arguments": []},
    "stream-item": {"type": 2, "invocationId": "1", "item": {"a": 1}},
    "completion-result": {"type": 3, "invocationId": "1", "result": 42},
    "completion-error": {"type": 3, "invocationId": "1", "error": "boom"},
    "completion-void": {"type": 3, "invocationId": "1"},
    "stream-invocation": {"type": 4, "invocationId": "2", "target": "Counter", "arguments": [10], "streamIds": ["s1"]},
    "cancel": {"type": 5, "invocationId": "2"},
    "ping": {"type": 6},
    "close": {"type": 7, "error": "Connection closed with an error.", "allowReconnect": True},
    "close-plain": {"type": 7},
    "ack": {"type": 8, "sequenceId": 1},
    "sequence": {"type": 9, "sequenceId": 7},
    "unknown-type": {"type": 99},
}
for name, msg in json_messages.items():
    seed("json", name, j(msg))

# --- MessagePack hub messages (bodies, without the length prefix) ------------------------
sync_mp = {"Type": 0, "Payload": {"Id": D, "UserId": U, "OrganizationId": None, "CollectionIds": None,
                                  "RevisionDate": Ts(1764300000)}, "ContextId": None}
mp_messages = {
    "invocation-receive": [1, {}, None, "ReceiveMessage", [sync_mp], []],
    "invocation-id": [1, {"h": "v"}, "1", "Send", ["a", 1, -1, 2.5, True, None, b"\x01\x02", [1], {"k": "v"}], []],
    "invocation-old": [1, {}, None, "Heartbeat", []],
    "stream-item": [2, {}, "1", {"a": 1}],
    "completion-error": [3, {}, "1", 1, "boom"],
    "completion-void": [3, {}, "1", 2],
    "completion-value": [3, {}, "1", 3, 42],
    "stream-invocation": [4, {}, "2", "Counter", [10], ["s1"]],
    "cancel": [5, {}, "2"],
    "ping": [6],
    "close": [7, "Connection closed with an error.", True],
    "close-old": [7, None],
    "ack": [8, 1],
    "sequence": [9, 2**40],
}
for name, msg in mp_messages.items():
    seed("msgpack", name, mp(msg))

# --- reader: first byte is the chunk size, then a stream of framed messages ---------------
seed("reader", "json-stream", b"\x07" + RS.join(j(m) for m in json_messages.values()) + RS)
seed("reader", "json-one-byte", b"\x00" + j(json_messages["invocation-receive"]) + RS + j({"type": 6}) + RS)
seed("reader", "msgpack-stream", b"\x09" + b"".join(framed(mp(m)) for m in mp_messages.values()))
seed("reader", "msgpack-big-chunk", b"\x3f" + b"".join(framed(mp(m)) for m in list(mp_messages.values())[:4]))

# --- negotiate: a query string (and, client side, a negotiate response body) -------------
for name, data in [
    ("v1", "negotiateVersion=1"),
    ("v0", "negotiateVersion=0&access_token=eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
    ("js-client", "?negotiateVersion=1&access_token=eyJhbGciOiJSUzI1NiIsImtpZCI6IjE2In0.eyJzdWIiOiJ1In0.c2ln"),
    ("stateful", "negotiateVersion=1&useStatefulReconnect=true"),
    ("negative", "negotiateVersion=-1"),
    ("non-integer", "negotiateVersion=1.5"),
    ("huge", "negotiateVersion=99999999999999999999"),
    ("encoded", "NegotiateVersion=%31&id=abc%2Bdef+ghi&id=second"),
    ("transport", "id=Zm9vYmFyYmF6cXV4&access_token=a.b.c&_=1764300000000"),
    ("bad-escape", "negotiateVersion=%zz%&access_token=%FF"),
    ("response-v1", j({"negotiateVersion": 1, "connectionId": "abc", "connectionToken": "def",
                       "availableTransports": [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
                                               {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
                                               {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]}]}).decode()),
    ("response-stateful", j({"useStatefulReconnect": True, "negotiateVersion": 1, "connectionId": "a",
                             "connectionToken": "b", "availableTransports": []}).decode()),
    ("response-error", '{"error":"The client requested a non-integer protocol version."}'),
    ("response-redirect", j({"url": "https://x.service.signalr.net/client/?hub=h", "accessToken": "t"}).decode()),
    ("response-legacy", '{"Url":"/signalr","ConnectionToken":"x","ProtocolVersion":"1.5"}'),
]:
    seed("negotiate", name, data)

# --- /send bodies (PushNotificationData<T> from Bitwarden's API) ---------------------------
send_bodies = {
    "cipher-update": {"type": 0, "payload": {"id": D, "userId": U, "organizationId": None, "collectionIds": None,
                                              "revisionDate": "2025-11-28T03:20:00.1234567Z"}, "contextId": D},
    "cipher-org": {"Type": 2, "Payload": {"Id": D, "UserId": None, "OrganizationId": O.upper(),
                                          "CollectionIds": [D], "RevisionDate": "2025-11-28T03:20:00Z"}, "ContextId": None},
    "folder": {"type": 7, "payload": {"id": D, "userId": U, "revisionDate": "2025-11-28T03:20:00Z"}},
    "vault": {"type": 5, "payload": {"userId": U, "date": "2025-11-28T03:20:00Z"}, "contextId": None},
    "logout": {"type": 11, "payload": {"userId": U, "date": "2025-11-28T03:20:00Z", "reason": 0}},
    "send-create": {"type": 12, "payload": {"id": D, "userId": U, "revisionDate": "2025-11-28T03:20:00Z"}},
    "auth-request": {"type": 15, "payload": {"id": D, "userId": U}},
    "auth-request-response": {"type": 16, "payload": {"id": D, "userId": U}},
    "org-status": {"type": 18, "payload": {"organizationId": O, "enabled": True}},
    "notification": {"type": 20, "payload": {"id": D, "priority": 0, "global": False, "clientType": 2, "userId": U,
                                             "organizationId": None, "installationId": I, "title": "t", "body": "b",
                                             "creationDate": "2025-11-28T03:20:00Z", "revisionDate": "2025-11-28T03:20:00Z",
                                             "readDate": None, "deletedDate": None}},
    "notification-status": {"type": 21, "payload": {"id": D, "clientType": 0, "organizationId": O}},
    "policy": {"type": 24, "payload": {"organizationId": O, "type": 0, "enabled": True}},
    "provider-bank": {"type": 23, "payload": {"adminId": U, "providerId": D}},
    "unknown-type": {"type": 200, "payload": {}},
    "bad-context": {"type": 5, "payload": {"userId": U}, "contextId": 5},
}
for name, body in send_bodies.items():
    seed("send", name, j(body))
seed("send", "not-object", "[1,2]")

# --- relay bodies: first byte picks the request (see pushwarden_bitwarden::fuzzing::relay) -
relay = [
    ("register-apns", 0, {"deviceId": D, "pushToken": "a1b2c3" * 10, "userId": U, "identifier": D, "type": 1,
                           "organizationIds": [O], "installationId": I}),
    ("register-fcm-pascal", 0, {"DeviceId": D, "PushToken": "fcm:token_value-1", "UserId": U.upper(),
                                 "Identifier": "ident", "Type": 0, "OrganizationIds": [O, ""],
                                 "InstallationId": "00000000-0000-0000-0000-000000000000"}),
    ("register-webpush", 0, {"deviceId": D, "userId": U, "type": 9, "identifier": D,
                              "webPush": {"endpoint": "https://fcm.googleapis.com/fcm/send/abc:def",
                                          "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
                                          "auth": "BTBZMqHH6r4Tts7J_aSIgg"}}),
    ("register-sandbox", 0, {"deviceId": D, "pushToken": "t", "userId": U, "type": 1, "apnsEnvironment": "sandbox"}),
    ("delete", 1, {"id": D}),
    ("add-organization", 2, {"devices": [{"id": D}, {"Id": "dev-2"}], "organizationId": O}),
    ("send-user", 3, {"userId": U, "organizationId": None, "installationId": None, "identifier": D, "type": 0,
                       "payload": {"id": D, "userId": U, "revisionDate": "2025-11-28T03:20:00Z"}, "clientType": None}),
    ("send-installation", 3, {"InstallationId": I, "Type": 20, "Payload": {"id": D}, "ClientType": 2}),
    ("send-org", 3, {"organizationId": O, "type": 18, "payload": {"organizationId": O, "enabled": False}}),
]
for name, kind, body in relay:
    seed("relay", name, bytes([kind]) + j(body))
for name, form in [
    ("token-form", f"grant_type=client_credentials&scope=api.push&client_id=installation.{I}&client_secret=AbCdEf0123456789AbCd"),
    ("token-no-scope", f"grant_type=client_credentials&client_id=installation.{I.upper()}&client_secret=k%2Bey"),
    ("token-bad-grant", "grant_type=password&username=u&password=p"),
    ("token-bad-scope", f"grant_type=client_credentials&scope=api.push+api&client_id=installation.{I}&client_secret=s"),
]:
    seed("relay", name, b"\x04" + form.encode())
basic = base64.b64encode(f"installation.{I}:AbCdEf%3A0123".encode()).decode()
seed("relay", "token-basic", b"\x05" + f"Basic {basic}\ngrant_type=client_credentials&scope=api.push".encode())

# --- Web Push subscriptions: endpoint \n p256dh \n auth (the registration's webPush) --------
P256DH = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
p256_std = base64.b64encode(base64.urlsafe_b64decode(P256DH + "=")).decode()
for name, (endpoint, p256dh, auth) in {
    "fcm": ("https://fcm.googleapis.com/fcm/send/dAb:APA91bH", P256DH, AUTH),
    "mozilla": ("https://updates.push.services.mozilla.com/wpush/v2/gAAAAABn", P256DH, AUTH),
    "apple": ("https://web.push.apple.com/QGuQyavXutnMH", P256DH, AUTH + "=="),
    "unifiedpush": ("https://ntfy.sh/upAbCdEf?up=1", p256_std, AUTH),
    "std-base64": ("https://push.example.com:8443/x", p256_std, "BTBZMqHH6r4Tts7J/aSIgg=="),
    "private-v4": ("https://192.168.1.10/push", P256DH, AUTH),
    "mapped-v6": ("https://[::ffff:127.0.0.1]/push", P256DH, AUTH),
    "nat64": ("https://[64:ff9b::7f00:1]/x", P256DH, AUTH),
    "localhost": ("https://api.localhost./x", P256DH, AUTH),
    "plain-http": ("http://push.example.com/x", P256DH, AUTH),
    "compressed-key": ("https://push.example.com/x",
                       base64.urlsafe_b64encode(b"\x02" + b"\x11" * 32).decode().rstrip("="), AUTH),
    "short-auth": ("https://push.example.com/x", P256DH, "AAAA"),
}.items():
    seed("webpush", name, f"{endpoint}\n{p256dh}\n{auth}")

# --- WebSocket upgrades: request line and headers, as HTTP/1.1 ------------------------------
def upgrade(method, target, headers):
    return f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"


ws_js = [("Host", "vault.example.com"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
         ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
         ("Origin", "https://vault.example.com"),
         ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
for name, (method, target, headers) in {
    "js-client": ("GET", "/notifications/hub?access_token=eyJhbGciOiJSUzI1NiJ9.e30.c2ln", ws_js),
    "anonymous": ("GET", f"/notifications/anonymous-hub?Token={D}", ws_js),
    "negotiated": ("GET", "/hub?id=Zm9vYmFyYmF6cXV4", ws_js),
    "dotnet": ("GET", "/hub", [("Host", "localhost:5000"), ("Connection", "keep-alive, Upgrade"),
                               ("Upgrade", "WebSocket"), ("Sec-WebSocket-Version", "13"),
                               ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
                               ("Authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln")]),
    "version-8": ("GET", "/hub", [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                  ("Sec-WebSocket-Version", "8"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]),
    "no-key": ("GET", "/hub", [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]),
    "no-connection": ("GET", "/hub", [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
                                      ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]),
    "post": ("POST", "/hub?id=abc", ws_js),
}.items():
    seed("upgrade", name, upgrade(method, target, headers))

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for target, seeds in SEEDS.items():
        d = os.path.join(here, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds:
            with open(os.path.join(d, f"seed-{name}"), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seeds)} seeds")
