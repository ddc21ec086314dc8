"""`moat serve`'s Ollama API over a real socket, driven by the official ``ollama`` Python client,
with the real SmolLM2-135M-Instruct and all-MiniLM-L6-v2 pulled into a temporary MOAT_HOME.

Covers: the listings (`/`, `/api/version`, `/api/tags`, `/api/show`, `/api/ps`) with what the
store knows about each model; chat and generate, whole and streamed, agreeing with each other
and with `/v1` for the same greedy request; Ollama's options (num_predict, stop, seed,
repeat_penalty); raw prompts; an empty prompt loading the model; `/api/embed` and the older
`/api/embeddings` agreeing with `/v1/embeddings`; a moat.toml alias and the `:latest` tag;
every refusal in Ollama's error shape; and API keys (checked last: once a key exists the
server asks every request for one).

Run as part of tests/python (see test_openai_server.py); skips without MOAT_TEST_MODELS.
"""

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

MODELS_DIR = os.environ.get("MOAT_TEST_MODELS")
if not MODELS_DIR:
    pytest.skip(
        "MOAT_TEST_MODELS is unset: no model files to serve (scripts/test.sh sets it)",
        allow_module_level=True,
    )

import ollama  # noqa: E402

from test_knowledge_server import MINILM, MINILM_DIR, cosine  # noqa: E402
from test_openai_server import SMOLLM2, Server, http, model_file, moat  # noqa: E402

ALIAS = "assistant"
# A gateway alias (routed by moat-gateway) whose one target is the local model.
ROUTED = "routed"
CTX = 2048
GREEDY = {"temperature": 0, "num_predict": 12}


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("moat-ollama-home")
    assert MINILM_DIR.is_dir(), f"{MINILM_DIR} is missing (scripts/fetch-test-models.sh)"
    for source, name in [(model_file(SMOLLM2), SMOLLM2), (MINILM_DIR, MINILM)]:
        done = moat(home, "pull", str(source), "--name", name, "--quiet")
        assert done.returncode == 0, done.stderr
    (home / "moat.toml").write_text(
        f'[aliases.{ALIAS}]\nmodel = "{SMOLLM2}"\n'
        f'[[aliases.{ROUTED}.targets]]\ntype = "local"\nmodel = "{SMOLLM2}"\n'
    )
    return home


@pytest.fixture(scope="module")
def server(home):
    server = Server(home, [SMOLLM2, MINILM], "--ctx", str(CTX), "--parallel", "2", "--body-limit", "2000000").wait_ready()
    yield server
    code = server.stop()
    assert code == 0, server.output()


@pytest.fixture(scope="module")
def client(server) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


def ask(client, content="Write a paragraph about the sea.", model=SMOLLM2, **kwargs):
    return client.chat(model=model, messages=[{"role": "user", "content": content}], **kwargs)


def streamed_text(parts) -> tuple[str, list]:
    """The text of a streamed chat or generate answer, and its parts."""
    parts = list(parts)
    pieces = [part.message.content if isinstance(part, ollama.ChatResponse) else part.response for part in parts]
    return "".join(pieces), parts


# ----------------------------------------------------------------------------
# listings
# ----------------------------------------------------------------------------


def test_root_and_version_answer(server):
    status, _, body = http("GET", server.url + "/")
    assert status == 200 and "moat is running" in body
    status, _, body = http("GET", server.url + "/api/version")
    assert status == 200 and body["version"]


def test_tags_show_and_ps_report_what_the_store_knows(client):
    weights = model_file(SMOLLM2)
    listed = {model.model: model for model in client.list().models}
    assert set(listed) == {SMOLLM2, MINILM, ALIAS, ROUTED}
    smollm2 = listed[SMOLLM2]
    assert smollm2.size == weights.stat().st_size
    assert smollm2.digest == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert smollm2.details.format == "gguf"
    assert smollm2.details.family == "llama"
    assert smollm2.details.quantization_level == "Q4_1"
    assert smollm2.details.parameter_size == "135M"
    # The alias reports the model it stands for.
    assert listed[ALIAS].digest == smollm2.digest

    shown = client.show(SMOLLM2)
    assert shown.capabilities == ["completion"]
    assert "<|im_start|>" in shown.template
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.modelinfo["general.parameter_count"] == 134515008
    # The context it is served with, beside the trained one above.
    assert f"num_ctx {CTX}" in shown.parameters.splitlines()
    assert client.show(MINILM).capabilities == ["embedding"]
    with pytest.raises(ollama.ResponseError) as missing:
        client.show("no-such-model")
    assert missing.value.status_code == 404

    running = {model.model: model for model in client.ps().models}
    assert set(running) == {SMOLLM2}
    assert running[SMOLLM2].context_length == CTX
    assert running[SMOLLM2].size == weights.stat().st_size


