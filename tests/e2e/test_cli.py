"""The `bodhi` command line against a running server, as a person at a terminal uses it."""

from __future__ import annotations

import subprocess

from bodhi_process import DEFAULT_MODEL, BodhiServer, run_bodhi


def bodhi_cli(server: BodhiServer, *args: str, stdin: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return server.cli(*args, stdin=stdin, env=env)


def test_run_answers_a_prompt_then_ls_and_ps_show_the_loaded_model(bodhi: BodhiServer):
    answer = bodhi_cli(bodhi, "run", DEFAULT_MODEL, "--max-tokens", "32", "Say", "hello")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()

    listing = bodhi_cli(bodhi, "ls")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith(DEFAULT_MODEL))
    assert row.split()[1:] == ["98.4", "MB", "Q4_1", "yes"]

    processes = bodhi_cli(bodhi, "ps")
    assert processes.returncode == 0, processes.stderr
    header, row = processes.stdout.splitlines()[0], next(
        line for line in processes.stdout.splitlines() if line.startswith(DEFAULT_MODEL)
    )
    assert header.split() == ["NAME", "STATE", "PID", "SLOTS", "BUSY", "MEMORY", "ESTIMATE", "IDLE"]
    cells = row.split()
    assert cells[1] == "ready"
    assert cells[3] == "4"  # slots
    assert cells[6] in ("MB", "GB") and cells[8] in ("MB", "GB")  # measured memory and the estimate


def test_run_chats_line_by_line_until_bye(bodhi: BodhiServer):
    chat = bodhi_cli(
        bodhi, "run", DEFAULT_MODEL, "--max-tokens", "32", stdin="Hi there\nWhat did I just say?\n/bye\nnot sent\n"
    )
    assert chat.returncode == 0, chat.stderr
    replies = [line for line in chat.stdout.splitlines() if line.strip()]
    assert len(replies) >= 2


def test_run_with_an_unknown_model_says_so(bodhi: BodhiServer):
    result = bodhi_cli(bodhi, "run", "nobody/nothing:Q4_0", "hi")
    assert result.returncode != 0
    assert "nobody/nothing:Q4_0" in result.stderr


def test_ps_without_a_server_says_how_to_start_one(tmp_path):
    result = run_bodhi("ps", "--port", "1", home=tmp_path, timeout=30)
    assert result.returncode != 0
    assert "bodhi serve" in result.stderr


def test_ls_without_a_token_says_the_call_was_refused_and_how_to_send_one(bodhi: BodhiServer):
    listing = bodhi_cli(bodhi, "ls", env={"BODHI_TOKEN": ""})
    assert listing.returncode == 0, listing.stderr
    assert DEFAULT_MODEL in listing.stdout  # the cache is listed all the same
    assert "not running" not in listing.stdout
    assert "refused the call (401)" in listing.stdout and "BODHI_TOKEN" in listing.stdout

    processes = bodhi_cli(bodhi, "ps", env={"BODHI_TOKEN": ""})
    assert processes.returncode != 0
    assert "refused the call (401)" in processes.stderr and "bodhi tokens create" in processes.stderr
