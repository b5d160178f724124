"""docs/openapi.json against a running pushwarden, so the document cannot drift from the router.

- The binary serves the document (GET /openapi.json) as it is in docs/ (it is compiled in: a
  difference means the binary is older than the document).
- Every documented operation is routed (never 404 or 405 with the documented method), and what
  it answers to an empty body is a documented status with a documented content type and shape.
- Every route the server has (SERVER_ROUTES, kept by hand beside crates/app/src/server.rs) is
  documented, and the server answers 404/405 to the other methods on documented paths and to
  documented paths under another known prefix (/api, /notifications, /identity).
- Every documented request example is accepted (200), and the answer matches the documented
  response schema; the examples match their request schemas. Examples marked
  `x-pushwarden-installation-credentials` name a real installation's credentials: the test makes
  one with `pushwarden installation create` and substitutes its id and key.
- Documented security holds: operations with bearerAuth refuse a missing or wrong token with
  401; the push API also takes an installation token (installationAuth) from /connect/token, with
  every example; the others answer without one.
- The relay: token -> register -> send -> delete with an installation token, ids kept prefixed
  `{installationId}_{id}`, a foreign installationId refused, a disabled installation refused, the
  token endpoint's OAuth errors, and the per-installation limits (429 with Retry-After); each answer
  matches the document, documented headers included.
- With device push on (a VAPID key), /send answers `queued` and /push/config names the key.

The document's validity as OpenAPI 3.1 is checked with openapi-spec-validator (0.9.0) in a
throwaway venv, not a dependency of this suite:
    python3 -m venv /tmp/oas && /tmp/oas/bin/pip install openapi-spec-validator
    /tmp/oas/bin/openapi-spec-validator docs/openapi.json
That validator does not notice a dangling $ref, so here a small JSON Schema subset checks every
$ref and the shapes of examples and answers.
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import NamedTuple

import pytest

from harness.server import REPO_ROOT, start_server
from harness.webpush import PushReceiver, Subscriber, public_key_of_pem

DOC_PATH = REPO_ROOT / "docs" / "openapi.json"
DOC = json.loads(DOC_PATH.read_text())
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
OPERATIONS = [
    (path, method)
    for path, item in DOC["paths"].items()
    for method in HTTP_METHODS
    if method in item
]
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# An Example Object extension: client_id and client_secret stand for a real installation's.
INSTALLATION_CREDENTIALS = "x-pushwarden-installation-credentials"

# The routes crates/app/src/server.rs serves, the SignalR hubs (/hub, /anonymous-hub, also under
# /notifications) aside. Each must be documented, and the document must describe no other: a
# route added to the server is added here and to docs/openapi.json.
PUSH_API_ROUTES = [
    ("/push/register", "post"),
    ("/push/delete", "post"),
    ("/push/delete/{id}", "post"),
    ("/push/delete/{id}", "delete"),
    ("/push/add-organization", "put"),
    ("/push/delete-organization", "put"),
    ("/push/send", "post"),
]
SERVER_ROUTES = [
    ("/send", "post"),
    ("/notifications/send", "post"),
    *PUSH_API_ROUTES,
    *[("/api" + path, method) for path, method in PUSH_API_ROUTES],
    ("/connect/token", "post"),
    ("/identity/connect/token", "post"),
    ("/push/config", "get"),
    ("/health", "get"),
    ("/alive", "get"),
    ("/now", "get"),
    ("/notifications/alive", "get"),
    ("/notifications/now", "get"),
    ("/metrics", "get"),
    ("/openapi.json", "get"),
]
# Prefixes the server mounts some routes under; a documented path under another of them must 404.
KNOWN_PREFIXES = ("", "/api", "/notifications", "/identity")
PROBE_METHODS = ("get", "post", "put", "delete", "patch")


def operation_params():
    return [pytest.param(path, method, id=f"{method.upper()} {path}") for path, method in OPERATIONS]


# -- HTTP ----------------------------------------------------------------------------------------


def http(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str | None = None,
    token: str | None = None,
    basic: tuple[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One request; returns (status, lower-case headers, raw body), error statuses included."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if basic is not None:  # RFC 6749 §2.3.1: both parts form-urlencoded, then Basic
        user, password = (urllib.parse.quote_plus(part) for part in basic)
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if body is not None:
        headers["Content-Type"] = content_type or JSON
    req = urllib.request.Request(url, data=body, method=method.upper(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def encode(content_type: str, value) -> bytes:
    if content_type == FORM:
        return urllib.parse.urlencode(value).encode()
    assert content_type == JSON, f"no encoder for {content_type}"
    return json.dumps(value).encode()


# -- a JSON Schema subset: enough for this document ---------------------------------------------


def resolve(node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local $refs: {ref}"
        target = DOC
        for part in ref[2:].split("/"):
            assert isinstance(target, dict) and part in target, f"dangling $ref {ref}"
            target = target[part]
        node = target
    return node


JSON_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def violations(value, schema: dict, where: str = "$") -> list[str]:
    schema = resolve(schema)
    out: list[str] = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(JSON_TYPES[t](value) for t in types):
            return [f"{where}: {value!r} is not of type {types}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{where}: {value!r} != const {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        out.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, str) and "minLength" in schema and len(value) < schema["minLength"]:
        out.append(f"{where}: {value!r} is shorter than {schema['minLength']}")
    if isinstance(value, (int, float)) and "minimum" in schema and value < schema["minimum"]:
        out.append(f"{where}: {value!r} < {schema['minimum']}")
    if "anyOf" in schema and all(violations(value, s, where) for s in schema["anyOf"]):
        out.append(f"{where}: {value!r} matches none of anyOf")
    if "allOf" in schema:
        for s in schema["allOf"]:
            out += violations(value, s, where)
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not violations(value, s, where)]
        if len(matching) != 1:
            out.append(f"{where}: {value!r} matches {len(matching)} of oneOf (want 1)")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                out.append(f"{where}: required property {name!r} missing")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                out += violations(value[name], sub, f"{where}.{name}")
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(schema.get("properties", {}))
            if extra:
                out.append(f"{where}: undocumented properties {sorted(extra)}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += violations(item, schema["items"], f"{where}[{i}]")
    return out


# -- the document --------------------------------------------------------------------------------


def op_of(path: str, method: str) -> dict:
    return DOC["paths"][path][method]


def path_parameters(path: str, op: dict) -> list[dict]:
    params = DOC["paths"].get(path, {}).get("parameters", []) + op.get("parameters", [])
    return [p for p in map(resolve, params) if p["in"] == "path"]


def fill_path(path: str, op: dict | None = None, values: dict[str, str] | None = None) -> str:
    """The path with each `{param}` replaced by `values[param]`, else the parameter's example."""
    op = op or {}
    examples = {p["name"]: p.get("example") for p in path_parameters(path, op)}
    examples.update(values or {})

    def sub(m: re.Match) -> str:
        value = examples.get(m.group(1))
        assert value is not None, f"{path}: no example for path parameter {m.group(1)}"
        return urllib.parse.quote(str(value), safe="")

    return re.sub(r"\{([^}]+)\}", sub, path)