# ----------------------------------------------------------------------------
# chat and generate
# ----------------------------------------------------------------------------


def test_chat_whole_and_streamed_agree_with_each_other_and_with_v1(server, client):
    whole = ask(client, options=GREEDY, stream=False)
    assert whole.done and whole.done_reason == "length"
    assert whole.eval_count == 12 and whole.prompt_eval_count > 10
    assert whole.total_duration >= whole.prompt_eval_duration > 0
    assert whole.eval_duration > 0
    assert whole.message.role == "assistant" and whole.message.content

    text, parts = streamed_text(ask(client, options=GREEDY, stream=True))
    assert text == whole.message.content
    assert all(not part.done for part in parts[:-1]) and len(parts) > 2
    last = parts[-1]
    assert last.done and last.done_reason == "length" and last.message.content == ""
    assert last.eval_count == 12 and last.prompt_eval_count == whole.prompt_eval_count

    body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "Write a paragraph about the sea."}],
            "temperature": 0, "max_tokens": 12}
    status, _, v1 = http("POST", server.url + "/v1/chat/completions", json.dumps(body).encode())
    assert status == 200, v1
    assert v1["choices"][0]["message"]["content"] == whole.message.content


def test_options_left_out_take_ollamas_defaults(server, client):
    # Seeded sampling is repeatable: Ollama's answer without temperature, top_k and top_p is
    # /v1's with Ollama's defaults for them (0.8, 40, 0.9), not with OpenAI's (1, none, 1).
    answer = ask(client, options={"seed": 11, "num_predict": 24}, stream=False)
    body = {"model": SMOLLM2, "messages": [{"role": "user", "content": "Write a paragraph about the sea."}],
            "seed": 11, "max_tokens": 24}
    texts = {}
    for name, extra in [("ollama", {"temperature": 0.8, "top_k": 40, "top_p": 0.9}), ("openai", {})]:
        status, _, v1 = http("POST", server.url + "/v1/chat/completions", json.dumps({**body, **extra}).encode())
        assert status == 200, v1
        texts[name] = v1["choices"][0]["message"]["content"]
    assert answer.message.content == texts["ollama"], (answer.message.content, texts)
    assert answer.message.content != texts["openai"], texts
    # An option sent wins over the default.
    hot = ask(client, options={"seed": 11, "num_predict": 24, "temperature": 1.0, "top_k": 0, "top_p": 1.0},
              stream=False)
    assert hot.message.content == texts["openai"], (hot.message.content, texts)


def test_a_conversation_reaches_the_template_as_on_v1(server, client):
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "What color is the sky?"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "And grass?"},
    ]
    one = client.chat(model=SMOLLM2, messages=messages, options=GREEDY, stream=False)
    body = {"model": SMOLLM2, "messages": messages, "temperature": 0, "max_tokens": 12}
    status, _, v1 = http("POST", server.url + "/v1/chat/completions", json.dumps(body).encode())
    assert status == 200, v1
    assert one.prompt_eval_count == v1["usage"]["prompt_tokens"]
    assert one.message.content == v1["choices"][0]["message"]["content"]


def test_generate_templates_the_prompt_unless_raw(client):
    chat = ask(client, "Name a fruit.", options=GREEDY, stream=False)
    generated = client.generate(model=SMOLLM2, prompt="Name a fruit.", options=GREEDY)
    assert generated.response == chat.message.content
    assert generated.prompt_eval_count == chat.prompt_eval_count

    text, parts = streamed_text(client.generate(model=SMOLLM2, prompt="Name a fruit.", options=GREEDY, stream=True))
    assert text == generated.response and parts[-1].done

    raw = client.generate(model=SMOLLM2, prompt="The capital of France is", raw=True,
                          options={"temperature": 0, "num_predict": 3})
    assert raw.prompt_eval_count < 10, "a raw prompt gets no template"
    assert "Paris" in raw.response
    # Without num_predict a raw prompt runs until the model stops, not OpenAI's 16 tokens.
    until_done = client.generate(model=SMOLLM2, prompt="1, 2, 3, 4, 5,", raw=True,
                                 options={"temperature": 0, "stop": [" 30,"]})
    assert until_done.eval_count > 16, until_done
    assert until_done.response.endswith(" 28, 29,") and until_done.done_reason == "stop"

    loaded = client.generate(model=SMOLLM2, prompt="")
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    loaded = client.chat(model=SMOLLM2, messages=[])
    assert loaded.done and loaded.done_reason == "load"


