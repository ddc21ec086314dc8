"""`moat serve` over a real socket, driven by the official ``openai`` Python SDK, with real
models (SmolLM2-135M-Instruct and Qwen2.5-Coder-0.5B-Instruct) pulled into a temporary
MOAT_HOME from the files in ``$MOAT_TEST_MODELS``. Also `moat run` as a real process.

Covers: chat and completions (whole and streamed, with usage), completions with logprobs and
echo, n=2, seed determinism, stop strings, every error path in OpenAI's shape, eight
concurrent streams with correct usage, a new stream's first token arriving while an older
long stream still runs, a client that disconnects mid-stream freeing its sequence, 429 with
Retry-After, SIGTERM draining, the license gate, and the default model.

The binary is ``$MOAT_BIN``, else ``target/release/moat`` (``cargo build --release``).
With ``MOAT_TEST_MODELS`` unset every test here skips, saying why; with it set a missing model
file or binary is a failure.

Run:
    tests/python/.venv/bin/pip install -r tests/python/requirements.txt
    MOAT_TEST_MODELS=~/.cache/moat/test-models tests/python/.venv/bin/python -m pytest tests/python -q
"""

import json
import os
import pty
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

MODELS_DIR = os.environ.get("MOAT_TEST_MODELS")
if not MODELS_DIR:
    # conftest.py makes pytest print this reason in its summary.
    pytest.skip(
        "MOAT_TEST_MODELS is unset: no model files to serve (scripts/test.sh sets it)",
        allow_module_level=True,
    )

import openai  # noqa: E402  (only needed, and required, when the models are there)

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = "smollm2:135m"
QWEN = "qwen2.5-coder:0.5b"
MODEL_FILES = {
    SMOLLM2: "smollm2-135m-instruct-q4_1.gguf",
    QWEN: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
}
# SmolLM2's special tokens (<|endoftext|>, <|im_start|>, <|im_end|>): banning them keeps a
# stream going for as many tokens as asked.
NO_EOS = {"0": -100, "1": -100, "2": -100}
CTX = 2048
PARALLEL = 4
BODY_LIMIT = 2_000_000
STARTUP_TIMEOUT = 180


# ----------------------------------------------------------------------------
# the binary, homes and servers
# ----------------------------------------------------------------------------


def moat_binary() -> Path:
    explicit = os.environ.get("MOAT_BIN")
    if explicit:
        path = Path(explicit)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
        path = target / "release" / "moat"
    assert path.is_file(), f"no moat binary at {path}: run `cargo build --release` or set MOAT_BIN"
    return path


def model_file(name: str) -> Path:
    path = Path(MODELS_DIR) / MODEL_FILES[name]
    assert path.is_file(), f"MOAT_TEST_MODELS is set but {path} is missing (scripts/fetch-test-models.sh)"
    return path