class Example(NamedTuple):
    content_type: str
    value: object
    needs_installation: bool


def request_examples(op: dict) -> list[Example]:
    found = []
    for ctype, media in op.get("requestBody", {}).get("content", {}).items():
        if "example" in media:
            found.append(Example(ctype, media["example"], False))
        for example in media.get("examples", {}).values():
            example = resolve(example)
            found.append(Example(ctype, example["value"], bool(example.get(INSTALLATION_CREDENTIALS))))
        schema = resolve(media.get("schema", {}))
        found += [Example(ctype, value, False) for value in schema.get("examples", [])]
    return found


def request_schema(op: dict, content_type: str) -> dict:
    return op["requestBody"]["content"][content_type]["schema"]


def security_of(op: dict) -> list[dict]:
    return op.get("security", DOC.get("security", []))


def schemes_of(op: dict) -> set[str]:
    return {name for requirement in security_of(op) for name in requirement}


def needs_auth(op: dict) -> bool:
    """A credential is required: some security requirement, and no empty (optional) one."""
    security = security_of(op)
    return bool(security) and {} not in security


def takes_installation_token(op: dict) -> bool:
    return "installationAuth" in schemes_of(op)


def check_headers(response: dict, headers: dict, what: str) -> None:
    for name, header in response.get("headers", {}).items():
        header = resolve(header)
        value = headers.get(name.lower())
        if value is None:
            assert not header.get("required"), f"{what}: documented header {name} is missing"
            continue
        schema = resolve(header.get("schema", {}))
        if schema.get("type") == "integer":
            assert re.fullmatch(r"\d+", value), f"{what}: header {name}: {value!r} is not an integer"
            value = int(value)
        problems = violations(value, schema, name)
        assert not problems, f"{what}: header {name}: {problems}"