def test_options_map_onto_moats_sampling(client):
    with_stop = client.generate(model=SMOLLM2, prompt="1, 2, 3, 4, 5,", raw=True,
                                options={"temperature": 0, "num_predict": 40, "stop": [" 9,"]})
    assert with_stop.response == " 6, 7, 8," and with_stop.done_reason == "stop"

    seeded = {"temperature": 1.0, "seed": 1234, "num_predict": 16}
    first = ask(client, "Tell me a story.", options=seeded, stream=False)
    second = ask(client, "Tell me a story.", options=seeded, stream=False)
    assert first.message.content == second.message.content

    plain = ask(client, "Repeat: la la la la la la la la", options={"temperature": 0, "num_predict": 24}, stream=False)
    penalized = ask(client, "Repeat: la la la la la la la la",
                    options={"temperature": 0, "num_predict": 24, "repeat_penalty": 5.0}, stream=False)
    assert plain.message.content != penalized.message.content

    # Settings of the server (num_ctx, num_thread, ...) are accepted and change nothing.
    same = ask(client, options={**GREEDY, "num_ctx": 4096, "num_thread": 1, "num_gpu": 0}, stream=False)
    assert same.message.content == ask(client, options=GREEDY, stream=False).message.content


def test_an_alias_and_the_latest_tag_resolve(client):
    direct = ask(client, options=GREEDY, stream=False)
    for name in [ALIAS, f"{ALIAS}:latest", ROUTED]:
        via = ask(client, model=name, options=GREEDY, stream=False)
        assert via.message.content == direct.message.content
        assert via.model == name
        assert via.eval_count == direct.eval_count and via.prompt_eval_count == direct.prompt_eval_count
    # Through the gateway, streamed too.
    text, parts = streamed_text(ask(client, model=ROUTED, options=GREEDY, stream=True))
    assert text == direct.message.content and parts[-1].eval_count == 12


