"""`/openapi.json` describes what the routes take and give, and Bodhi keeps to it: schemathesis
generates valid and invalid requests for every described route from the document, sends them
with a token of each role, and checks every answer against the document (status documented,
body of the documented shape, no 5xx). Generation is capped at 16 tokens so that the cases stay
quick on the real engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from bodhi_process import DEFAULT_MODEL, BodhiServer
from test_gateway import make_user_token

# The routes whose requests and answers the document describes in full (RouteSchemas.swift).
DESCRIBED = ("^/(v1/models|v1/chat/completions|v1/completions|v1/embeddings|v1/rerank|rerank|tokenize|detokenize"
             "|v1/messages|api/version|api/tags|api/ps|api/show|api/chat|api/generate|api/embed)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with BodhiServer(tmp_path_factory.mktemp("openapi"), env={"BODHI_MAX_OUTPUT_TOKENS": "16", "BODHI_RATE_LIMITS": "off"}) as bodhi:
        yield bodhi


def test_the_openapi_document_validates_and_describes_bodies_and_errors(server: BodhiServer):
    from openapi_spec_validator import validate

    document = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    validate(document)
    chat = document["paths"]["/v1/chat/completions"]["post"]
    assert chat["x-bodhi-access"] == "role user or higher"
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["responses"]["4XX"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/OpenAIError"}
    assert document["paths"]["/api/chat"]["post"]["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"].endswith("OllamaError")
    assert document["paths"]["/ping"]["get"]["security"] == []


@pytest.mark.parametrize("role", ["user", "power_user"])
def test_schemathesis_finds_no_mismatch_and_no_server_error(server: BodhiServer, tmp_path: Path, role: str):
    token = server.token if role == "power_user" else make_user_token(server, f"openapi-{role}")
    command = [
        str(Path(sys.executable).parent / "st"), "run", f"{server.base_url}/openapi.json",
        "-H", f"Authorization: Bearer {token}", "--include-path-regex", DESCRIBED,
        "--checks", "all", "--exclude-checks", "positive_data_acceptance,ignored_auth",
        "--max-examples", "6", "--seed", "1", "--workers", "1", "--request-timeout", "60",
        "--suppress-health-check", "filter_too_much,too_slow", "--no-color",
    ]
    env = os.environ | {"SCHEMATHESIS_HOOKS": "openapi_hooks", "BODHI_OPENAPI_MODEL": DEFAULT_MODEL,
                        "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
