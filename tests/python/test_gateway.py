"""The gateway end to end: `moat serve` nodes as real processes, aliases routed by moat.toml,
driven by the official ``openai`` Python SDK and raw HTTP over real sockets, with the real
SmolLM2-135M-Instruct from ``$MOAT_TEST_MODELS``.

Covers: an alias answered by a local model (whole and streamed, listed in /v1/models);
fallback to a second upstream when the first answers 5xx or does not answer in time (each
upstream's request log shows the attempt); a response-cache hit that returns the identical
body with `x-moat-cache: hit`; a private alias that names an external upstream is refused at
start; and three moat nodes behind a gateway node, one of them killed (SIGKILL) under load:
no request that had not yet started streaming fails.

The fake upstreams are small HTTP servers in this process on 127.0.0.1 that record every
request they get. Run as tests/python/test_openai_server.py says.
"""

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

if not os.environ.get("MOAT_TEST_MODELS"):
    pytest.skip(
        "MOAT_TEST_MODELS is unset: no model files to serve (scripts/test.sh sets it)",
        allow_module_level=True,
    )

import openai  # noqa: E402

from test_openai_server import SMOLLM2, Server, http, moat, pull, streamed_thinking  # noqa: E402


class FakeUpstream:
    """An OpenAI-compatible endpoint that answers every chat request the same way, after an
    optional delay, or fails with a status; it records each request body it receives."""

    def __init__(self, status: int = 200, delay: float = 0.0, content: str | None = "from the fake upstream",
                 tool_calls: list | None = None, unfinished: bool = False, reasoning: str | None = None):
        self.requests: list[dict] = []
        self.status, self.delay, self.content, self.tool_calls = status, delay, content, tool_calls
        # A reasoning model's thinking, sent as llama-server sends it (`reasoning_content`),
        # streamed in 4-character pieces before the content.
        self.reasoning = reasoning
        # Streams end after the content, in 4-character pieces, with no finish reason.
        self.unfinished = unfinished
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_json(200, {"status": "ok"})

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                time.sleep(fake.delay)
                if fake.status != 200:
                    self.send_json(fake.status, {"error": {"message": "fake failure", "type": "server_error"}})
                    return
                if self.path.endswith("/embeddings"):
                    self.send_json(200, {
                        "object": "list", "model": body["model"],
                        "data": [{"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}],
                        "usage": {"prompt_tokens": 3, "total_tokens": 3},
                    })
                    return
                usage = {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
                if body.get("stream") and fake.tool_calls:
                    self.stream_calls(body)
                    return
                if body.get("stream") and fake.reasoning:
                    self.stream_reasoning(body)
                    return
                if body.get("stream") and fake.unfinished:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    for at in range(0, len(fake.content), 4):
                        chunk = {"id": "fake-2", "object": "chat.completion.chunk", "created": 1,
                                 "model": body["model"],
                                 "choices": [{"index": 0, "delta": {"content": fake.content[at:at + 4]},
                                              "finish_reason": None}]}
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.end_headers()
                    chunk = {
                        "id": "fake-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": fake.content},
                                     "finish_reason": "stop"}],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    if (body.get("stream_options") or {}).get("include_usage"):
                        last = {**chunk, "choices": [], "usage": usage}
                        self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                message = {"role": "assistant", "content": fake.content}
                if fake.reasoning:
                    message["reasoning_content"] = fake.reasoning
                if fake.tool_calls:
                    message["tool_calls"] = fake.tool_calls
                self.send_json(200, {
                    "id": "fake-1", "object": "chat.completion", "created": 1, "model": body["model"],
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": "tool_calls" if fake.tool_calls else "stop"}],
                    "usage": usage,
                })

            def start_stream(self, body):
                """Starts an SSE answer; returns a function that sends one chunk of choice 0."""
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()

                def send(delta, finish=None):
                    chunk = {"id": "fake-1", "object": "chat.completion.chunk", "created": 1,
                             "model": body["model"],
                             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())

                return send

            def stream_calls(self, body):
                """The calls as OpenAI streams them: a first delta with each call's id and name,
                then its arguments in pieces of 5 characters, then the finish."""
                send = self.start_stream(body)

                send({"role": "assistant", "content": None})
                for index, call in enumerate(fake.tool_calls):
                    send({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                          "function": {"name": call["function"]["name"], "arguments": ""}}]})
                    arguments = call["function"]["arguments"]
                    for at in range(0, len(arguments), 5):
                        send({"tool_calls": [{"index": index, "function": {"arguments": arguments[at:at + 5]}}]})
                send({}, "tool_calls")
                self.wfile.write(b"data: [DONE]\n\n")

            def stream_reasoning(self, body):
                """The thinking in pieces of 4 characters, then the content, then the finish."""
                send = self.start_stream(body)

                for at in range(0, len(fake.reasoning), 4):
                    send({"reasoning_content": fake.reasoning[at:at + 4]})
                send({"content": fake.content})
                send({}, "stop")
                self.wfile.write(b"data: [DONE]\n\n")

            def send_json(self, status, value):
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstreams():
    fakes = {
        "broken": FakeUpstream(status=500),
        "slow": FakeUpstream(delay=5.0),
        "good": FakeUpstream(content="the good upstream answered"),
        "leaky": FakeUpstream(content="Sure: the card is 4111 1111 1111 1111, keep it safe."),
        "unfinished": FakeUpstream(content="Mail jane.doe@example.com today", unfinished=True),
        "thinker": FakeUpstream(content="Done.", reasoning="Write to jane.doe@example.com first."),
        "caller": FakeUpstream(content=None, tool_calls=[{
            "id": "call_1", "type": "function",
            "function": {"name": "get_weather",
                         "arguments": "{\"city\": \"Paris\", \"notify\": \"jane.doe@example.com\"}"}}]),
    }
    yield fakes
    for fake in fakes.values():
        fake.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, upstreams):
    home = tmp_path_factory.mktemp("moat-gateway-home")
    pull(home, SMOLLM2)
    (home / "moat.toml").write_text(f"""
[routing]
health_interval_secs = 0

[cache]
ttl_secs = 60

[aliases.local-chat]
[[aliases.local-chat.targets]]
type = "local"
model = "{SMOLLM2}"
system_prompt = "You are terse."

[aliases.after-5xx]
[[aliases.after-5xx.targets]]
type = "upstream"
name = "broken"
url = "{upstreams['broken'].url}"
model = "broken-model"
[[aliases.after-5xx.targets]]
type = "upstream"
name = "good"
url = "{upstreams['good'].url}"
model = "good-model"

[guard.policies.careful.input.actions]
pii = "redact"
[guard.policies.careful.output.actions]
pii = "redact"

[aliases.guarded]
guard = "careful"
[[aliases.guarded.targets]]
type = "upstream"
url = "{upstreams['leaky'].url}"
model = "leaky-model"

[aliases.guarded-unfinished]
guard = "careful"
[[aliases.guarded-unfinished.targets]]
type = "upstream"
url = "{upstreams['unfinished'].url}"
model = "unfinished-model"

[aliases.guarded-thinker]
guard = "careful"
[[aliases.guarded-thinker.targets]]
type = "upstream"
url = "{upstreams['thinker'].url}"
model = "thinker-model"

[aliases.guarded-tools]
guard = "careful"
[[aliases.guarded-tools.targets]]
type = "upstream"
url = "{upstreams['caller'].url}"
model = "caller-model"

[aliases.after-timeout]
[[aliases.after-timeout.targets]]
type = "upstream"
name = "slow"
url = "{upstreams['slow'].url}"
model = "slow-model"
timeout_secs = 0.5
[[aliases.after-timeout.targets]]
type = "local"
model = "{SMOLLM2}"
""")
    server = Server(home, [], "--parallel", "2", "--ctx", "1024", "--shutdown-grace", "5").wait_ready()
    yield server
    assert server.stop() == 0, server.output()