def test_logprobs_as_ollama_reports_them(client):
    whole = ask(client, options=GREEDY, stream=False, logprobs=True, top_logprobs=3)
    assert len(whole.logprobs) == whole.eval_count == 12
    assert "".join(entry.token for entry in whole.logprobs) == whole.message.content
    for entry in whole.logprobs:
        assert len(entry.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert entry.top_logprobs[0].token == entry.token
        assert abs(entry.top_logprobs[0].logprob - entry.logprob) < 1e-6
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
    parts = list(ask(client, options=GREEDY, stream=True, logprobs=True))
    streamed = [entry for part in parts for entry in (part.logprobs or [])]
    assert [e.token for e in streamed] == [e.token for e in whole.logprobs]
    raw = client.generate(model=SMOLLM2, prompt="1, 2, 3,", raw=True, logprobs=True, top_logprobs=2,
                          options={"temperature": 0, "num_predict": 4})
    assert len(raw.logprobs) == 4 and all(len(e.top_logprobs) == 2 for e in raw.logprobs)
    assert raw.logprobs[0].top_logprobs[0].token == raw.logprobs[0].token
    assert ask(client, options=GREEDY, stream=False).logprobs is None
    error = refused(lambda: ask(client, top_logprobs=2))
    assert error.status_code == 400 and "logprobs" in error.error


def running_sequences(server) -> float:
    status, _, text = http("GET", server.url + "/metrics")
    assert status == 200, text
    line = next(l for l in text.splitlines() if l.startswith(f'moat_engine_running_sequences{{model="{SMOLLM2}"}}'))
    return float(line.split()[-1])


def test_a_client_that_leaves_a_stream_frees_its_sequence(server, client):
    # Counting on from 5 runs for as long as it may (CTX - 16 tokens), unless the server
    # stops the sequence when the client goes away.
    parts = client.generate(model=SMOLLM2, prompt="1, 2, 3, 4, 5,", raw=True, stream=True,
                            options={"temperature": 0, "num_predict": CTX - 16})
    seen = [next(parts) for _ in range(5)]
    assert not any(part.done for part in seen)
    assert running_sequences(server) == 1
    parts.close()
    deadline = time.monotonic() + 10
    while running_sequences(server) != 0:
        assert time.monotonic() < deadline, "the abandoned stream still holds its sequence"
        time.sleep(0.05)
    assert ask(client, options=GREEDY, stream=False).done


# ----------------------------------------------------------------------------
# embeddings
# ----------------------------------------------------------------------------


def test_embed_and_embeddings_agree_with_v1(server, client):
    texts = ["The cat sat on the mat.", "Penguins eat herring."]
    embedded = client.embed(model=MINILM, input=texts)
    assert len(embedded.embeddings) == 2 and all(len(v) == 384 for v in embedded.embeddings)
    assert embedded.prompt_eval_count > 0
    one = client.embed(model=MINILM, input=texts[0]).embeddings
    assert len(one) == 1 and cosine(one[0], embedded.embeddings[0]) > 0.9999
    status, _, v1 = http("POST", server.url + "/v1/embeddings",
                         json.dumps({"model": MINILM, "input": texts[1]}).encode())
    assert status == 200, v1
    assert cosine(v1["data"][0]["embedding"], embedded.embeddings[1]) > 0.9999
    legacy = client.embeddings(model=MINILM, prompt=texts[0]).embedding
    assert cosine(legacy, embedded.embeddings[0]) > 0.9999
    assert list(client.embeddings(model=MINILM, prompt="").embedding) == []
    with pytest.raises(ollama.ResponseError) as unknown:
        client.embeddings(model="no-such-model", prompt="")
    assert unknown.value.status_code == 404


# ----------------------------------------------------------------------------
# refusals
# ----------------------------------------------------------------------------


def refused(call) -> ollama.ResponseError:
    with pytest.raises(ollama.ResponseError) as raised:
        call()
    return raised.value


def test_every_refusal_is_an_ollama_error_with_its_status(server, client):
    cases = [
        (lambda: ask(client, model="no-such-model"), 404, "no-such-model"),
        (lambda: ask(client, model=MINILM), 400, "embedding"),
        (lambda: client.embed(model=SMOLLM2, input="x"), 400, "not an embedding model"),
        (lambda: ask(client, tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]), 400, "cannot call tools"),
        (lambda: client.chat(model=SMOLLM2, messages=[{"role": "user", "content": "x", "images": ["aGk="]}]), 400, "text only"),
        (lambda: ask(client, options={"mirostat": 2}), 400, "mirostat"),
        (lambda: ask(client, options={"temprature": 0.2}), 400, "not an Ollama option"),
        (lambda: ask(client, options={"temperature": 9}), 400, "temperature"),
        (lambda: ask(client, content="word " * 3000), 400, "context"),
        (lambda: client.generate(model=SMOLLM2, prompt="x", template="{{ .Prompt }}"), 400, "template"),
        (lambda: client.generate(model=SMOLLM2, prompt="x", context=[1, 2, 3]), 400, "context"),
        (lambda: client.pull(SMOLLM2), 501, "moat pull"),
        (lambda: client.delete(SMOLLM2), 501, "moat pull"),
    ]
    for call, status, words in cases:
        error = refused(call)
        assert error.status_code == status, (words, error.status_code, error.error)
        assert words in error.error, (words, error.error)
    # A stream refused before it starts is an HTTP error, not a line in a stream.
    error = refused(lambda: list(ask(client, model="no-such-model", stream=True)))
    assert error.status_code == 404
    # The raw shape: {"error": "message"}.
    status, _, body = http("POST", server.url + "/api/chat", b"{not json")
    assert status == 400 and isinstance(body["error"], str) and "invalid request body" in body["error"]
    # Errors from outside the routes too: an unknown path, a body over the limit.
    status, _, body = http("GET", server.url + "/api/no-such-route")
    assert status == 404 and isinstance(body["error"], str), body
    status, _, body = http("POST", server.url + "/api/chat", b" " * 3_000_000)
    assert status == 413 and isinstance(body["error"], str), body
    # /v1 keeps OpenAI's shape.
    status, _, body = http("GET", server.url + "/v1/no-such-route")
    assert status == 404 and isinstance(body["error"]["message"], str), body


# ----------------------------------------------------------------------------
# keys (last: once a key exists, every request needs one)
# ----------------------------------------------------------------------------


def test_api_keys_apply_to_the_ollama_api(home, server, client):
    done = moat(home, "keys", "create", "--json", "--name", "ollama-client", "--models", SMOLLM2)
    assert done.returncode == 0, done.stderr
    secret = json.loads(done.stdout)["secret"]
    assert refused(lambda: client.list()).status_code == 401
    status, _, body = http("GET", server.url + "/api/tags")
    assert status == 401 and "API key" in body["error"], body
    assert refused(lambda: ask(client, options=GREEDY)).status_code == 401
    keyed = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=120)
    assert ask(keyed, options=GREEDY, stream=False).message.content
    # The key is scoped to SmolLM2: the embedding model is neither listed nor usable.
    assert [model.model for model in keyed.list().models] == [SMOLLM2]
    assert refused(lambda: keyed.embed(model=MINILM, input="x")).status_code == 403
