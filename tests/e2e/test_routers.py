"""Router models: a name whose requests go to other models, in order (fallback) or by weight, with a
circuit breaker per target and a retry budget. Targets here are OpenAI-compatible stand-ins on
loopback that the tests make fail, refuse, drop connections or stop, and this machine's model."""

from __future__ import annotations

import time
from collections import Counter

import anthropic
import httpx
import ollama
import openai
import pytest
from bodhi_process import DEFAULT_MODEL, HELLO, BodhiServer, poll_until
from cloud_standins import StandIn
from test_gateway import metric

TIMEOUT_S = 60.0
SERVED_BY = "Bodhi-Served-By"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    server = BodhiServer(tmp_path_factory.mktemp("routers"), env={"BODHI_RATE_LIMITS": "off"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pair(gateway: BodhiServer, request: pytest.FixtureRequest):
    """Two fresh stand-ins added as backends NAME-a and NAME-b, each serving the model `m`."""
    name = request.node.name.split("[")[0].removeprefix("test_")[:20].replace("_", "-")
    with StandIn("openai", "k", ["m"]) as first, StandIn("openai", "k", ["m"]) as second:
        for suffix, standin in (("a", first), ("b", second)):
            added = gateway.cli("backends", "add", f"{name}-{suffix}", standin.url + "/v1", "--api-key-stdin", stdin="k\n")
            assert added.returncode == 0, added.stderr
        yield name, first, second


def chat(gateway: BodhiServer, model: str, **fields) -> httpx.Response:
    body = {"model": model, "messages": HELLO, "max_tokens": 8} | fields
    return httpx.post(f"{gateway.api_url}/chat/completions", headers=gateway.auth, json=body, timeout=TIMEOUT_S)


def set_router(gateway: BodhiServer, name: str, *targets: str, options: tuple[str, ...] = ()) -> None:
    made = gateway.cli("router", "set", name, *targets, *options)
    assert made.returncode == 0, made.stderr


def test_fallback_survives_its_first_target_dying_and_says_who_answered(gateway: BodhiServer, pair):
    name, first, second = pair
    set_router(gateway, name, f"{name}-a/m", f"{name}-b/m")
    with openai.OpenAI(base_url=gateway.api_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0) as client:
        assert name in {m.id for m in client.models.list()}
        raw = client.chat.completions.with_raw_response.create(model=name, messages=HELLO)
        assert raw.headers[SERVED_BY] == f"{name}-a/m"
        assert raw.parse().choices[0].message.content.strip() == "echo: Say hello."

        # The first target dies while answering: the same request is answered by the second.
        first.drop = True
        raw = client.chat.completions.with_raw_response.create(model=name, messages=HELLO)
        assert raw.headers[SERVED_BY] == f"{name}-b/m"
        assert raw.parse().choices[0].message.content.strip() == "echo: Say hello."

        # Gone altogether (nothing listens): still answered, streamed too.
        first.__exit__(None, None, None)
        chunks = list(client.chat.completions.create(model=name, messages=HELLO, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == "echo: Say hello."
    assert metric(gateway, "bodhi_router_fallbacks_total", router=name, **{"from": f"{name}-a/m", "to": f"{name}-b/m"}) >= 2


def test_a_400_is_the_answer_and_is_not_retried(gateway: BodhiServer, pair):
    name, first, second = pair
    set_router(gateway, name, f"{name}-a/m", f"{name}-b/m")
    first.fail_status = 400
    answer = chat(gateway, name)
    assert answer.status_code == 400
    assert "failing on purpose" in answer.json()["error"]["message"]
    assert second.posts() == 0


def test_the_breaker_opens_the_budget_holds_and_a_probe_closes_it(gateway: BodhiServer, pair):
    name, first, second = pair
    set_router(gateway, name, f"{name}-a/m", f"{name}-b/m", options=("--cooldown", "4s"))
    first.fail_status = 503
    # Each failure of the first target sends the request on to the second, as long as the budget
    # allows (a few a minute while the second has little traffic of its own); beyond it, the
    # first target's failure is the answer, in OpenAI's format.
    answers = [chat(gateway, name) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 503, 503]
    assert [a.headers.get(SERVED_BY) for a in answers[:3]] == [f"{name}-b/m"] * 3
    assert answers[3].json()["error"]["type"] == "server_error"
    assert first.posts() == 5 and second.posts() == 3

    # Five failures in a row opened its breaker: requests skip it, and go to the second first.
    assert metric(gateway, "bodhi_router_breaker_state", target=f"{name}-a/m") == 2
    answers = [chat(gateway, name) for _ in range(4)]
    assert all(a.status_code == 200 and a.headers[SERVED_BY] == f"{name}-b/m" for a in answers)
    assert first.posts() == 5

    # After the cooldown one request probes it; it has recovered, so the breaker closes.
    first.fail_status = None
    time.sleep(4.3)
    probe = chat(gateway, name)
    assert probe.status_code == 200 and probe.headers[SERVED_BY] == f"{name}-a/m"
    assert metric(gateway, "bodhi_router_breaker_state", target=f"{name}-a/m") == 0


def test_retry_after_is_the_targets_cooldown(gateway: BodhiServer, pair):
    name, first, second = pair
    set_router(gateway, name, f"{name}-a/m", f"{name}-b/m", options=("--cooldown", "1s"))
    first.fail_status, first.retry_after = 429, 30
    assert chat(gateway, name).headers[SERVED_BY] == f"{name}-b/m"
    # One refusal with Retry-After: 30 and the target rests for 30 s, not the router's 1 s.
    time.sleep(1.5)
    assert chat(gateway, name).headers[SERVED_BY] == f"{name}-b/m"
    assert first.posts() == 1


def test_when_every_target_fails_the_last_error_comes_back_in_the_callers_format(gateway: BodhiServer, pair):
    name, first, second = pair
    set_router(gateway, name, f"{name}-a/m", f"{name}-b/m")
    first.fail_status = second.fail_status = 503
    answer = chat(gateway, name)
    assert answer.status_code == 503 and f"'{name}-b'" in answer.json()["error"]["message"]
    messages = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as refused:
        messages.messages.create(model=name, max_tokens=8, messages=HELLO)
    assert refused.value.status_code == 503 and refused.value.body["type"] == "error"


def test_weighted_splits_by_weight_and_each_user_keeps_their_target(gateway: BodhiServer, pair):
    name, first, second = pair
    set_router(gateway, name, f"{name}-a/m", f"{name}-b/m", options=("--strategy", "weighted", "--weights", "3,1"))
    served = Counter()
    with httpx.Client(base_url=gateway.api_url, headers=gateway.auth, timeout=TIMEOUT_S) as http:
        for index in range(1000):
            answer = http.post("/chat/completions", json={"model": name, "messages": HELLO, "user": f"user-{index}"})
            assert answer.status_code == 200
            served[answer.headers[SERVED_BY]] += 1
        share = served[f"{name}-a/m"] / 1000
        assert 0.70 <= share <= 0.80, served
        # Sticky: a user's requests all go to one target, and a caller without `user` is sticky by token.
        for user in ("user-1", "user-2", None):
            fields = {"user": user} if user else {}
            targets = {http.post("/chat/completions", json={"model": name, "messages": HELLO} | fields).headers[SERVED_BY]
                       for _ in range(10)}
            assert len(targets) == 1


def test_a_router_over_this_machines_model_answers_every_api(gateway: BodhiServer, pair):
    name, first, second = pair
    set_router(gateway, name, DEFAULT_MODEL, f"{name}-b/m")
    listed = gateway.cli("router", "ls")
    assert listed.returncode == 0 and name in listed.stdout and DEFAULT_MODEL in listed.stdout
    answer = chat(gateway, name)
    assert answer.status_code == 200 and answer.headers[SERVED_BY] == DEFAULT_MODEL
    assert answer.json()["choices"][0]["message"]["content"]

    client = ollama.Client(host=gateway.base_url, headers=gateway.auth, timeout=TIMEOUT_S)
    assert client.chat(model=name, messages=HELLO, options={"num_predict": 8}, stream=False).message.content
    messages = anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.token, timeout=TIMEOUT_S, max_retries=0)
    assert messages.messages.create(model=name, max_tokens=8, messages=HELLO).content[0].text

    # A router's name is its own: no alias may take it, and it may not route to itself or another router.
    assert gateway.cli("alias", "set", name, DEFAULT_MODEL).returncode != 0
    nested = gateway.cli("router", "set", f"{name}-outer", name)
    assert nested.returncode != 0 and "router" in nested.stderr
    removed = gateway.cli("router", "rm", name)
    assert removed.returncode == 0, removed.stderr
    poll_until(lambda: chat(gateway, name).status_code == 404, 10, "the removed router to be gone")
