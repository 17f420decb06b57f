"""One `bodhi serve` per test session, plus the clients the tests talk to it with."""

from __future__ import annotations

import httpx
import openai
import pytest
from bodhi_process import BodhiServer

CLIENT_TIMEOUT_S = 120.0

_server: BodhiServer | None = None  # for attaching its log to failure reports


@pytest.fixture(scope="session")
def bodhi(tmp_path_factory: pytest.TempPathFactory):
    global _server
    server = BodhiServer(tmp_path_factory.mktemp("bodhi"))
    server.start()
    _server = server
    try:
        yield server
    finally:
        result = server.stop()
    assert not result.forced, f"bodhi ignored SIGTERM for 10 s and had to be killed\n{server.log_tail()}"
    assert not result.survivors, (
        f"engine processes outlived bodhi by 10 s: {[r.pid for r in result.survivors]}\n{server.log_tail()}"
    )


@pytest.fixture(scope="session")
def base_url(bodhi: BodhiServer) -> str:
    return bodhi.base_url


@pytest.fixture(scope="session")
def client(bodhi: BodhiServer):
    with openai.OpenAI(base_url=bodhi.api_url, api_key=bodhi.token, timeout=CLIENT_TIMEOUT_S, max_retries=0) as c:
        yield c


@pytest.fixture(scope="session")
def http(bodhi: BodhiServer):
    """Raw HTTP for what the openai package cannot express (bad bodies, early disconnects)."""
    with httpx.Client(base_url=bodhi.base_url, headers=bodhi.auth, timeout=CLIENT_TIMEOUT_S) as c:
        yield c


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"report_{report.when}", report)  # for fixtures that keep evidence of a failure
    if report.failed and _server is not None:
        report.sections.append(("bodhi log (tail)", _server.log_tail()))
    return report