def chat(client, model, **kwargs):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, **kwargs
    )


def test_an_alias_answers_from_a_local_model_whole_and_streamed(gateway):
    client = gateway.client()
    listed = {m.id: m for m in client.models.list()}
    assert {"local-chat", "after-5xx", "after-timeout", SMOLLM2} <= set(listed)
    whole = chat(client, "local-chat", temperature=0)
    assert whole.model == SMOLLM2
    assert whole.choices[0].message.content
    assert whole.usage.prompt_tokens > 0 and whole.usage.completion_tokens > 0
    # The target's system prompt went first: the same request straight to the model with that
    # system message gives the same prompt and answer.
    direct = client.chat.completions.create(
        model=SMOLLM2, max_tokens=8, temperature=0,
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}],
    )
    assert whole.usage.prompt_tokens == direct.usage.prompt_tokens
    assert whole.choices[0].message.content == direct.choices[0].message.content
    chunks = list(chat(client, "local-chat", temperature=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    # The gateway asked for usage to settle the account, but the client did not: no usage chunk.
    assert all(c.usage is None for c in chunks)
    with_usage = list(chat(client, "local-chat", temperature=0, stream=True,
                           stream_options={"include_usage": True}))
    assert with_usage[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_response_format_reaches_upstreams_as_sent_and_holds_local_targets(gateway, upstreams):
    client = gateway.client()
    schema = {"type": "object", "properties": {"word": {"type": "string", "maxLength": 12}},
              "required": ["word"], "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "word", "strict": True, "schema": schema}}
    # A local target answers held to the schema (its own model's grammar).
    local = client.chat.completions.create(
        model="local-chat", messages=[{"role": "user", "content": "Say hi."}], max_tokens=32,
        temperature=0, response_format=response_format,
    )
    assert local.choices[0].finish_reason == "stop", local
    assert sorted(json.loads(local.choices[0].message.content)) == ["word"]
    # An upstream gets the field as the client sent it, to enforce itself (the fake does not).
    before = len(upstreams["leaky"].requests)
    chat(client, "guarded", response_format=response_format)
    sent = upstreams["leaky"].requests[before:]
    assert sent and all(body["response_format"] == response_format for body in sent), sent


def test_an_upstream_answer_that_is_only_tool_calls_passes_the_output_rail(gateway):
    answer = gateway.client().chat.completions.create(
        model="guarded-tools", messages=[{"role": "user", "content": "Weather in Paris?"}])
    choice = answer.choices[0]
    assert choice.message.content is None, choice.message
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert choice.finish_reason == "tool_calls"


def test_the_rails_read_tool_definitions_and_upstream_call_arguments(gateway, upstreams):
    client = gateway.client()
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather; questions to ops@example.com.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "notify": {"enum": ["desk@example.com"]}}}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    whole = client.chat.completions.create(model="guarded-tools", messages=messages, tools=tools)
    # The tool's description left for the upstream with the address redacted, its name kept.
    sent = upstreams["caller"].requests[-1]["tools"][0]["function"]
    assert sent["name"] == "get_weather" and "ops@example.com" not in sent["description"], sent
    assert sent["description"].startswith("Weather; questions to ["), sent
    # An enum value is part of the schema, checked but kept as sent (a placeholder there
    # would change what the tool accepts).
    assert sent["parameters"]["properties"]["notify"]["enum"] == ["desk@example.com"], sent
    # The upstream's call came back with the address in its arguments redacted, whole and
    # streamed (where the arguments arrive in pieces that split the address).
    call = whole.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Paris", "notify": "[EMAIL_1]"}
    streamed = {}
    for chunk in client.chat.completions.create(
            model="guarded-tools", messages=messages, tools=tools, stream=True):
        for piece in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            streamed[piece.index] = streamed.get(piece.index, "") + (piece.function.arguments or "")
    assert streamed == {0: call.function.arguments}, streamed


def test_ollama_chat_through_a_guarded_alias_puts_streamed_call_fragments_together(gateway):
    # The upstream streams the call's arguments in 5-character pieces and the output rail holds
    # some back until the finish: Ollama's answer still carries the whole call once.
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    for stream in (False, True):
        body = json.dumps({"model": "guarded-tools", "stream": stream, "tools": tools,
                           "messages": [{"role": "user", "content": "Weather in Paris?"}]}).encode()
        status, _, answer = http("POST", gateway.url + "/api/chat", body)
        assert status == 200, answer
        if stream:
            lines = [json.loads(line) for line in answer.splitlines()] if isinstance(answer, str) else [answer]
            calls = [call for line in lines for call in (line.get("message") or {}).get("tool_calls") or []]
            assert lines[-1]["done"] is True, lines
        else:
            calls = answer["message"]["tool_calls"]
        assert calls == [{"function": {"name": "get_weather",
                                       "arguments": {"city": "Paris", "notify": "[EMAIL_1]"}}}], (stream, answer)


def test_an_upstreams_thinking_passes_the_output_rail_and_reaches_ollama_as_thinking(gateway, upstreams):
    # The upstream sends its thinking as `reasoning_content`, in 4-character pieces that split
    # an address: the rail redacts it there too, and it is all out before the answer.
    client = gateway.client()
    messages = [{"role": "user", "content": "Go."}]
    whole = client.chat.completions.create(model="guarded-thinker", messages=messages)
    assert whole.choices[0].message.reasoning_content == "Write to [EMAIL_1] first."
    assert whole.choices[0].message.content == "Done."
    stream = client.chat.completions.create(model="guarded-thinker", messages=messages, stream=True)
    thinking, answer, order, _ = streamed_thinking(stream)
    assert (thinking, answer) == ("Write to [EMAIL_1] first.", "Done.")
    assert order[-1] == "answer", order
    for stream in (False, True):
        body = json.dumps({"model": "guarded-thinker", "stream": stream, "messages": messages}).encode()
        status, _, reply = http("POST", gateway.url + "/api/chat", body)
        assert status == 200, reply
        lines = [json.loads(line) for line in reply.splitlines()] if stream else [reply]
        assert "".join(line["message"].get("thinking", "") for line in lines) == "Write to [EMAIL_1] first."
        assert "".join(line["message"]["content"] for line in lines) == "Done."
    # Ollama's think and an earlier answer's thinking are not passed on to the upstream.
    history = [*messages, {"role": "assistant", "content": "Done.", "thinking": "Easy."}, *messages]
    body = json.dumps({"model": "guarded-thinker", "stream": False, "think": True, "messages": history}).encode()
    status, _, reply = http("POST", gateway.url + "/api/chat", body)
    assert status == 200, reply
    sent = upstreams["thinker"].requests[-1]
    assert "chat_template_kwargs" not in sent and "reasoning_format" not in sent, sent
    assert all("reasoning_content" not in message for message in sent["messages"]), sent


def test_a_guarded_stream_that_ends_without_a_finish_loses_no_text_and_is_audited(gateway):
    client = gateway.client()
    chunks = list(client.chat.completions.create(
        model="guarded-unfinished", stream=True, messages=[{"role": "user", "content": "Go."}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # The rail held the end of the text back; the stream's end sent it.
    assert text == "Mail [EMAIL_1] today", text
    # The output rail's redaction is in the audit log, for streams as for whole answers.
    deadline = time.monotonic() + 10
    while True:
        done = moat(gateway.home, "audit", "--jsonl", "--model", "guarded-unfinished")
        assert done.returncode == 0, done.stderr
        entries = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        if entries or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert entries and entries[-1]["decision"] == "redacted", entries
    assert "pii.email" in entries[-1]["rails"], entries


def test_fallback_when_the_first_upstream_answers_5xx(gateway, upstreams):
    before = len(upstreams["broken"].requests)
    answer = chat(gateway.client(), "after-5xx")
    assert answer.choices[0].message.content == "the good upstream answered"
    assert len(upstreams["broken"].requests) == before + 1
    # Each upstream got its own model name.
    assert upstreams["good"].requests[-1]["model"] == "good-model"
    streamed = list(chat(gateway.client(), "after-5xx", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == \
        "the good upstream answered"
    # Usage records the upstream's model with the tokens it reported (7 + 4 per answer), and
    # the alias the client asked for.
    # Usage is written when each request's account closes, off the request path: wait for it.
    deadline = time.monotonic() + 30
    while True:
        status, _, by_model = http("GET", gateway.url + "/v1/usage?group_by=model")
        assert status == 200, by_model
        row = next((r for r in by_model["rows"] if r["group"] == "good-model"), None)
        if (row and row["requests"] >= 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert row and row["requests"] >= 2, by_model
    assert row["prompt_tokens"] == 7 * row["requests"]
    status, _, by_alias = http("GET", gateway.url + "/v1/usage?group_by=alias")
    assert any(r["group"] == "after-5xx" for r in by_alias["rows"]), by_alias


def test_embeddings_through_an_alias_fall_back_too(gateway, upstreams):
    answer = gateway.client().embeddings.create(model="after-5xx", input="hello")
    assert answer.data[0].embedding == [0.6, 0.8]
    assert answer.model == "good-model"
    # (The broken upstream's circuit is open after the chat tests' failures: it is skipped.)
    sent = upstreams["good"].requests[-1]
    assert (sent["model"], sent["input"]) == ("good-model", "hello")


def test_fallback_when_the_first_upstream_times_out(gateway, upstreams):
    before = len(upstreams["slow"].requests)
    answer = chat(gateway.client(), "after-timeout", temperature=0)
    # Had the gateway waited, the slow upstream would have answered (after 5 s) with its own
    # text and model; the local model answering shows the 0.5 s timeout fired.
    assert answer.model == SMOLLM2 and answer.choices[0].message.content
    assert answer.choices[0].message.content != upstreams["slow"].content
    assert len(upstreams["slow"].requests) == before + 1


def test_a_cache_hit_returns_the_identical_body(gateway, upstreams):
    body = json.dumps({"model": "after-5xx", "messages": [{"role": "user", "content": "cache me"}],
                       "temperature": 0}).encode()
    calls = len(upstreams["good"].requests)
    status, headers, first = http_raw(gateway.url + "/v1/chat/completions", body)
    assert status == 200 and headers["x-moat-cache"] == "miss"
    status, headers, second = http_raw(gateway.url + "/v1/chat/completions", body)
    assert status == 200 and headers["x-moat-cache"] == "hit"
    assert second == first
    assert len(upstreams["good"].requests) == calls + 1
    # The scrape counts the hit and the fallbacks (the alias's first target always fails).
    import urllib.request

    with urllib.request.urlopen(gateway.url + "/metrics", timeout=30) as response:
        metrics = response.read().decode()
    hits = [l for l in metrics.splitlines() if l.startswith("moat_gateway_cache_hits_total")]
    assert hits and float(hits[0].split()[-1]) >= 1, metrics
    fallbacks = [l for l in metrics.splitlines()
                 if l.startswith("moat_gateway_fallbacks_total") and 'alias="after-5xx"' in l]
    assert fallbacks and float(fallbacks[0].split()[-1]) >= 1, metrics
    # Not deterministic (no temperature 0, no seed): never cached.
    body = json.dumps({"model": "after-5xx", "messages": [{"role": "user", "content": "cache me"}]}).encode()
    _, headers, _ = http_raw(gateway.url + "/v1/chat/completions", body)
    assert headers["x-moat-cache"] == "bypass"


def test_an_aliases_guard_runs_on_the_prompt_and_on_upstream_answers(gateway, upstreams):
    client = gateway.client()
    answer = client.chat.completions.create(
        model="guarded", max_tokens=8,
        messages=[{"role": "user", "content": "Write to jane.doe@example.com about it."}],
    )
    # The prompt left for the upstream with the address redacted.
    sent = json.dumps(upstreams["leaky"].requests[-1]["messages"])
    assert "jane.doe@example.com" not in sent and "Write to" in sent
    # The upstream's card number was redacted on the way back, whole and streamed.
    text = answer.choices[0].message.content
    assert "4111" not in text and text.startswith("Sure: the card is ")
    chunks = list(client.chat.completions.create(
        model="guarded", max_tokens=8, stream=True,
        messages=[{"role": "user", "content": "And again."}],
    ))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text


def http_raw(url: str, body: bytes):
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def test_a_private_alias_with_an_external_target_is_refused_at_start(tmp_path, upstreams):
    (tmp_path / "moat.toml").write_text(f"""
[aliases.secret]
private = true
[[aliases.secret.targets]]
type = "upstream"
url = "{upstreams['good'].url}"
model = "closed-model"
external = true
""")
    server = Server(tmp_path, [])
    code = server.process.wait(timeout=60)
    assert code != 0
    assert "private" in server.output()
    assert upstreams["good"].requests == [] or all(r["model"] != "closed-model" for r in upstreams["good"].requests)


def test_three_nodes_one_killed_under_load(tmp_path_factory):
    """Three moat nodes (one thread each) behind a gateway node; one node is killed with
    SIGKILL while requests stream. Requests that had not started streaming must all succeed
    (the gateway falls back before the first byte); only those already streaming from the
    killed node may fail."""
    node_home = tmp_path_factory.mktemp("moat-nodes")
    pull(node_home, SMOLLM2)
    nodes = [
        Server(node_home, [SMOLLM2], "--threads", "1", "--parallel", "2", "--ctx", "1024",
               "--shutdown-grace", "5")
        for _ in range(3)
    ]
    gateway_home = tmp_path_factory.mktemp("moat-gateway-of-nodes")
    replicas = ", ".join(f'"{node.url}/v1"' for node in nodes)
    (gateway_home / "moat.toml").write_text(f"""
[routing]
health_interval_secs = 1
cooldown_secs = 30

[aliases.pool]
[[aliases.pool.targets]]
type = "upstream"
name = "nodes"
replicas = [{replicas}]
model = "{SMOLLM2}"
timeout_secs = 120
""")
    gateway = None
    try:
        for node in nodes:
            node.wait_ready()
        gateway = Server(gateway_home, [], "--shutdown-grace", "5").wait_ready()
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0, timeout=180)
        victim = nodes[1]
        results = []
        lock = threading.Lock()
        streaming = threading.Semaphore(0)

        def one(i: int):
            started = False
            try:
                stream = client.chat.completions.create(
                    model="pool", messages=[{"role": "user", "content": f"Count to ten. ({i})"}],
                    max_tokens=48, temperature=0, stream=True,
                )
                text = ""
                for chunk in stream:
                    if not started:
                        streaming.release()
                    started = True
                    if chunk.choices:
                        text += chunk.choices[0].delta.content or ""
                outcome = ("ok", started, text)
            except Exception as error:  # noqa: BLE001 - every failure is recorded and judged below
                outcome = ("failed", started, repr(error))
            with lock:
                results.append(outcome)

        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(one, i) for i in range(24)]
            # Kill a node once six streams are running (two per node with balancing by least
            # outstanding requests), while more requests wait behind them.
            for _ in range(6):
                assert streaming.acquire(timeout=120), "the streams did not start"
            victim.process.kill()
            victim.process.wait()
            killed_at = len(results)
            for future in futures:
                future.result()
        assert len(results) == 24
        print("outcomes:", sorted((r[0], r[1]) for r in results), "finished before the kill:", killed_at)
        assert killed_at < 24 - 6, "the node was killed after the load was over"
        failed_before_streaming = [r for r in results if r[0] == "failed" and not r[1]]
        assert failed_before_streaming == [], failed_before_streaming
        ok = [r for r in results if r[0] == "ok"]
        assert len(ok) >= 24 - 2, results  # at most the killed node's two sequences
        assert all(r[2] for r in ok)
    finally:
        if gateway is not None:
            gateway.stop()
        for node in nodes:
            node.stop()


def test_a_private_key_never_reaches_an_external_upstream(tmp_path):
    """An alias whose first target fails and whose second is external: an ordinary key falls
    back to the external upstream, a key created with --private gets an error instead, and the
    external upstream's log shows only the ordinary key's request."""
    broken, external = FakeUpstream(status=500), FakeUpstream(content="from the closed API")
    try:
        (tmp_path / "moat.toml").write_text(f"""
[routing]
health_interval_secs = 0
cooldown_secs = 0

[aliases.mixed]
[[aliases.mixed.targets]]
type = "upstream"
url = "{broken.url}"
model = "internal-model"
[[aliases.mixed.targets]]
type = "upstream"
url = "{external.url}"
model = "closed-model"
external = true
""")
        from test_trust_server import create_key

        ordinary = create_key(tmp_path, "--name", "ordinary")
        private = create_key(tmp_path, "--name", "private", "--private")
        server = Server(tmp_path, []).wait_ready()
        try:
            def client(secret):
                return openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=60)

            with pytest.raises(openai.APIStatusError) as caught:
                chat(client(private["secret"]), "mixed")
            assert caught.value.status_code >= 500
            assert external.requests == []
            answer = chat(client(ordinary["secret"]), "mixed")
            assert answer.choices[0].message.content == "from the closed API"
            assert [r["model"] for r in external.requests] == ["closed-model"]
            assert len(broken.requests) == 2
        finally:
            assert server.stop() == 0, server.output()
    finally:
        broken.close()
        external.close()


def test_sighup_reloads_routes_without_dropping_requests_in_flight(tmp_path):
    import signal

    slow, fresh = FakeUpstream(delay=2.0, content="old route"), FakeUpstream(content="new route")
    config = tmp_path / "moat.toml"

    def write(alias, upstream):
        config.write_text(f"""
[routing]
health_interval_secs = 0
[aliases.{alias}]
[[aliases.{alias}.targets]]
type = "upstream"
url = "{upstream.url}"
model = "m"
""")

    try:
        write("before", slow)
        server = Server(tmp_path, []).wait_ready()
        try:
            client = server.client()
            with ThreadPoolExecutor(max_workers=1) as pool:
                in_flight = pool.submit(chat, client, "before")
                while not slow.requests:
                    time.sleep(0.05)
                write("after", fresh)
                server.process.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 30
                while "reloaded" not in server.output():
                    assert time.monotonic() < deadline, server.output()
                    time.sleep(0.05)
                assert in_flight.result().choices[0].message.content == "old route"
            assert chat(client, "after").choices[0].message.content == "new route"
            with pytest.raises(openai.NotFoundError):
                chat(client, "before")
            # A broken file keeps the routes that work.
            config.write_text("[aliases.after]\\ntargets = 3\\n")
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while "keeping the old gateway routes" not in server.output():
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.05)
            assert chat(client, "after").choices[0].message.content == "new route"
            # Guards are read at start: a reload that would change one (here, a new guarded
            # alias) keeps the old routes, so no alias is ever served without its guard.
            write("after", fresh)
            with open(config, "a") as extra:
                extra.write(f'[aliases.guarded]\nguard = "strict"\n[[aliases.guarded.targets]]\ntype = "upstream"\nurl = "{fresh.url}"\nmodel = "m"\n')
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while "the guard of alias guarded changed" not in server.output():
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.05)
            with pytest.raises(openai.NotFoundError):
                chat(client, "guarded")
            assert chat(client, "after").choices[0].message.content == "new route"
        finally:
            assert server.stop() == 0, server.output()
    finally:
        slow.close()
        fresh.close()
