"""Identity end to end: first-run setup from the CLI, tokens from the CLI and the API, the
official openai client with and without rights, browser sessions, and live settings."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, HELLO, BodhiServer, poll_until, run_bodhi

PASSWORD = "the admin's password"
SECRETS: list[str] = [PASSWORD]  # every secret these tests handle; none may reach Bodhi's log


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory):
    """A Bodhi nobody has set up yet."""
    # Keep-alive comes from no environment variable here, so an admin may change it (below);
    # the log is as verbose as it gets, for the check that no secret reaches it.
    server = BodhiServer(tmp_path_factory.mktemp("fresh"), provision=False, env={"BODHI_KEEP_ALIVE": "", "BODHI_LOG_LEVEL": "trace"})
    server.start()
    yield server
    server.stop()


def cli(server: BodhiServer, *args: str, stdin: str | None = None, token: str = ""):
    return run_bodhi(*args, "--port", str(server.port), home=server.home, env={"BODHI_TOKEN": token}, stdin=stdin)


def sign_in(server: BodhiServer, username: str, password: str) -> httpx.Client:
    """A browser-like client: the session cookie, and the CSRF header on every change."""
    http = httpx.Client(base_url=server.base_url, timeout=60)
    response = http.post("/bodhi/v1/auth/login", json={"username": username, "password": password})
    response.raise_for_status()
    assert "HttpOnly" in response.headers["set-cookie"] and "SameSite=Strict" in response.headers["set-cookie"]
    http.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return http


def test_first_run_is_set_up_from_the_cli_once(fresh: BodhiServer):
    assert "bodhi setup --admin-user" in fresh.log_tail()
    before = httpx.get(f"{fresh.api_url}/models", timeout=30)
    assert before.status_code == 401 and "bodhi setup" in before.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=fresh.api_url, api_key="anything", max_retries=0).models.list()

    made = cli(fresh, "setup", "--admin-user", "admin", "--admin-password-stdin", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    again = cli(fresh, "setup", "--admin-user", "other", "--admin-password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode != 0 and "set up already" in again.stderr
    assert httpx.post(f"{fresh.base_url}/bodhi/v1/setup", json={"username": "x", "password": "another password"},
                      timeout=30).status_code == 409


def test_tokens_from_the_cli_work_with_the_openai_client_within_their_models(fresh: BodhiServer):
    created = cli(fresh, "tokens", "create", "--user", "admin", "--name", "app", "--scope", "user",
                  "--models", DEFAULT_MODEL, "--expires", "1h")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    SECRETS.append(token)
    assert token.startswith("bodhi_") and "not shown again" in created.stderr

    with openai.OpenAI(base_url=fresh.api_url, api_key=token, timeout=120, max_retries=0) as client:
        assert client.chat.completions.create(model=DEFAULT_MODEL, messages=HELLO, max_tokens=4).choices
        assert [m.id for m in client.models.list().data] == [DEFAULT_MODEL]
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="someone/else-GGUF:Q4_0", messages=HELLO, max_tokens=4)
        # A user-scoped token cannot change what is served.
        assert httpx.post(f"{fresh.base_url}/bodhi/v1/aliases", json={"name": "a", "model": DEFAULT_MODEL},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 403

    with openai.OpenAI(base_url=fresh.api_url, api_key="bodhi_" + "x" * 38, timeout=30, max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()

    listing = cli(fresh, "tokens", "ls", "--user", "admin")
    row = next(line for line in listing.stdout.splitlines() if " app " in line)
    assert token not in listing.stdout and "active" in row
    token_id = row.split()[0]
    assert cli(fresh, "tokens", "revoke", "--user", "admin", token_id).returncode == 0
    with openai.OpenAI(base_url=fresh.api_url, api_key=token, max_retries=0) as revoked:
        with pytest.raises(openai.AuthenticationError):
            revoked.models.list()


def test_a_newcomer_registers_requests_access_and_a_manager_lets_them_in(fresh: BodhiServer):
    assert httpx.post(f"{fresh.base_url}/bodhi/v1/auth/register", json={"username": "newbie", "password": "newbie password"},
                      timeout=30).status_code == 201
    newbie = sign_in(fresh, "newbie", "newbie password")
    assert newbie.get("/v1/models").status_code == 403
    request = newbie.post("/bodhi/v1/access-requests")
    assert request.status_code == 201
    # Changes without the CSRF header are refused.
    assert httpx.post(f"{fresh.base_url}/bodhi/v1/access-requests", cookies=newbie.cookies, timeout=30).status_code == 403

    admin = sign_in(fresh, "admin", PASSWORD)
    pending = admin.get("/bodhi/v1/access-requests").json()["data"]
    assert [r["username"] for r in pending if r["status"] == "pending"] == ["newbie"]
    assert admin.post(f"/bodhi/v1/access-requests/{request.json()['id']}/approve", json={"role": "user"}).status_code == 200
    assert newbie.get("/v1/models").status_code == 200

    # A session makes its own tokens; a token cannot.
    made = newbie.post("/bodhi/v1/tokens", json={"name": "laptop", "scope": "user", "expires_in": "30d"})
    assert made.status_code == 201
    SECRETS.extend([made.json()["token"], "newbie password", *newbie.cookies.values(), newbie.headers["X-CSRF-Token"]])
    assert httpx.get(f"{fresh.base_url}/bodhi/v1/tokens", headers={"Authorization": f"Bearer {made.json()['token']}"},
                     timeout=30).status_code == 403
    assert newbie.post("/bodhi/v1/tokens", json={"name": "too much", "scope": "power_user"}).status_code == 403

    assert newbie.post("/bodhi/v1/auth/logout").status_code == 204
    assert newbie.get("/v1/models").status_code == 401


def test_repeated_wrong_passwords_lock_the_account(fresh: BodhiServer):
    assert httpx.post(f"{fresh.base_url}/bodhi/v1/auth/register", json={"username": "target", "password": "target password"},
                      timeout=30).status_code == 201
    statuses = [httpx.post(f"{fresh.base_url}/bodhi/v1/auth/login", json={"username": "target", "password": "guess"},
                           timeout=30).status_code for _ in range(5)]
    assert statuses == [401] * 5
    # The lock holds: even the right password is refused...
    locked = httpx.post(f"{fresh.base_url}/bodhi/v1/auth/login", json={"username": "target", "password": "target password"},
                        timeout=30)
    # ...in the very words an unknown user gets, so that nobody learns which accounts exist.
    unknown = httpx.post(f"{fresh.base_url}/bodhi/v1/auth/login", json={"username": "nobody-here", "password": "target password"},
                         timeout=30)
    assert locked.status_code == unknown.status_code == 401
    assert locked.json() == unknown.json()
    assert "Retry-After" not in locked.headers and "locked" not in locked.text


def test_keep_alive_changed_by_an_admin_applies_at_once(fresh: BodhiServer):
    admin = sign_in(fresh, "admin", PASSWORD)
    # BODHI_PARALLEL comes from the environment, which wins over the settings file.
    assert admin.put("/bodhi/v1/settings/BODHI_PARALLEL", json={"value": "2"}).status_code == 409
    changed = admin.put("/bodhi/v1/settings/BODHI_KEEP_ALIVE", json={"value": "1s"})
    assert changed.status_code == 200 and changed.json()["value"] == "1s"
    try:
        assert admin.post("/v1/chat/completions", json={"model": DEFAULT_MODEL, "messages": HELLO, "max_tokens": 2}).status_code == 200
        poll_until(lambda: not admin.get("/bodhi/v1/engines").json()["engines"], 30, "the idle engine to unload")
    finally:
        admin.delete("/bodhi/v1/settings/BODHI_KEEP_ALIVE")


def test_an_admin_adds_a_cloud_backend_whose_key_never_comes_back(fresh: BodhiServer):
    from cloud_standins import StandIn

    key = "sk-ant-trace-level-secret-key"
    SECRETS.append(key)
    admin = sign_in(fresh, "admin", PASSWORD)
    with StandIn("anthropic", key, ["claude-x"]) as cloud:
        added = admin.post("/bodhi/v1/backends", json={"name": "claude", "url": cloud.url, "format": "anthropic", "api_key": key})
        assert added.status_code == 201, added.text
        assert cloud.requests[-1]["headers"]["x-api-key"] == key
        chat = admin.post("/v1/chat/completions", json={"model": "claude/claude-x", "messages": HELLO})
        assert chat.status_code == 200 and cloud.requests[-1]["headers"]["x-api-key"] == key
        for answer in (added, chat, admin.get("/bodhi/v1/backends"), admin.get("/bodhi/v1/backends/claude")):
            assert key not in answer.text
        assert admin.delete("/bodhi/v1/backends/claude").status_code == 200


def test_no_password_token_or_cookie_reaches_the_log(fresh: BodhiServer):
    """At trace level: passwords, API tokens, session cookies, CSRF tokens, backends' API keys."""
    log = Path(fresh.log_path).read_text(errors="replace")
    assert len(SECRETS) >= 4
    leaked = [secret[:12] + "..." for secret in SECRETS if secret in log]
    assert not leaked, f"secrets in {fresh.log_path}: {leaked}"