def moat(home: Path, *args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOAT_HOME": str(home)}
    return subprocess.run(
        [str(moat_binary()), *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=kwargs.pop("timeout", 300),
        **kwargs,
    )


def pull(home: Path, name: str) -> None:
    done = moat(home, "pull", str(model_file(name)), "--name", name, "--quiet")
    assert done.returncode == 0, done.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, timeout: float = 30):
    """(status, headers, parsed JSON body or text) without raising on 4xx/5xx."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode(errors="replace")


class Server:
    """`moat serve` as a child process on a free loopback port."""

    def __init__(self, home: Path, models, *extra):
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"serve-{self.port}.log"
        args = [str(moat_binary()), "serve", *models, "--port", str(self.port), *extra]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                args, env={**os.environ, "MOAT_HOME": str(home)}, cwd=home, stdout=log, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"moat serve exited {self.process.returncode}:\n{self.output()}"
            try:
                status, _, body = http("GET", self.url + "/health", timeout=5)
                if status == 200:
                    assert body == {"status": "ok"}
                    return self
                assert status == 503, body
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            time.sleep(0.2)
        raise AssertionError(f"moat serve not ready after {timeout} s:\n{self.output()}")

    def client(self, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=120, **kwargs)

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"moat serve did not stop within {timeout} s:\n{self.output()}")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("moat-home")
    for name in MODEL_FILES:
        pull(home, name)
    return home


@pytest.fixture(scope="module")
def server(home):
    server = Server(
        home,
        [SMOLLM2, QWEN],
        "--parallel", str(PARALLEL),
        "--ctx", str(CTX),
        "--body-limit", str(BODY_LIMIT),
        "--shutdown-grace", "10",
    ).wait_ready()
    yield server
    code = server.stop()
    assert code == 0, server.output()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return server.client()


def test_sighup_on_a_server_without_gateway_aliases_is_not_fatal(server, client):
    # SIGHUP's default action ends a process; `kill -HUP` is how a moat server reloads.
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "no routes to reload" not in server.output():
        assert server.process.poll() is None, server.output()
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    assert chat_once(client, max_tokens=1).choices[0].finish_reason == "length"


def chat_once(client, model=SMOLLM2, content="Say hello.", **kwargs):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **kwargs
    )


def generated_tokens(n_logprobs: int, finish_reason: str) -> tuple[int, int]:
    """The range completion_tokens may take for a choice with this many logprob entries: an
    end-of-generation token counts but is not shown."""
    return n_logprobs, n_logprobs + (1 if finish_reason == "stop" else 0)


# ----------------------------------------------------------------------------
# models, chat, completions
# ----------------------------------------------------------------------------


def test_health_and_models(server, client):
    status, _, body = http("GET", server.url + "/health")
    assert (status, body) == (200, {"status": "ok"})
    ids = {model.id for model in client.models.list()}
    assert {SMOLLM2, QWEN} <= ids
    model = client.models.retrieve(SMOLLM2)
    assert (model.id, model.object, model.owned_by) == (SMOLLM2, "model", "moat")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model:1b")


@pytest.mark.parametrize("model", [SMOLLM2, QWEN])
def test_chat(client, model):
    answer = chat_once(client, model, max_tokens=12, temperature=0)
    assert answer.object == "chat.completion"
    assert answer.id.startswith("chatcmpl-")
    assert answer.model == model
    choice = answer.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = answer.usage
    assert 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert isinstance(usage.prompt_tokens_details.cached_tokens, int)


@pytest.mark.parametrize("model", [SMOLLM2, QWEN])
def test_chat_stream_matches_the_whole_answer(client, model):
    whole = chat_once(client, model, content="Name three colors.", max_tokens=16, temperature=0)
    stream = chat_once(
        client, model, content="Name three colors.", max_tokens=16, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.id == chunks[0].id and chunk.object == "chat.completion.chunk" for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens,
    )
    assert all(c.usage is None for c in chunks[:-1])


def test_completions_whole_and_streamed(client):
    prompt = "The capital of France is"
    whole = client.completions.create(model=SMOLLM2, prompt=prompt, max_tokens=6, temperature=0)
    assert whole.object == "text_completion" and whole.id.startswith("cmpl-")
    assert not whole.choices[0].text.startswith(prompt)
    streamed = client.completions.create(
        model=SMOLLM2, prompt=prompt, max_tokens=6, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_completions_default_to_sixteen_tokens_like_openai(client):
    answer = client.completions.create(
        model=SMOLLM2, prompt="Once upon a time", temperature=0, logit_bias=NO_EOS
    )
    assert answer.usage.completion_tokens == 16
    assert answer.choices[0].finish_reason == "length"


def test_completions_with_logprobs_and_echo(client):
    prompt = "The capital of France is"
    answer = client.completions.create(
        model=SMOLLM2, prompt=prompt, max_tokens=4, temperature=0, logprobs=2, echo=True,
        logit_bias=NO_EOS,
    )
    choice = answer.choices[0]
    assert choice.text.startswith(prompt) and len(choice.text) > len(prompt)
    assert choice.finish_reason == "length"
    lp = choice.logprobs
    usage = answer.usage
    n = usage.prompt_tokens + usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n
    assert lp.token_logprobs[0] is None
    assert all(isinstance(x, float) and x <= 0 for x in lp.token_logprobs[1:])
    for top in lp.top_logprobs[usage.prompt_tokens:]:
        assert 1 <= len(top) <= 2
    assert lp.text_offset == sorted(lp.text_offset)
    assert "".join(lp.tokens[usage.prompt_tokens:]) == choice.text[len(prompt):]

    plain = client.completions.create(model=SMOLLM2, prompt=prompt, max_tokens=4, temperature=0, logprobs=1)
    assert len(plain.choices[0].logprobs.tokens) >= 1
    assert not plain.choices[0].text.startswith(prompt)


def test_scoring_a_greedy_continuation_as_evaluation_harnesses_do(client):
    # lm-evaluation-harness scores a continuation with echo, logprobs=1 and max_tokens=1: it
    # sums the continuation's token_logprobs and calls it greedy when each token's logprob is
    # the max of its top_logprobs (max() of an empty dict would fail there).
    prompt = "The capital of France is"
    greedy = client.completions.create(
        model=SMOLLM2, prompt=prompt, max_tokens=6, temperature=0, logprobs=1, logit_bias=NO_EOS,
    ).choices[0]
    context = client.completions.create(
        model=SMOLLM2, prompt=prompt, max_tokens=0, echo=True, logprobs=1,
    ).choices[0].logprobs
    scored = client.completions.create(
        model=SMOLLM2, prompt=prompt + greedy.text, max_tokens=1, temperature=0, echo=True,
        logprobs=1,
    ).choices[0].logprobs
    ctxlen = len(context.tokens)
    assert scored.tokens[:ctxlen] == context.tokens
    assert scored.tokens[ctxlen:-1] == greedy.logprobs.tokens
    for top in scored.top_logprobs[1:]:
        assert len(top) == 1
    for logprob, top, generated in zip(
        scored.token_logprobs[ctxlen:-1], scored.top_logprobs[ctxlen:-1], greedy.logprobs.token_logprobs
    ):
        assert logprob == max(top.values())
        assert abs(logprob - generated) < 1e-3


def test_echo_with_max_tokens_zero_scores_the_prompt(client):
    prompt = "The quick brown fox"
    answer = client.completions.create(model=SMOLLM2, prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    choice = answer.choices[0]
    assert choice.text == prompt
    assert answer.usage.completion_tokens == 0
    assert len(choice.logprobs.tokens) == answer.usage.prompt_tokens


def test_n_two_gives_two_choices_and_usage_adds_up(client):
    answer = chat_once(client, content="Tell me a fact.", n=2, temperature=1.0, seed=7, max_tokens=8, logprobs=True)
    assert sorted(choice.index for choice in answer.choices) == [0, 1]
    low = sum(generated_tokens(len(c.logprobs.content), c.finish_reason)[0] for c in answer.choices)
    high = sum(generated_tokens(len(c.logprobs.content), c.finish_reason)[1] for c in answer.choices)
    assert low <= answer.usage.completion_tokens <= high
    single = chat_once(client, content="Tell me a fact.", max_tokens=1)
    assert answer.usage.prompt_tokens == single.usage.prompt_tokens

    completions = client.completions.create(model=SMOLLM2, prompt="Hello", n=2, max_tokens=3, seed=1)
    assert len(completions.choices) == 2


def test_the_same_seed_gives_the_same_answer(client):
    def sample(seed):
        answer = chat_once(client, content="Write a short poem.", temperature=1.0, top_p=0.95, seed=seed, max_tokens=16)
        return answer.choices[0].message.content

    assert sample(1234) == sample(1234)
    first = client.completions.create(model=SMOLLM2, prompt="Once", temperature=1.2, seed=99, max_tokens=12)
    second = client.completions.create(model=SMOLLM2, prompt="Once", temperature=1.2, seed=99, max_tokens=12)
    assert first.choices[0].text == second.choices[0].text


def test_stop_strings_end_the_text_and_are_not_returned(client):
    prompt = "List of fruits: apple, banana,"
    base = client.completions.create(
        model=SMOLLM2, prompt=prompt, max_tokens=24, temperature=0, logit_bias=NO_EOS
    ).choices[0].text
    assert len(base) >= 12, base
    stop = base[6:10]
    expected = base[: base.index(stop)]
    answer = client.completions.create(
        model=SMOLLM2, prompt=prompt, max_tokens=24, temperature=0, logit_bias=NO_EOS, stop=[stop, "@@@"]
    )
    assert answer.choices[0].text == expected
    assert answer.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model=SMOLLM2, prompt=prompt, max_tokens=24, temperature=0, logit_bias=NO_EOS, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == expected


# ----------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------


def streamed_thinking(chunks):
    """A chat stream's thinking (`reasoning_content`) and answer put together, and which came
    in what order ("thinking" or "answer" per delta that carried some); the usage chunk's
    usage, if any."""
    thinking, answer, order, usage = "", "", [], None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
        for part in chunk.choices:
            piece = getattr(part.delta, "reasoning_content", None)
            if piece:
                thinking += piece
                order.append("thinking")
            if part.delta.content:
                answer += part.delta.content
                order.append("answer")
    return thinking, answer, order, usage


def expect_error(error_type, call, code=None, param=None):
    with pytest.raises(error_type) as caught:
        call()
    error = caught.value
    assert error.message, error
    if code is not None:
        assert error.code == code, error.body
    if param is not None:
        assert error.param == param, error.body
    return error


def test_unknown_model_is_404(client):
    expect_error(openai.NotFoundError, lambda: chat_once(client, model="no-such-model:1b"), code="model_not_found")
    expect_error(
        openai.NotFoundError,
        lambda: client.completions.create(model="no-such-model:1b", prompt="x"),
        code="model_not_found",
    )


def test_a_prompt_longer_than_the_context_is_400(client):
    long = "word " * (CTX + 500)
    expect_error(openai.BadRequestError, lambda: chat_once(client, content=long), code="context_length_exceeded")
    expect_error(
        openai.BadRequestError,
        lambda: client.completions.create(model=SMOLLM2, prompt=long),
        code="context_length_exceeded",
    )
    expect_error(
        openai.BadRequestError, lambda: chat_once(client, max_tokens=CTX), code="context_length_exceeded"
    )


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 17}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"frequency_penalty": 2.5}, "frequency_penalty"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"999999999": 1}}, "logit_bias.999999999"),
        ({"logit_bias": {"5": 500}}, "logit_bias.5"),
        ({"stop": [""]}, "stop"),
        ({"seed": "abc"}, "seed"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        ({"extra_body": {"top_k": -5}}, "top_k"),
        ({"extra_body": {"min_p": 2}}, "min_p"),
    ],
)
def test_out_of_range_parameters_are_400(client, kwargs, param):
    expect_error(openai.BadRequestError, lambda: chat_once(client, **kwargs), param=param)


def test_completions_parameters_are_checked(client):
    expect_error(
        openai.BadRequestError,
        lambda: client.completions.create(model=SMOLLM2, prompt="x", logprobs=6),
        param="logprobs",
    )
    expect_error(
        openai.BadRequestError,
        lambda: client.completions.create(model=SMOLLM2, prompt="x", suffix="y"),
        param="suffix",
    )
    expect_error(
        openai.BadRequestError,
        lambda: client.completions.create(model=SMOLLM2, prompt=[10**9]),
        param="prompt[0]",
    )


def test_tools_need_a_template_with_tool_calls_and_text_only_content(client):
    # SmolLM2's template shows no tool calls (Qwen's tool calls: test_structured_output.py).
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    error = expect_error(openai.BadRequestError, lambda: chat_once(client, tools=tools), param="tools")
    assert "cannot call tools" in error.message
    image = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    expect_error(
        openai.BadRequestError,
        lambda: client.chat.completions.create(model=SMOLLM2, messages=[{"role": "user", "content": image}]),
        param="messages[0].content[0].type",
    )
    tool_message = [{"role": "tool", "content": "x", "tool_call_id": "1"}]
    expect_error(
        openai.BadRequestError,
        lambda: client.chat.completions.create(model=SMOLLM2, messages=tool_message),
        param="messages[0].tool_call_id",
    )


def test_raw_http_errors_have_openai_shape(server):
    def check(status, body, expected):
        assert status == expected, body
        error = body["error"]
        assert error["message"] and error["type"] and "param" in error and "code" in error

    status, _, body = http("POST", server.url + "/v1/chat/completions", b'{"model": "smollm2:135m", "messages": [')
    check(status, body, 400)
    assert body["error"]["code"] == "invalid_json"
    status, _, body = http("POST", server.url + "/v1/completions", b"[]")
    check(status, body, 400)
    big = json.dumps({"model": SMOLLM2, "prompt": "x" * (BODY_LIMIT + 1000)}).encode()
    status, _, body = http("POST", server.url + "/v1/completions", big)
    check(status, body, 413)
    status, _, body = http("GET", server.url + "/v1/nothing-here")
    check(status, body, 404)
    status, _, body = http("GET", server.url + "/v1/chat/completions")
    check(status, body, 405)


# ----------------------------------------------------------------------------
# concurrency, cancellation
# ----------------------------------------------------------------------------


def test_eight_concurrent_streams_with_correct_usage(client):
    prompts = [f"Count from {i} to {i + 20}." for i in range(8)]
    reference = {p: chat_once(client, content=p, max_tokens=1).usage.prompt_tokens for p in prompts}

    def run(i):
        stream = chat_once(
            client, content=prompts[i], max_tokens=10 + i, temperature=0.7, seed=i, logprobs=True,
            stream=True, stream_options={"include_usage": True},
        )
        entries, text, finish, usage = 0, "", None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                entries += len(choice.logprobs.content) if choice.logprobs else 0
                finish = choice.finish_reason or finish
        return i, entries, text, finish, usage

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8)))
    for i, entries, text, finish, usage in results:
        assert usage is not None, i
        assert usage.prompt_tokens == reference[prompts[i]], i
        low, high = generated_tokens(entries, finish)
        assert low <= usage.completion_tokens <= high, (i, entries, finish, usage)
        if finish == "length":
            assert usage.completion_tokens == 10 + i
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_new_stream_starts_while_an_older_long_stream_runs(client):
    long_done = threading.Event()
    first_long_token = threading.Event()
    record = {}

    def long_stream():
        stream = client.completions.create(
            model=SMOLLM2, prompt="Once upon a time", max_tokens=300, temperature=0.8, seed=1,
            logit_bias=NO_EOS, stream=True,
        )
        count = 0
        for chunk in stream:
            for choice in chunk.choices:
                if choice.text:
                    count += 1
                    first_long_token.set()
                if choice.finish_reason:
                    record["long_finish"] = choice.finish_reason
        record["long_end"] = time.monotonic()
        record["long_chunks"] = count
        long_done.set()

    thread = threading.Thread(target=long_stream)
    thread.start()
    assert first_long_token.wait(120), "the long stream never started"
    started = time.monotonic()
    short = client.completions.create(model=SMOLLM2, prompt="Hello", max_tokens=4, stream=True)
    short_first = None
    for chunk in short:
        if chunk.choices and chunk.choices[0].text and short_first is None:
            short_first = time.monotonic()
    assert short_first is not None
    long_still_running = not long_done.is_set()
    thread.join(300)
    assert long_still_running, "the long stream ended before the new stream's first token"
    assert short_first < record["long_end"]
    assert record["long_finish"] == "length"
    assert short_first - started < record["long_end"] - started


def test_a_client_that_disconnects_frees_its_sequence(server, client):
    stream = client.completions.create(
        model=SMOLLM2, prompt="Once upon a time", max_tokens=CTX - 16, temperature=0.8, seed=2,
        logit_bias=NO_EOS, stream=True,
    )
    seen = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            seen += 1
        if seen >= 3:
            break
    stream.close()
    # Every sequence must be free for these; a sequence still held by the orphaned stream
    # would hold one of them back for its ~2000 tokens.
    started = time.monotonic()

    def short(i):
        return client.completions.create(model=SMOLLM2, prompt=f"Number {i}:", max_tokens=8, logit_bias=NO_EOS)

    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(short, range(PARALLEL)))
    elapsed = time.monotonic() - started
    assert all(a.usage.completion_tokens == 8 for a in answers)
    assert elapsed < 10, f"{PARALLEL} short requests took {elapsed:.1f} s: was the orphaned sequence freed?"
    status, _, _ = http("GET", server.url + "/health")
    assert status == 200
    assert chat_once(client, max_tokens=4).choices[0].message.content is not None


def test_qwen_coder_completes_code(client):
    answer = client.completions.create(model=QWEN, prompt="def fibonacci(n):", max_tokens=16, temperature=0)
    assert answer.choices[0].text.strip()
    assert answer.model == QWEN


# ----------------------------------------------------------------------------
# servers of their own: overload, shutdown, license gate, default model
# ----------------------------------------------------------------------------


@pytest.fixture
def single_slot(home):
    """A server with one sequence and no queue."""
    server = Server(home, [SMOLLM2], "--parallel", "1", "--max-queue", "0", "--ctx", "1024",
                    "--shutdown-grace", "30").wait_ready()
    yield server
    server.stop()


def test_overload_is_429_with_retry_after(single_slot):
    client = single_slot.client()
    running = client.completions.create(
        model=SMOLLM2, prompt="Once upon a time", max_tokens=800, logit_bias=NO_EOS, stream=True
    )
    next(iter(running))
    error = expect_error(openai.RateLimitError, lambda: chat_once(client, max_tokens=4), code="rate_limit_exceeded")
    assert int(error.response.headers["retry-after"]) >= 1
    running.close()


def test_sigterm_lets_streams_in_flight_finish(single_slot):
    client = single_slot.client()
    stream = client.completions.create(
        model=SMOLLM2, prompt="Once upon a time", max_tokens=120, logit_bias=NO_EOS, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = iter(stream)
    next(chunks)
    single_slot.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        status, _, _ = http("GET", single_slot.url + "/health", timeout=5)
        assert status == 503
    except (urllib.error.URLError, ConnectionError):
        pass  # the listener is closed: refused as well
    rest = list(chunks)
    assert rest[-1].usage.completion_tokens == 120
    assert [c.choices[0].finish_reason for c in rest if c.choices][-1] == "length"
    assert single_slot.process.wait(timeout=60) == 0, single_slot.output()


def test_the_license_gate_refuses_a_forbidden_model(tmp_path):
    pull(tmp_path, SMOLLM2)
    done = moat(tmp_path, "license", "set", SMOLLM2, "cc-by-nc-4.0")
    assert done.returncode == 0, done.stderr
    (tmp_path / "moat.toml").write_text("[deployment]\ncommercial = true\n")
    refused = moat(tmp_path, "serve", SMOLLM2, "--port", str(free_port()), timeout=120)
    assert refused.returncode == 1, refused.stderr
    assert "refusing to serve" in refused.stderr and "--allow-forbidden-license" in refused.stderr
    server = Server(tmp_path, [SMOLLM2], "--allow-forbidden-license").wait_ready()
    assert server.stop() == 0


def test_serve_without_a_model_serves_the_default_one(tmp_path):
    pull(tmp_path, SMOLLM2)  # the default recipe's name: nothing to download
    server = Server(tmp_path, []).wait_ready()
    try:
        assert [m.id for m in server.client().models.list()] == [SMOLLM2]
    finally:
        assert server.stop() == 0


def test_serve_rejects_an_unknown_model(home):
    done = moat(home, "serve", "no-such-model:1b", "--port", str(free_port()), timeout=60)
    assert done.returncode == 1
    assert "no-such-model" in done.stderr


# ----------------------------------------------------------------------------
# moat run
# ----------------------------------------------------------------------------


def test_run_answers_a_prompt(home):
    done = moat(home, "run", SMOLLM2, "Say", "hello.", "--max-tokens", "8", "--temperature", "0",
                stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_run_reads_a_piped_prompt(home):
    done = moat(home, "run", SMOLLM2, "--max-tokens", "8", "--temperature", "0", input="What is 2+2?", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_run_with_an_empty_pipe_and_no_prompt_says_so(home):
    done = moat(home, "run", SMOLLM2, "--max-tokens", "4", input="", timeout=120)
    assert done.returncode == 1, done.stderr
    assert "no prompt" in done.stderr, done.stderr
    assert not done.stdout.strip(), done.stdout


def test_run_holds_the_answer_to_json_or_a_schema(home):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "population": {"type": "integer", "minimum": 0}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    (home / "city.json").write_text(json.dumps(schema))
    done = moat(home, "run", SMOLLM2, "Tell me about a city.", "--json-schema", "city.json", "--temperature", "0",
                "--max-tokens", "64", stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert sorted(answer) == ["city", "population"] and isinstance(answer["population"], int), answer
    done = moat(home, "run", SMOLLM2, "Say hello.", "--json", "--temperature", "0", "--max-tokens", "64",
                stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("{"), done.stdout
    # A file that is not a schema, and a schema llama.cpp cannot use: exit 1, saying why.
    (home / "bad.json").write_text("{not json")
    (home / "dangling.json").write_text(json.dumps({"$ref": "#/$defs/missing"}))
    for name, words in [("bad.json", "is not JSON"), ("dangling.json", "JSON Schema"), ("missing.json", "reading")]:
        done = moat(home, "run", SMOLLM2, "x", "--json-schema", name, stdin=subprocess.DEVNULL, timeout=120)
        assert done.returncode == 1 and words in done.stderr, (name, done.stderr)
    done = moat(home, "run", SMOLLM2, "x", "--json", "--json-schema", "city.json", stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "cannot be used with" in done.stderr, done.stderr


def test_run_refuses_a_piped_prompt_longer_than_the_context(home):
    done = moat(home, "run", SMOLLM2, "--ctx", "64", "--max-tokens", "4", input="word " * 200, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "the prompt is" in done.stderr and "the context holds 64" in done.stderr, done.stderr
    # A single prompt has no conversation to clear.
    assert "/clear" not in done.stderr, done.stderr


def read_until(fd: int, marker: bytes, seen: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            data = os.read(fd, 4096)
            assert data, f"output ended without {marker!r}: {seen!r}"
            seen += data
    return seen


def test_run_without_a_prompt_is_an_interactive_chat(home):
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(moat_binary()), "run", SMOLLM2, "--max-tokens", "8", "--temperature", "0"],
        env={**os.environ, "MOAT_HOME": str(home)},
        cwd=home,
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    try:
        out = process.stdout.fileno()
        seen = read_until(out, b">>> ", b"", 120)
        os.write(controller, b"Hello!\n")
        seen = read_until(out, b">>> ", seen.split(b">>> ", 1)[1], 120)
        os.write(controller, b"And again?\n")
        read_until(out, b">>> ", seen.split(b">>> ", 1)[1], 120)
        os.write(controller, b"/bye\n")
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