def check_answer(op: dict, status: int, headers: dict, raw: bytes, what: str):
    """Asserts the answer is documented (status, headers, content type, shape); returns the JSON body."""
    responses = op["responses"]
    assert str(status) in responses, f"{what}: answered {status}, documented {sorted(responses)}: {raw[:300]!r}"
    response = resolve(responses[str(status)])
    check_headers(response, headers, f"{what}: {status}")
    content = response.get("content")
    if not content:
        return None
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    assert ctype in content, f"{what}: content type {ctype!r}, documented {sorted(content)}"
    if ctype == JSON:
        body = json.loads(raw)
        problems = violations(body, content[ctype]["schema"])
        assert not problems, f"{what}: {status} answer {body} does not match the document: {problems}"
        return body
    return None


def documented_call(server, path: str, method: str, value=None, *, path_values=None, content_type=None, **kw):
    """Calls the documented operation (path template, method) with `value` encoded in its documented
    request content type; checks the answer against the document; returns (status, headers, body)."""
    op = op_of(path, method)
    body = None
    if value is not None:
        content_type = content_type or next(iter(op["requestBody"]["content"]))
        body = encode(content_type, value)
    url = server.url(fill_path(path, op, path_values))
    status, headers, raw = http(url, method, body, content_type, **kw)
    parsed = check_answer(op, status, headers, raw, f"{method.upper()} {url} with {value}")
    return status, headers, parsed


# -- installations -------------------------------------------------------------------------------


class Installation(NamedTuple):
    id: str
    key: str


