"""docs/openapi.json against a running pushwarden, so the document cannot drift from the router.

- The binary serves the document (GET /openapi.json) as it is in docs/ (it is compiled in: a
  difference means the binary is older than the document).
- Every documented operation is routed (never 404 or 405 with the documented method), and what
  it answers to an empty body is a documented status with a documented content type and shape.
- Every documented request example is accepted (200), and the answer matches the documented
  response schema; the examples match their request schemas.
- Documented security holds: operations with bearerAuth refuse a missing or wrong token with
  401; the others answer without one.

The document's validity as OpenAPI 3.1 is checked with openapi-spec-validator (0.9.0) in a
throwaway venv, not a dependency of this suite:
    python3 -m venv /tmp/oas && /tmp/oas/bin/pip install openapi-spec-validator
    /tmp/oas/bin/openapi-spec-validator docs/openapi.json
That validator does not notice a dangling $ref, so here a small JSON Schema subset checks every
$ref and the shapes of examples and answers.
"""
from __future__ import annotations

import http.client
import json
import re
import urllib.error

import pytest

from harness.server import REPO_ROOT, start_server
from harness.webpush import call

DOC_PATH = REPO_ROOT / "docs" / "openapi.json"
DOC = json.loads(DOC_PATH.read_text())
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
OPERATIONS = [
    (path, method)
    for path, item in DOC["paths"].items()
    for method in HTTP_METHODS
    if method in item
]

# pushwarden bugs that make a documented operation fail; the test is expected to fail until fixed.
NOW_PANICS = (
    "pushwarden bug: send::now formats with chrono's \"%.7f\", which chrono does not support; "
    "the handler panics and the connection closes without an answer"
)
KNOWN_BROKEN = {
    ("/alive", "get"): NOW_PANICS,
    ("/now", "get"): NOW_PANICS,
    ("/notifications/alive", "get"): NOW_PANICS,
    ("/notifications/now", "get"): NOW_PANICS,
}
NO_ANSWER = (ConnectionError, http.client.HTTPException, urllib.error.URLError)


def operation_params():
    params = []
    for path, method in OPERATIONS:
        marks = []
        if (path, method) in KNOWN_BROKEN:
            marks.append(pytest.mark.xfail(reason=KNOWN_BROKEN[(path, method)], raises=NO_ANSWER, strict=False))
        params.append(pytest.param(path, method, id=f"{method.upper()} {path}", marks=marks))
    return params


@pytest.fixture(scope="module")
def server():
    s = start_server("openapi")
    yield s
    code = s.stop()
    assert code == 0, f"pushwarden exited {code} on SIGTERM:\n{s.log_tail()}"


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


def check_answer(op: dict, status: int, headers: dict, raw: bytes, what: str) -> None:
    responses = op["responses"]
    assert str(status) in responses, f"{what}: answered {status}, documented {sorted(responses)}: {raw[:300]!r}"
    response = resolve(responses[str(status)])
    content = response.get("content")
    if not content:
        return
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    assert ctype in content, f"{what}: content type {ctype!r}, documented {sorted(content)}"
    if ctype == "application/json":
        body = json.loads(raw)
        problems = violations(body, content[ctype]["schema"])
        assert not problems, f"{what}: {status} answer {body} does not match the document: {problems}"


def request_examples(op: dict) -> list:
    media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    found = []
    if "example" in media:
        found.append(media["example"])
    found += [resolve(e)["value"] for e in media.get("examples", {}).values()]
    schema = resolve(media.get("schema", {}))
    found += schema.get("examples", [])
    return found


def needs_auth(op: dict) -> bool:
    security = op.get("security", DOC.get("security", []))
    return any("bearerAuth" in requirement for requirement in security)


# -- the tests ---------------------------------------------------------------------------------


def test_served_document_is_docs_openapi_json(server):
    status, headers, raw = call(server.url("/openapi.json"))
    assert status == 200
    assert headers.get("content-type", "").startswith("application/json")
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
    ids = [DOC["paths"][p][m]["operationId"] for p, m in OPERATIONS]
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
        op = DOC["paths"][path][method]
        assert op.get("responses"), f"{method} {path} documents no responses"
        for example in request_examples(op):
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            problems = violations(example, schema)
            assert not problems, f"{method} {path} example {example} breaks its schema: {problems}"
    # The enums carry Bitwarden's numbers.
    push_types = resolve({"$ref": "#/components/schemas/PushType"})["oneOf"]
    assert [t["const"] for t in push_types] == list(range(28))
    assert push_types[5]["title"] == "SyncVault" and push_types[27]["title"] == "PremiumStatusChanged"
    device_types = resolve({"$ref": "#/components/schemas/DeviceType"})["oneOf"]
    assert [t["const"] for t in device_types] == list(range(27))
    assert device_types[9]["title"] == "ChromeBrowser" and device_types[26]["title"] == "DuckDuckGoBrowser"


@pytest.mark.parametrize("path,method", operation_params())
def test_documented_operation_is_routed(server, path, method):
    op = DOC["paths"][path][method]
    body = {} if "requestBody" in op else None
    status, headers, raw = call(server.url(path), method.upper(), body, token=server.send_key)
    assert status not in (404, 405), f"{method.upper()} {path} is documented but answers {status}"
    check_answer(op, status, headers, raw, f"{method.upper()} {path} with {body}")


@pytest.mark.parametrize(
    "path,method", [p for p in operation_params() if "requestBody" in DOC["paths"][p.values[0]][p.values[1]]]
)
def test_documented_examples_are_accepted(server, path, method):
    op = DOC["paths"][path][method]
    examples = request_examples(op)
    assert examples, f"{method.upper()} {path} has a request body but no example"
    for example in examples:
        status, headers, raw = call(server.url(path), method.upper(), example, token=server.send_key)
        assert status == 200, f"{method.upper()} {path} refused its documented example {example}: {status} {raw!r}"
        check_answer(op, status, headers, raw, f"{method.upper()} {path} with its example")


@pytest.mark.parametrize("path,method", operation_params())
def test_documented_security_holds(server, path, method):
    op = DOC["paths"][path][method]
    body = request_examples(op)[0] if "requestBody" in op else None
    if needs_auth(op):
        for token in (None, "not-the-key"):
            status, headers, raw = call(server.url(path), method.upper(), body, token=token)
            assert status == 401, f"{method.upper()} {path} with token {token!r}: {status} {raw!r}"
            assert headers.get("www-authenticate", "").lower().startswith("bearer")
            check_answer(op, status, headers, raw, f"{method.upper()} {path} unauthenticated")
    else:
        status, headers, raw = call(server.url(path), method.upper(), body)
        assert status == 200, f"{method.upper()} {path} is documented without security but answers {status}"
        check_answer(op, status, headers, raw, f"{method.upper()} {path} unauthenticated")
