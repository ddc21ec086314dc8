"""Observation end to end: `moat serve --log-format json` as a real process with a real model
(SmolLM2-135M-Instruct from ``$MOAT_TEST_MODELS``), driven by the official ``openai`` SDK.

Covers: the client's ``x-request-id`` coming back and naming the request's JSON log line
(with its model and token counts, and no prompt text), the ``/metrics`` counters moving by the
answers' own usage, the llama.cpp engine's gauges (KV cells) in the scrape, and the whole
exposition passing Prometheus's ``promtool check metrics`` (Debian's ``prometheus`` package;
missing, the test fails).

Run as tests/python/test_openai_server.py says.
"""

import json
import os
import subprocess
import time

import pytest

if not os.environ.get("MOAT_TEST_MODELS"):
    pytest.skip(
        "MOAT_TEST_MODELS is unset: no model files to serve (scripts/test.sh sets it)",
        allow_module_level=True,
    )

import openai  # noqa: E402

from test_openai_server import SMOLLM2, Server, http, pull  # noqa: E402

PROMPT = "Say the word pineapple-observability once."


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def scrape(server) -> str:
    status, headers, body = http("GET", server.url + "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return body


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("moat-observe-home")
    pull(home, SMOLLM2)
    server = Server(home, [SMOLLM2], "--parallel", "2", "--ctx", "2048", "--log-format", "json").wait_ready()
    yield server
    assert server.stop() == 0, server.output()


def test_request_ids_logs_and_metrics(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=8,
        extra_headers={"x-request-id": "py-observe-1"},
    )
    assert raw.headers["x-request-id"] == "py-observe-1"
    answer = raw.parse()
    chunks = list(
        client.chat.completions.create(
            model=SMOLLM2,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = chunks[-1].usage
    assert streamed is not None

    chat = f'moat_http_requests_total{{route="/v1/chat/completions",model="{SMOLLM2}",status="2xx"}}'
    deadline = time.monotonic() + 30
    while True:
        text = scrape(server)
        values = samples(text)
        if values.get(chat) == 2:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    model = f'{{model="{SMOLLM2}"}}'
    assert values["moat_completion_tokens_total" + model] == answer.usage.completion_tokens + streamed.completion_tokens
    assert values["moat_prompt_tokens_total" + model] == answer.usage.prompt_tokens + streamed.prompt_tokens
    assert values["moat_time_to_first_token_seconds_count" + model] == 2
    assert values["moat_engine_kv_cells_capacity" + model] >= 2048
    assert values["moat_engine_running_sequences" + model] == 0

    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

    lines = []
    for line in server.output().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "request_id" in entry:
            lines.append(entry)
    mine = [e for e in lines if e["request_id"] == "py-observe-1"]
    assert len(mine) == 1, lines
    assert mine[0]["status"] == 200 and mine[0]["model"] == SMOLLM2
    assert mine[0]["completion_tokens"] == answer.usage.completion_tokens
    assert "pineapple" not in server.output()
