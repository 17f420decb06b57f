"""Moving an installation from SQLite to PostgreSQL with `bodhi db migrate-to`, then serving from it."""

from __future__ import annotations

import os
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
        created = httpx.post(f"{server.base_url}/bodhi/v1/aliases", timeout=30,
                             json={"name": "smol", "model": DEFAULT_MODEL, "defaults": {"temperature": 0.2}})
        assert created.status_code == 201, created.text
        refused = run_bodhi("db", "migrate-to", empty_database, "--port", str(server.port), home=server.home)
        assert refused.returncode != 0 and "stop it first" in refused.stderr
        home = server.home

    moved = run_bodhi("db", "migrate-to", empty_database, home=home)
    assert moved.returncode == 0, moved.stderr
    assert "aliases   1" in moved.stdout and "Row counts match" in moved.stdout
    again = run_bodhi("db", "migrate-to", empty_database, home=home)
    assert again.returncode != 0 and "not empty" in again.stderr

    with BodhiServer(tmp_path / "postgres", env={"BODHI_DATABASE_URL": empty_database}) as server:
        ids = [m["id"] for m in httpx.get(f"{server.api_url}/models", timeout=30).json()["data"]]
        assert "smol" in ids
        alias = httpx.get(f"{server.base_url}/bodhi/v1/aliases/smol", timeout=30).json()
        assert alias["defaults"]["temperature"] == 0.2


def test_a_wrong_database_url_stops_bodhi_with_a_clear_message(tmp_path: Path):
    result = run_bodhi("serve", "--port", "1", home=tmp_path,
                       env={"BODHI_DATABASE_URL": "postgres://nobody:secret@127.0.0.1:1/none?sslmode=disable"}, timeout=60)
    assert result.returncode != 0
    assert "Could not connect to PostgreSQL" in result.stderr and "secret" not in result.stderr
    bad = run_bodhi("serve", "--port", "1", home=tmp_path, env={"BODHI_DATABASE_URL": "mysql://x"}, timeout=60)
    assert bad.returncode != 0 and "BODHI_DATABASE_URL" in bad.stderr