def installation_cli(server, *args: str) -> subprocess.CompletedProcess:
    """`pushwarden installation …` on the server's database (same environment, same data dir)."""
    done = subprocess.run(
        [server.bin, "installation", *args], env=server.env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, f"pushwarden installation {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def create_installation(server) -> Installation:
    out = installation_cli(server, "create").stdout
    found = dict(re.findall(r"^(id|key):\s+(\S+)\s*$", out, re.MULTILINE))
    assert set(found) == {"id", "key"}, f"`installation create` printed no id and key lines:\n{out}"
    return Installation(found["id"], found["key"])


def token_form(installation: Installation, **extra) -> dict:
    form = {
        "grant_type": "client_credentials",
        "scope": "api.push",
        "client_id": f"installation.{installation.id}",
        "client_secret": installation.key,
    }
    form.update(extra)
    return {k: v for k, v in form.items() if v is not None}


def materialize(example: Example, installation: Installation | None):
    if not example.needs_installation:
        return example.value
    assert installation is not None
    value = dict(example.value)
    value["client_id"] = f"installation.{installation.id}"
    value["client_secret"] = installation.key
    return value


def get_token(server, installation: Installation, path: str = "/connect/token") -> str:
    status, _, body = documented_call(server, path, "post", token_form(installation))
    assert status == 200, f"{path} refused the installation's credentials: {status} {body}"
    return body["access_token"]


def new_id() -> str:
    return str(uuid.uuid4())


# -- servers -------------------------------------------------------------------------------------


def stop(server) -> None:
    code = server.stop()
    assert code == 0, f"pushwarden exited {code} on SIGTERM:\n{server.log_tail()}"


@pytest.fixture(scope="module")
def server():
    """The default server: no push provider, no upstream relay."""
    s = start_server("openapi")
    yield s
    stop(s)


@pytest.fixture(scope="module")
def installation(server) -> Installation:
    return create_installation(server)


@pytest.fixture(scope="module")
def relay_token(server, installation) -> str:
    return get_token(server, installation)


@pytest.fixture(scope="module")
def vapid_key_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("vapid") / "vapid-private-key.pem"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWARDEN_")}
    bin_ = os.environ.get("PUSHWARDEN_BIN") or str(REPO_ROOT / "target" / "debug" / "pushwarden")
    done = subprocess.run(
        [bin_, "vapid", "generate", "--out", str(path)], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, f"vapid generate failed: {done.stderr}"
    return path


@pytest.fixture(scope="module")
def receiver():
    r = PushReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def webpush_server(vapid_key_path):
    """Device push on: Web Push with a VAPID key, subscriptions on 127.0.0.1 allowed."""
    s = start_server(
        "openapi-webpush",
        {
            "PUSHWARDEN_VAPID_PRIVATE_KEY": str(vapid_key_path),
            "PUSHWARDEN_VAPID_SUBJECT": "mailto:ops@example.com",
            "PUSHWARDEN_PUSH_ALLOW_PRIVATE_ENDPOINTS": "true",
        },
    )
    yield s
    stop(s)


LIMITS = {"requests": 6, "pushes": 1, "registrations": 1}


@pytest.fixture(scope="module")
def limited_server():
    s = start_server(
        "openapi-limits",
        {
            "PUSHWARDEN_RELAY_REQUESTS_PER_MINUTE": str(LIMITS["requests"]),
            "PUSHWARDEN_RELAY_PUSHES_PER_MINUTE": str(LIMITS["pushes"]),
            "PUSHWARDEN_RELAY_MAX_REGISTRATIONS": str(LIMITS["registrations"]),
        },
    )
    yield s
    stop(s)


# -- the document itself ---------------------------------------------------------------------------


def test_served_document_is_docs_openapi_json(server):
    status, headers, raw = http(server.url("/openapi.json"))
    assert status == 200
    assert headers.get("content-type", "").startswith(JSON)
    served = json.loads(raw)
    assert served == DOC, (
        f"GET /openapi.json differs from {DOC_PATH}: the binary embeds the file at build time, "
        "rebuild it (cargo build --bin pushwarden)"
    )


def test_document_structure():
    assert DOC["openapi"].startswith("3.1."), DOC["openapi"]
    assert DOC["info"]["title"] and DOC["info"]["version"]
    assert OPERATIONS, "no operations documented"
    schemes = DOC["components"]["securitySchemes"]
    assert (schemes["bearerAuth"]["type"], schemes["bearerAuth"]["scheme"]) == ("http", "bearer")
    # Installation tokens: OAuth 2.0 client credentials at a documented token endpoint.
    installation_auth = schemes["installationAuth"]
    assert installation_auth["type"] == "oauth2"
    flow = installation_auth["flows"]["clientCredentials"]
    assert list(flow["scopes"]) == ["api.push"]
    assert "post" in DOC["paths"][flow["tokenUrl"]], f"tokenUrl {flow['tokenUrl']} is not documented"
    assert (schemes["clientBasic"]["type"], schemes["clientBasic"]["scheme"]) == ("http", "basic")
    ids = [op_of(p, m)["operationId"] for p, m in OPERATIONS]
    assert len(ids) == len(set(ids)), "operationIds must be unique"

    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(node)  # raises on a dangling reference
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(DOC, "#")
    for path, method in OPERATIONS:
        op = op_of(path, method)
        what = f"{method.upper()} {path}"
        assert op.get("responses"), f"{what} documents no responses"
        for name in schemes_of(op):
            assert name in schemes, f"{what}: unknown security scheme {name}"
        if needs_auth(op):
            assert "401" in op["responses"], f"{what} needs a credential but documents no 401"
        if takes_installation_token(op):
            for status in ("403", "429"):
                assert status in op["responses"], f"{what} takes installation tokens but documents no {status}"
        # Every {param} of the path is a documented path parameter with an example.
        declared = {p["name"]: p for p in path_parameters(path, op)}
        assert set(re.findall(r"\{([^}]+)\}", path)) == set(declared), f"{what}: path parameters {sorted(declared)}"
        for p in declared.values():
            assert p.get("required") is True and p.get("example") is not None, f"{what}: parameter {p['name']}"
            assert not violations(p["example"], p["schema"]), f"{what}: parameter {p['name']} example"
        for example in request_examples(op):
            problems = violations(example.value, request_schema(op, example.content_type))
            assert not problems, f"{what} example {example.value} breaks its schema: {problems}"
            if example.needs_installation:
                assert {"client_id", "client_secret"} <= set(example.value), f"{what}: {example}"
        # Documented response examples match their schemas too.
        for status, response in op["responses"].items():
            for ctype, media in resolve(response).get("content", {}).items():
                shown = ([media["example"]] if "example" in media else []) + [
                    resolve(e)["value"] for e in media.get("examples", {}).values()
                ]
                for value in shown:
                    problems = violations(value, media["schema"])
                    assert not problems, f"{what} {status} example {value} breaks its schema: {problems}"
    # The enums carry Bitwarden's numbers.
    push_types = resolve({"$ref": "#/components/schemas/PushType"})["oneOf"]
    assert [t["const"] for t in push_types] == list(range(28))
    assert push_types[5]["title"] == "SyncVault" and push_types[27]["title"] == "PremiumStatusChanged"
    device_types = resolve({"$ref": "#/components/schemas/DeviceType"})["oneOf"]
    assert [t["const"] for t in device_types] == list(range(27))
    assert device_types[9]["title"] == "ChromeBrowser" and device_types[26]["title"] == "DuckDuckGoBrowser"
    technologies = resolve({"$ref": "#/components/schemas/PushConfig"})["properties"]["pushTechnology"]["oneOf"]
    assert [(t["const"], t["title"]) for t in technologies] == [(0, "SignalR"), (1, "WebPush")]


def test_server_routes_are_documented():
    """The reverse of test_documented_operation_is_routed: no route of the server is left out."""
    documented = set(OPERATIONS)
    missing = [f"{m.upper()} {p}" for p, m in SERVER_ROUTES if (p, m) not in documented]
    assert not missing, f"routes the server has that docs/openapi.json does not describe: {missing}"
    unlisted = [f"{m.upper()} {p}" for p, m in OPERATIONS if (p, m) not in set(SERVER_ROUTES)]
    assert not unlisted, f"documented operations missing from SERVER_ROUTES in this test: {unlisted}"


# -- every documented operation, on the default server ---------------------------------------------


@pytest.mark.parametrize("path,method", operation_params())
def test_documented_operation_is_routed(server, path, method):
    op = op_of(path, method)
    content_type = next(iter(op["requestBody"]["content"]), None) if "requestBody" in op else None
    body = encode(content_type, {}) if content_type else None
    token = server.send_key if "bearerAuth" in schemes_of(op) else None
    url = server.url(fill_path(path, op))
    status, headers, raw = http(url, method, body, content_type, token=token)
    assert status not in (404, 405), f"{method.upper()} {path} is documented but answers {status}"
    check_answer(op, status, headers, raw, f"{method.upper()} {path} with an empty {content_type} body")


def test_no_undocumented_routes_nearby(server):
    """Other methods on documented paths answer 404/405, and documented paths under another known
    prefix answer 404: the server has nothing there the document leaves out."""
    problems = []
    documented_paths = set(DOC["paths"])
    bases = set()
    for path in documented_paths:
        base = path
        for prefix in KNOWN_PREFIXES[1:]:
            if path.startswith(prefix + "/"):
                base = path[len(prefix):]
        bases.add(base)
    candidates = {(p, p in documented_paths) for p in documented_paths}
    candidates |= {(prefix + b, False) for b in bases for prefix in KNOWN_PREFIXES if prefix + b not in documented_paths}
    for path, documented in sorted(candidates):
        url = server.url(fill_path(path, values={"id": "probe"}))
        for method in PROBE_METHODS:
            if documented and method in DOC["paths"][path]:
                continue
            status, _, raw = http(url, method, b"" if method in ("post", "put", "patch") else None)
            allowed = (404, 405) if documented else (404,)
            if status not in allowed:
                problems.append(f"{method.upper()} {path}: {status} {raw[:120]!r}")
    assert not problems, f"the server answers where the document says nothing: {problems}"


@pytest.mark.parametrize(
    "path,method", [p for p in operation_params() if "requestBody" in op_of(*p.values)]
)
def test_documented_examples_are_accepted(server, installation, path, method):
    op = op_of(path, method)
    examples = request_examples(op)
    assert examples, f"{method.upper()} {path} has a request body but no example"
    token = server.send_key if "bearerAuth" in schemes_of(op) else None
    for example in examples:
        value = materialize(example, installation)
        status, _, body = documented_call(server, path, method, value, content_type=example.content_type, token=token)
        assert status == 200, f"{method.upper()} {path} refused its documented example {value}: {status} {body}"


@pytest.mark.parametrize("path,method", [p for p in operation_params() if takes_installation_token(op_of(*p.values))])
def test_documented_examples_are_accepted_with_installation_token(server, relay_token, path, method):
    op = op_of(path, method)
    examples = request_examples(op) or [None]
    for example in examples:
        value = example.value if example else None
        ctype = example.content_type if example else None
        status, _, body = documented_call(server, path, method, value, content_type=ctype, token=relay_token)
        assert status == 200, f"{method.upper()} {path} with an installation token refused {value}: {status} {body}"


@pytest.mark.parametrize("path,method", operation_params())
def test_documented_security_holds(server, installation, path, method):
    op = op_of(path, method)
    example = (request_examples(op) or [None])[0]
    value = materialize(example, installation) if example else None
    ctype = example.content_type if example else None
    if needs_auth(op):
        for token in (None, "not-the-key"):
            status, headers, _ = documented_call(server, path, method, value, content_type=ctype, token=token)
            assert status == 401, f"{method.upper()} {path} with token {token!r}: {status}"
            assert headers.get("www-authenticate", "").lower().startswith("bearer")
    else:
        status, _, _ = documented_call(server, path, method, value, content_type=ctype)
        assert status == 200, f"{method.upper()} {path} is documented without a required credential but answers {status}"


def test_installation_token_is_not_a_send_credential(server, relay_token):
    """/send documents bearerAuth only: an installation token is refused there."""
    for path in ("/send", "/notifications/send"):
        assert "installationAuth" not in schemes_of(op_of(path, "post"))
        example = request_examples(op_of(path, "post"))[0]
        status, _, body = documented_call(server, path, "post", example.value, token=relay_token)
        assert status == 401, f"{path} took an installation token: {status} {body}"


def test_device_push_off_answers(server):
    """No provider and no upstream relay: /send has no `queued`, /push/config says SignalR, /health
    has no relay requests."""
    example = request_examples(op_of("/send", "post"))[0]
    status, _, body = documented_call(server, "/send", "post", example.value, token=server.send_key)
    assert status == 200 and "queued" not in body, body
    status, _, body = documented_call(server, "/push/config", "get")
    assert body == {"pushTechnology": 0, "vapidPublicKey": None}
    status, _, body = documented_call(server, "/health", "get")
    assert body["pendingRelayRequests"] is None, body
    assert set(body["providers"]) == {"apns", "fcm", "webpush", "relay"}, body
    assert not any(p["configured"] for p in body["providers"].values()), body


# -- the relay --------------------------------------------------------------------------------------


def test_token_endpoint_errors_are_documented(server, installation):
    def token(form, basic=None, path="/connect/token"):
        status, headers, body = documented_call(server, path, "post", form, basic=basic)
        return status, headers, body

    cases = [
        ("no grant_type", token_form(installation, grant_type=None), 400, "invalid_request"),
        ("password grant", token_form(installation, grant_type="password"), 400, "unsupported_grant_type"),
        ("no secret", token_form(installation, client_secret=None), 400, "invalid_client"),
        ("not an installation", token_form(installation, client_id=f"user.{installation.id}"), 400, "invalid_client"),
        ("unknown installation", token_form(installation, client_id=f"installation.{new_id()}"), 400, "invalid_client"),
        ("wrong key", token_form(installation, client_secret="wrong"), 400, "invalid_client"),
        ("another scope", token_form(installation, scope="api.push api"), 400, "invalid_scope"),
    ]
    for what, form, want_status, want_error in cases:
        status, headers, body = token(form)
        assert (status, body["error"]) == (want_status, want_error), f"{what}: {status} {body}"
        assert headers.get("cache-control") == "no-store", f"{what}: {headers}"

    # HTTP Basic client authentication: right credentials work, wrong ones answer 401.
    basic_form = {"grant_type": "client_credentials", "scope": "api.push"}
    for path in ("/connect/token", "/identity/connect/token"):
        status, headers, body = token(basic_form, basic=(f"installation.{installation.id}", installation.key), path=path)
        assert status == 200, f"{path} with Basic: {status} {body}"
        assert (body["token_type"], body["scope"]) == ("Bearer", "api.push") and body["expires_in"] > 0
        status, headers, body = token(basic_form, basic=(f"installation.{installation.id}", "wrong"), path=path)
        assert status == 401 and body["error"] == "invalid_client", f"{path} with a wrong Basic key: {status} {body}"
        assert headers.get("www-authenticate", "").startswith("Basic"), headers
    # No scope asked for means api.push.
    status, _, body = token(token_form(installation, scope=None))
    assert status == 200 and body["scope"] == "api.push", body


def test_disabled_installation_is_refused(server):
    inst = create_installation(server)
    token = get_token(server, inst)
    status, _, body = documented_call(server, "/push/delete/{id}", "delete", path_values={"id": new_id()}, token=token)
    assert status == 200, body
    installation_cli(server, "disable", inst.id)
    # Its existing token stops working at once (403), and it gets no new one.
    for path, method in PUSH_API_ROUTES:
        op = op_of(path, method)
        example = (request_examples(op) or [None])[0]
        value = example.value if example else None
        status, _, body = documented_call(server, path, method, value, token=token)
        assert status == 403, f"{method.upper()} {path} with a disabled installation's token: {status} {body}"
    status, _, body = documented_call(server, "/connect/token", "post", token_form(inst))
    assert (status, body["error"]) == (400, "invalid_client"), body
    installation_cli(server, "enable", inst.id)
    get_token(server, inst)


def test_relay_flow_token_register_send_delete(webpush_server, receiver):
    """An installation's whole round, each answer checked against the document: its ids are kept
    prefixed, another installation cannot touch its device, a foreign installationId is refused."""
    server = webpush_server
    inst = create_installation(server)
    status, headers, body = documented_call(server, "/connect/token", "post", token_form(inst))
    assert status == 200 and body["token_type"] == "Bearer" and body["scope"] == "api.push", body
    token = body["access_token"]
    # The EU form (/identity/connect/token, then /api/push/*) gives a token that works the same.
    api_token = get_token(server, inst, "/identity/connect/token")

    device, user, org, identifier = new_id(), new_id(), new_id(), "relayed-browser"
    sub = Subscriber()
    endpoint = f"relay-{device}"
    registration = {
        "deviceId": device,
        "userId": user,
        "identifier": identifier,
        "type": 9,
        "webPush": sub.web_push(receiver.endpoint(endpoint)),
        "organizationIds": [org],
        "installationId": inst.id,
    }
    status, _, body = documented_call(server, "/push/register", "post", registration, token=token)
    assert status == 200, body
    assert body == {"deviceId": f"{inst.id}_{device}", "platform": "webpush"}, "the stored id is prefixed"
    # An installationId that is not the caller's is refused.
    status, _, body = documented_call(server, "/push/register", "post", {**registration, "installationId": new_id()}, token=token)
    assert status == 400, body

    payload = {"userId": user, "date": "2026-11-28T10:00:00Z"}
    pushes = 0

    def push(expect_queued: int, how: str = "/push/send", tok: str = token, **target) -> None:
        nonlocal pushes
        status, _, body = documented_call(server, how, "post", {"type": 5, "payload": payload, **target}, token=tok)
        assert status == 200 and body == {"queued": expect_queued}, f"{how} {target}: {status} {body}"
        if expect_queued:
            pushes += expect_queued
            got = receiver.wait_for(endpoint, count=pushes)
            message = json.loads(sub.decrypt(got[-1].body))
            assert message["data"]["type"] == 5 and json.loads(message["data"]["payload"]) == payload, message

    push(1, userId=user, identifier="another-device")
    push(0, userId=user, identifier=identifier)  # the sending device is skipped, prefixed alike
    push(1, organizationId=org)
    push(1, installationId=inst.id)
    push(1, "/api/push/send", api_token, userId=user)
    status, _, body = documented_call(server, "/push/send", "post", {"type": 5, "payload": payload, "installationId": new_id()}, token=token)
    assert status == 400, f"a foreign installationId: {status} {body}"
    # The local vault server's ids are used as given: the relayed user is only reached by its stored id.
    push(0, tok=server.send_key, userId=user)
    push(1, tok=server.send_key, userId=f"{inst.id}_{user}")

    # Another installation names the same ids and reaches nothing of the first one's.
    other = get_token(server, create_installation(server))
    push(0, tok=other, userId=user)
    status, _, body = documented_call(server, "/push/delete/{id}", "delete", path_values={"id": device}, token=other)
    assert status == 200 and body == {"deleted": False}, body

    # Vaultwarden's delete: the id in the path, no body.
    status, _, body = documented_call(server, "/push/delete/{id}", "delete", path_values={"id": device}, token=token)
    assert status == 200 and body == {"deleted": True}, body
    status, _, body = documented_call(server, "/api/push/delete/{id}", "post", path_values={"id": device}, token=api_token)
    assert status == 200 and body == {"deleted": False}, body
    push(0, userId=user)


def test_device_push_on_answers(webpush_server, vapid_key_path):
    """A VAPID key configured: /send answers `queued`, /push/config says WebPush with the key."""
    server = webpush_server
    for path in ("/send", "/notifications/send"):
        for example in request_examples(op_of(path, "post")):
            status, _, body = documented_call(server, path, "post", example.value, token=server.send_key)
            assert status == 200 and body.get("queued") == 0, f"{path}: {body}"
    status, _, body = documented_call(server, "/push/config", "get")
    assert body == {"pushTechnology": 1, "vapidPublicKey": public_key_of_pem(vapid_key_path.read_bytes())}
    status, _, body = documented_call(server, "/health", "get")
    assert body["providers"]["webpush"]["configured"] is True, body
    assert body["providers"]["relay"]["configured"] is False and body["pendingRelayRequests"] is None, body


def test_relay_limits_answer_429_with_retry_after(limited_server):
    server = limited_server
    inst = create_installation(server)
    token = get_token(server, inst)

    def register(device: str):
        example = request_examples(op_of("/push/register", "post"))[0].value
        return documented_call(server, "/push/register", "post", {**example, "deviceId": device}, token=token)

    first, second = new_id(), new_id()
    status, _, body = register(first)
    assert status == 200, body
    # The installation has the most devices allowed: a new one is refused, the same one is not.
    status, headers, body = register(second)
    assert status == 429 and headers["retry-after"] == "3600", (status, headers, body)
    status, _, body = register(first)
    assert status == 200, body
    # /push/send calls per minute.
    send = {"type": 5, "userId": new_id(), "payload": {"userId": new_id()}}
    status, _, body = documented_call(server, "/push/send", "post", send, token=token)
    assert status == 200, body
    status, headers, body = documented_call(server, "/push/send", "post", send, token=token)
    assert status == 429 and int(headers["retry-after"]) >= 1, (status, body)
    # The local vault server is not limited.
    status, _, body = documented_call(server, "/push/send", "post", send, token=server.send_key)
    assert status == 200, body
    # Requests per minute: the budget runs out within a few more calls.
    for _ in range(LIMITS["requests"] + 3):
        status, headers, body = documented_call(
            server, "/push/delete/{id}", "delete", path_values={"id": new_id()}, token=token
        )
        if status == 429:
            break
        assert status == 200, body
    assert status == 429 and int(headers["retry-after"]) >= 1, f"no 429 after {LIMITS['requests']} requests: {body}"
    # Token requests per installation.
    for _ in range(LIMITS["requests"] + 3):
        status, headers, body = documented_call(server, "/connect/token", "post", token_form(inst))
        if status == 429:
            break
        assert status == 200, body
    assert status == 429 and int(headers["retry-after"]) >= 1, f"token requests were not limited: {body}"
