"""Moving an installation from SQLite to PostgreSQL with `bodhi db migrate-to`, then serving from it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer, run_bodhi

POSTGRES = os.environ.get("BODHI_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not POSTGRES or not shutil.which("psql") and not list(Path("/usr/lib/postgresql").glob("*/bin/psql")),
                                reason="needs BODHI_TEST_POSTGRES_URL and psql (make test and .ci/run provide them)")


def psql() -> str:
    return shutil.which("psql") or str(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1])


@pytest.fixture
def empty_database():
    name = "bodhi_e2e_" + uuid.uuid4().hex[:12]
    subprocess.run([psql(), POSTGRES.split("?")[0], "-qc", f"CREATE DATABASE {name}"], check=True)
    parts = urlsplit(POSTGRES)
    yield urlunsplit(parts._replace(path="/" + name))
    subprocess.run([psql(), POSTGRES.split("?")[0], "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)


def test_an_installation_moves_to_postgresql_and_serves_from_it(tmp_path: Path, empty_database: str):
    with BodhiServer(tmp_path / "sqlite") as server:
        created = httpx.post(f"{server.base_url}/bodhi/v1/aliases", timeout=30, headers=server.auth,
                             json={"name": "smol", "model": DEFAULT_MODEL, "defaults": {"temperature": 0.2}})
        assert created.status_code == 201, created.text
        refused = run_bodhi("db", "migrate-to", empty_database, "--port", str(server.port), home=server.home)
        assert refused.returncode != 0 and "stop it first" in refused.stderr
        home = server.home
        token = server.token

    moved = run_bodhi("db", "migrate-to", empty_database, home=home)
    assert moved.returncode == 0, moved.stderr
    rows = dict(line.split() for line in moved.stdout.splitlines() if re.fullmatch(r"[a-z_]+\s+\d+", line))
    assert rows["aliases"] == "1" and rows["users"] == "1" and rows["api_tokens"] == "1"
    assert "Row counts match" in moved.stdout
    again = run_bodhi("db", "migrate-to", empty_database, home=home)
    assert again.returncode != 0 and "not empty" in again.stderr

    # The admin and the token moved too: the same token works against PostgreSQL.
    with BodhiServer(tmp_path / "postgres", env={"BODHI_DATABASE_URL": empty_database}) as moved_server:
        old_token = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{moved_server.api_url}/models", headers=old_token, timeout=30).status_code == 200
        server = moved_server
        ids = [m["id"] for m in httpx.get(f"{server.api_url}/models", headers=server.auth, timeout=30).json()["data"]]
        assert "smol" in ids
        alias = httpx.get(f"{server.base_url}/bodhi/v1/aliases/smol", headers=server.auth, timeout=30).json()
        assert alias["defaults"]["temperature"] == 0.2


def test_a_wrong_database_url_stops_bodhi_with_a_clear_message(tmp_path: Path):
    result = run_bodhi("serve", "--port", "1", home=tmp_path,
                       env={"BODHI_DATABASE_URL": "postgres://nobody:secret@127.0.0.1:1/none?sslmode=disable"}, timeout=60)
    assert result.returncode != 0
    assert "Could not connect to PostgreSQL" in result.stderr and "secret" not in result.stderr
    bad = run_bodhi("serve", "--port", "1", home=tmp_path, env={"BODHI_DATABASE_URL": "mysql://x"}, timeout=60)
    assert bad.returncode != 0 and "BODHI_DATABASE_URL" in bad.stderr
