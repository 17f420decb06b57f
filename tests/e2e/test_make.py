"""The two commands of the README, as a newcomer runs them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bodhi_process import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_make_run_starts_no_test_database(tmp_path: Path):
    # Where scripts/test-postgres would put its private server, were it started.
    data = tmp_path / "postgres"
    env = {k: v for k, v in os.environ.items() if k not in ("BODHI_TEST_POSTGRES_URL", "MAKEFLAGS", "MAKELEVEL")}
    env |= {"BODHI_TEST_PG_DIR": str(data), "BODHI_TEST_PG_PORT": str(free_port())}
    # -n: what `make run` would do, without building or serving; the Makefile itself is read as for a real run.
    result = subprocess.run(["make", "-n", "run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "bodhi serve" in result.stdout
    assert not data.exists(), "make run started a test database"
