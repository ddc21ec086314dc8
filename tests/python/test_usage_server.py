"""Usage and cost end to end: `moat serve` with SmolLM2-135M-Instruct (from
``$MOAT_TEST_MODELS``) as a real process, driven by the official ``openai`` Python SDK over a
real socket, then ``GET /v1/usage``, ``moat usage --json`` and ``moat usage compare``.

Covers: the usage the answers reported (whole, streamed with include_usage, n=2, completions)
is what the report counts; busy time measured by the real llama.cpp engine is priced at the
machine's ``[cost] machine_usd_per_hour``; the CLI and the HTTP report agree; the comparison's
break-even volume follows from ``monthly_hardware_usd`` and the default gpt-4o price; once keys
exist, a key sees only its own usage and an admin key sees everyone's.

Run as tests/python/test_openai_server.py says.
"""

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

if not os.environ.get("MOAT_TEST_MODELS"):
    pytest.skip(
        "MOAT_TEST_MODELS is unset: no model files to serve (scripts/test.sh sets it)",
        allow_module_level=True,
    )

import openai  # noqa: E402

from test_openai_server import SMOLLM2, Server, http, moat, pull  # noqa: E402

CONFIG = """
[cost]
machine_usd_per_hour = 3.6
monthly_hardware_usd = 300
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("moat-usage-home")
    pull(home, SMOLLM2)
    (home / "moat.toml").write_text(CONFIG)
    return home


@pytest.fixture(scope="module")
def server(home):
    server = Server(home, [SMOLLM2], "--parallel", "2", "--ctx", "2048").wait_ready()
    yield server
    assert server.stop() == 0, server.output()


def report_when(server, requests: int, query: str = "", key: str | None = None) -> dict:
    """The usage report once it counts `requests` requests (a ticket closes just after the
    client has the last byte of a stream)."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    for _ in range(300):
        request = urllib.request.Request(server.url + "/v1/usage" + query, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            report = json.loads(response.read())
        if report["total"]["requests"] == requests:
            return report
        time.sleep(0.05)
    raise AssertionError(f"the usage report never counted {requests} requests: {report}")


def test_usage_matches_the_answers_and_is_priced_by_measured_busy_time(home, server):
    client = server.client()
    prompt, completion = 0, 0

    whole = client.chat.completions.create(
        model=SMOLLM2, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, temperature=0, n=2
    )
    prompt += whole.usage.prompt_tokens
    completion += whole.usage.completion_tokens

    stream = client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
    prompt += usage.prompt_tokens
    completion += usage.completion_tokens

    done = client.completions.create(model=SMOLLM2, prompt="The sky is", max_tokens=8, temperature=0)
    prompt += done.usage.prompt_tokens
    completion += done.usage.completion_tokens

    report = report_when(server, 3, "?group_by=model")
    assert len(report["rows"]) == 1, report
    row = report["rows"][0]
    assert row["group"] == SMOLLM2
    assert row["requests"] == 3
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    # The real engine's measured time: positive, and priced at $3.60 an hour ($0.001 a second).
    assert row["busy_seconds"] > 0, row
    assert row["unpriced"] is False
    assert row["cost_usd"] == pytest.approx(row["busy_seconds"] * 0.001, rel=1e-9)

    # The CLI reads the same records and prices them the same way.
    done = moat(home, "usage", "--json")
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    assert cli["rows"] == report["rows"]

    compared = moat(home, "usage", "compare", "--closed", "gpt-4o", "--closed", "no-such-model", "--json")
    assert compared.returncode == 0, compared.stderr
    comparison = json.loads(compared.stdout)
    assert (comparison["local"]["prompt_tokens"], comparison["local"]["completion_tokens"]) == (prompt, completion)
    gpt = comparison["closed"][0]
    expected = (prompt * 2.50 + completion * 10.00) / 1e6
    assert gpt["cost_usd"] == pytest.approx(expected)
    per_million = expected * 1e6 / (prompt + completion)
    assert gpt["break_even_tokens_per_month"] == pytest.approx(300 / per_million * 1e6)
    assert comparison["closed"][1]["priced"] is False
    assert comparison["closed"][1]["cost_usd"] is None


def test_a_key_sees_only_its_own_usage_once_keys_exist(home, server):
    def create(*args) -> str:
        done = moat(home, "keys", "create", "--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["secret"]

    admin = create("--name", "ops", "--admin")
    user = create("--name", "user")
    # The anonymous traffic above is not the user's.
    mine = report_when(server, 0, "?group_by=key", key=user)
    assert mine["rows"] == []
    c = openai.OpenAI(base_url=server.url + "/v1", api_key=user, max_retries=0, timeout=120)
    c.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    mine = report_when(server, 1, "?group_by=key", key=user)
    assert [r["group"].endswith(" user") for r in mine["rows"]] == [True]
    everyone = report_when(server, 4, "?group_by=key", key=admin)
    assert {r["group"] for r in everyone["rows"]} >= {"anonymous"}
    status, _, body = http("GET", server.url + "/v1/usage")
    assert status == 401, body
