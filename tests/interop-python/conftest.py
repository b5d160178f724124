"""pytest wiring: a pushwarden server per test module, and its log appended to failing tests."""
from __future__ import annotations

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    server = getattr(item, "_pushwarden_server", None)
    mark = getattr(item, "_pushwarden_log_mark", None)
    if rep.failed and server is not None and mark is not None:
        log = server.log_since(mark) or "(no server output during this test)"
        rep.sections.append(("pushwarden log (this test)", log))


@pytest.fixture(autouse=True)
def _server_log_for_failures(request):
    """Remember where the module server's log stood when the test began."""
    server = None
    if "server" in request.fixturenames:
        server = request.getfixturevalue("server")
        request.node._pushwarden_server = server
        request.node._pushwarden_log_mark = server.log_mark()
    yield
