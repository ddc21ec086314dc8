"""Structured output and tool calls over a real socket: `response_format` (OpenAI's API, driven by the official
``openai`` SDK, its ``parse`` helper with a pydantic model included) and Ollama's ``format``
(driven by the official ``ollama`` client), with the real SmolLM2-135M-Instruct and
Qwen2.5-Coder-0.5B-Instruct.

Covers: a pydantic model filled by both models where free text would not parse; a stream that
holds to the schema and equals the whole answer; sampled choices that all follow it; a JSON
object; `response_format` on completions (a moat extension, as in vLLM); malformed formats,
schemas llama.cpp cannot use and schemas that would crash its converter refused with a 400
naming the field, the server serving on; Ollama's ``format`` as ``"json"`` and as a schema.
Tool calls with Qwen2.5-Coder (its template shows Hermes-style ``<tool_call>`` calls): auto,
required and a named tool answered with calls whose arguments follow the tool's schema,
streamed as tool-call deltas equal to the whole answer, a tool's result sent back (with and
without the tools shown), text that stays text, n forced choices each with its call, a
pydantic tool whose nested model is a $ref, every refusal naming its field, and Ollama's
tools (whole, streamed, answered).

Run as part of tests/python (see test_openai_server.py); skips without MOAT_TEST_MODELS.
"""

import json
import os
from pathlib import Path
from typing import Literal

import pytest

MODELS_DIR = os.environ.get("MOAT_TEST_MODELS")
if not MODELS_DIR:
    pytest.skip(
        "MOAT_TEST_MODELS is unset: no model files to serve (scripts/test.sh sets it)",
        allow_module_level=True,
    )

import ollama  # noqa: E402
import openai  # noqa: E402
from pydantic import BaseModel, Field, ValidationError  # noqa: E402

from test_openai_server import QWEN, SMOLLM2, Server, expect_error, http, model_file, moat  # noqa: E402

ASK = "Describe a person you know."


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=120)
    pet: Literal["cat", "dog", "none"]
    likes_tea: bool


PERSON_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "person", "strict": True, "schema": Person.model_json_schema()},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home: Path = tmp_path_factory.mktemp("moat-structured-home")
    for name in (SMOLLM2, QWEN):
        done = moat(home, "pull", str(model_file(name)), "--name", name, "--quiet")
        assert done.returncode == 0, done.stderr
    server = Server(home, [SMOLLM2, QWEN], "--parallel", "4", "--ctx", "2048").wait_ready()
    yield server
    assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return server.client()


def ask(client, model=SMOLLM2, content=ASK, **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kwargs)


@pytest.mark.parametrize("model", [SMOLLM2, QWEN])
def test_parse_fills_a_pydantic_model_where_free_text_would_not(client, model):
    free = ask(client, model=model, temperature=0, max_tokens=120).choices[0].message.content
    with pytest.raises((ValidationError, ValueError)):
        Person.model_validate_json(free)
    completion = client.chat.completions.parse(
        model=model, messages=[{"role": "user", "content": ASK}], response_format=Person, temperature=0
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", choice
    assert isinstance(choice.message.parsed, Person), choice.message
    assert json.loads(choice.message.content) == choice.message.parsed.model_dump()


def test_a_stream_holds_to_the_schema_and_equals_the_whole_answer(client):
    whole = ask(client, model=QWEN, temperature=0, response_format=PERSON_FORMAT).choices[0].message.content
    stream = ask(client, model=QWEN, temperature=0, response_format=PERSON_FORMAT, stream=True)
    pieces, reasons = [], []
    for chunk in stream:
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            reasons.append(choice.finish_reason)
    assert "".join(pieces) == whole
    assert reasons[-1] == "stop"
    Person.model_validate_json(whole)


def test_sampled_choices_all_follow_the_schema(client):
    completion = ask(client, temperature=1.3, seed=7, n=4, response_format=PERSON_FORMAT, max_tokens=200)
    texts = []
    for choice in completion.choices:
        assert choice.finish_reason == "stop", choice
        Person.model_validate_json(choice.message.content)
        texts.append(choice.message.content)
    assert len(set(texts)) > 1, texts


def test_json_object_gives_an_object(client):
    answer = ask(client, model=QWEN, content="List three fruits as JSON.", temperature=0, max_tokens=200,
                 response_format={"type": "json_object"})
    choice = answer.choices[0]
    assert choice.finish_reason == "stop", choice
    assert isinstance(json.loads(choice.message.content), dict)


def test_completions_take_response_format(client):
    primes = {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 5}
    answer = client.completions.create(
        model=SMOLLM2, prompt="A list of prime numbers:", max_tokens=40, temperature=0,
        extra_body={"response_format": {"type": "json_schema", "json_schema": {"name": "primes", "schema": primes}}},
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "stop", choice
    values = json.loads(choice.text)
    assert isinstance(values, list) and 1 <= len(values) <= 5
    assert all(isinstance(value, int) for value in values)


def test_formats_that_cannot_be_followed_are_400s_naming_the_field(client):
    cases = [
        ({"type": "yaml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": "string"}}, "response_format.json_schema.schema"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}}, "response_format"),
        # More repetitions than llama.cpp's grammar parser takes.
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "minItems": 100000}}},
         "response_format"),
        # Schemas that would crash llama.cpp's converter (endless recursion) or parser (2^64 rules):
        # refused by moat's own check first.
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"allOf": [{"$ref": "#/allOf/0"}]}}},
         "response_format"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "minLength": 5, "maxLength": 2}}},
         "response_format"),
    ]
    for response_format, param in cases:
        expect_error(openai.BadRequestError, lambda: ask(client, response_format=response_format), param=param)
    error = expect_error(
        openai.BadRequestError,
        lambda: ask(client, response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"s": {"type": "string", "minLength": 5, "maxLength": 2}}}}}),
    )
    assert "#/properties/s: minLength 5 is above maxLength 2" in error.message, error.message
    # The server keeps serving, grammars included.
    Person.model_validate_json(ask(client, temperature=0, response_format=PERSON_FORMAT).choices[0].message.content)


def test_vllm_and_llama_server_fields_constrain_the_output_too(client):
    # vLLM's guided_choice: exactly one of the strings.
    labels = ["positive", "negative", "neutral"]
    review = [{"role": "user", "content": "Is this review positive or negative? 'Cold food, rude staff.'"}]
    free = client.chat.completions.create(model=SMOLLM2, messages=review, temperature=0, max_tokens=16)
    assert free.choices[0].message.content not in labels, free.choices[0].message.content
    for answer in [
        client.chat.completions.create(model=SMOLLM2, messages=review, temperature=0, max_tokens=16,
                                       extra_body={"guided_choice": labels}),
        client.chat.completions.create(model=SMOLLM2, messages=review, temperature=1.2, seed=3, n=3,
                                       max_tokens=16, extra_body={"guided_choice": labels}),
    ]:
        for choice in answer.choices:
            assert choice.message.content in labels and choice.finish_reason == "stop", choice
    completion = client.completions.create(model=SMOLLM2, prompt="The sky is", max_tokens=8, temperature=0,
                                           extra_body={"guided_choice": ["green", "blue"]})
    assert completion.choices[0].text in ("green", "blue"), completion.choices[0]
    # vLLM's guided_json (an object or its JSON text) and llama-server's json_schema.
    schema = Person.model_json_schema()
    for extra in [{"guided_json": schema}, {"guided_json": json.dumps(schema)}, {"json_schema": schema},
                  {"guided_json": schema, "guided_decoding_backend": "xgrammar"}]:
        answer = ask(client, temperature=0, extra_body=extra)
        assert answer.choices[0].finish_reason == "stop", (extra, answer.choices[0])
        Person.model_validate_json(answer.choices[0].message.content)
    # What moat does not do is a 400 naming the field, never ignored.
    for extra, param in [
        ({"guided_regex": "[a-z]+"}, "guided_regex"),
        ({"guided_grammar": "root ::= \"a\""}, "guided_grammar"),
        ({"grammar": "root ::= \"a\""}, "grammar"),
        ({"guided_choice": []}, "guided_choice"),
        ({"guided_choice": ["a", ""]}, "guided_choice[1]"),
        ({"guided_json": "not json"}, "guided_json"),
        ({"guided_json": schema, "guided_choice": labels}, "guided_choice"),
        ({"guided_json": schema, "guided_decoding_backend": "xgrammar:disable-any-whitespace"},
         "guided_decoding_backend"),
        # Past the engine's limits: the error still names the field that was sent.
        ({"guided_choice": [f"label {i}" for i in range(300)]}, "guided_choice"),
    ]:
        expect_error(openai.BadRequestError, lambda: ask(client, extra_body=extra), param=param)
    expect_error(openai.BadRequestError,
                 lambda: ask(client, response_format=PERSON_FORMAT, extra_body={"json_schema": schema}),
                 param="json_schema")


def test_ollama_format_json_and_schema(server):
    client = ollama.Client(host=server.url, timeout=120)
    answer = client.chat(model=QWEN, messages=[{"role": "user", "content": ASK}],
                         format=Person.model_json_schema(), options={"temperature": 0})
    assert answer.done_reason == "stop"
    Person.model_validate_json(answer.message.content)
    answer = client.chat(model=QWEN, messages=[{"role": "user", "content": "List three fruits as JSON."}],
                         format="json", options={"temperature": 0, "num_predict": 200})
    assert answer.done_reason == "stop"
    assert isinstance(json.loads(answer.message.content), dict)
    body = json.dumps({"model": SMOLLM2, "messages": [{"role": "user", "content": "x"}], "format": "yaml"}).encode()
    status, _, error = http("POST", server.url + "/api/chat", body)
    assert status == 400 and error["error"].startswith("format:"), error


# ----------------------------------------------------------------------------
# tool calls (Qwen2.5-Coder's chat template shows Hermes-style <tool_call> calls)
# ----------------------------------------------------------------------------

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Get the current time in a timezone",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
WEATHER_QUESTION = [{"role": "user", "content": "What's the weather like in Paris today?"}]


def only_call(choice, name):
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None, choice.message
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == name
    return json.loads(call.function.arguments)


@pytest.mark.parametrize("tool_choice", ["auto", "required"])
def test_a_question_for_a_tool_is_answered_with_a_call(client, tool_choice):
    answer = client.chat.completions.create(model=QWEN, messages=WEATHER_QUESTION, tools=[WEATHER, TIME],
                                            tool_choice=tool_choice, temperature=0)
    arguments = only_call(answer.choices[0], "get_weather")
    assert arguments["city"] == "Paris" and set(arguments) <= {"city", "unit"}, arguments


def test_a_named_tool_is_the_one_called_with_arguments_matching_its_schema(client):
    answer = client.chat.completions.create(
        model=QWEN, messages=WEATHER_QUESTION, tools=[WEATHER, TIME], temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    arguments = only_call(answer.choices[0], "get_time")
    assert list(arguments) == ["timezone"] and isinstance(arguments["timezone"], str), arguments


def test_a_streamed_call_arrives_as_tool_call_deltas_equal_to_the_whole_answer(client):
    whole = client.chat.completions.create(model=QWEN, messages=WEATHER_QUESTION, tools=[WEATHER],
                                           tool_choice="required", temperature=0).choices[0].message.tool_calls
    chunks = list(client.chat.completions.create(model=QWEN, messages=WEATHER_QUESTION, tools=[WEATHER],
                                                 tool_choice="required", temperature=0, stream=True))
    deltas = [call for chunk in chunks for choice in chunk.choices for call in (choice.delta.tool_calls or [])]
    assert [(d.index, d.function.name, d.function.arguments) for d in deltas] == [
        (0, call.function.name, call.function.arguments) for call in whole]
    assert all(not (choice.delta.content or "") for chunk in chunks for choice in chunk.choices)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_results_go_back_into_the_conversation(client):
    call = client.chat.completions.create(model=QWEN, messages=WEATHER_QUESTION, tools=[WEATHER],
                                          tool_choice="required", temperature=0).choices[0].message.tool_calls[0]
    conversation = WEATHER_QUESTION + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_celsius": 22, "sky": "sunny"})},
    ]
    answer = client.chat.completions.create(model=QWEN, messages=conversation, tools=[WEATHER], tool_choice="none",
                                            temperature=0, max_tokens=80)
    choice = answer.choices[0]
    assert choice.message.tool_calls is None
    # The template put the tool's result in the prompt: the model's answer repeats it.
    assert "22" in choice.message.content, choice.message.content
    # With the tools shown as well (auto), the same history renders with their definitions.
    shown = client.chat.completions.create(model=QWEN, messages=conversation, tools=[WEATHER],
                                           temperature=0, max_tokens=80)
    assert shown.usage.prompt_tokens > answer.usage.prompt_tokens + 50, (shown.usage, answer.usage)


def test_without_tool_choice_text_stays_text_and_n_choices_get_their_own_calls(client):
    answer = client.chat.completions.create(model=QWEN, messages=[{"role": "user", "content": "Write a haiku about rain."}],
                                            tools=[WEATHER], temperature=0, max_tokens=60)
    assert answer.choices[0].message.tool_calls is None and answer.choices[0].message.content
    answer = client.chat.completions.create(model=QWEN, messages=WEATHER_QUESTION, tools=[WEATHER],
                                            tool_choice="required", n=2, temperature=0.8, seed=5)
    for choice in answer.choices:
        assert "city" in only_call(choice, "get_weather")


FORECAST = {"type": "function", "function": {
    "name": "get_forecast", "description": "Get the weather forecast for the next days",
    "parameters": {"type": "object", "properties": {
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["days", "unit"], "additionalProperties": False}}}


def test_with_auto_a_call_the_model_opens_is_held_to_the_tools(client):
    # The bias makes `<tool_call>` Qwen's likeliest token at every step: unheld, it writes
    # nothing but that tag. With `auto` the grammar takes over once the tag is written, so the
    # call names a known tool and its arguments match the schema (which has no free text,
    # where the tag would be allowed).
    bias = {"151657": 30}  # `<tool_call>` in Qwen2.5's vocabulary
    question = [{"role": "user", "content": "Will it rain in Paris this week?"}]
    answer = client.chat.completions.create(
        model=QWEN, messages=question, tools=[FORECAST, TIME], temperature=0, max_tokens=60,
        parallel_tool_calls=False, logit_bias=bias)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    [call] = choice.message.tool_calls
    arguments = json.loads(call.function.arguments)
    if call.function.name == "get_forecast":
        assert 1 <= arguments["days"] <= 7 and arguments["unit"] in ("celsius", "fahrenheit"), arguments
        assert set(arguments) == {"days", "unit"}, arguments
    else:
        assert call.function.name == "get_time" and list(arguments) == ["timezone"], call
    unheld = client.chat.completions.create(
        model=QWEN, messages=question, tools=[FORECAST, TIME], tool_choice="none", temperature=0,
        max_tokens=8, logit_bias=bias)
    assert unheld.choices[0].message.content.startswith("<tool_call><tool_call>"), unheld.choices[0]


class Item(BaseModel):
    name: str = Field(max_length=20)
    quantity: int = Field(ge=1, le=10)


class Order(BaseModel):
    items: list[Item] = Field(min_length=1, max_length=3)


def test_a_pydantic_tool_with_nested_models_is_called_with_valid_arguments(client):
    # pydantic_function_tool writes the nested model under $defs and refers to it with $ref:
    # forced, the call's arguments follow it.
    tool = openai.pydantic_function_tool(Order, name="place_order", description="Order groceries")
    assert "$defs" in json.dumps(tool)
    answer = client.chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": "Order two apples and a loaf of bread."}],
        tools=[tool], tool_choice="required", temperature=0)
    Order.model_validate(only_call(answer.choices[0], "place_order"))


def test_tool_errors_name_their_field(client):
    cases = [
        (dict(model=SMOLLM2, tools=[WEATHER]), "tools"),  # SmolLM2's template shows no tool calls
        (dict(model=QWEN, tools=[{"type": "function", "function": {"name": "bad name"}}]), "tools[0].function.name"),
        (dict(model=QWEN, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}),
         "tool_choice.function.name"),
        (dict(model=QWEN, tool_choice="required"), "tool_choice"),
        (dict(model=QWEN, tools=[WEATHER], response_format={"type": "json_object"}), "response_format"),
    ]
    for kwargs, param in cases:
        expect_error(openai.BadRequestError,
                     lambda: client.chat.completions.create(messages=WEATHER_QUESTION, **kwargs), param=param)
    expect_error(openai.BadRequestError, lambda: client.chat.completions.create(
        model=QWEN, messages=[{"role": "tool", "content": "22"}]), param="messages[0].tool_call_id")


def test_ollama_tools_whole_streamed_and_answered(server):
    client = ollama.Client(host=server.url, timeout=120)
    messages = [{"role": "user", "content": "What's the weather like in Paris today?"}]
    answer = client.chat(model=QWEN, messages=messages, tools=[WEATHER], options={"temperature": 0})
    [call] = answer.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments["city"] == "Paris", call
    assert answer.done_reason == "stop"
    parts = list(client.chat(model=QWEN, messages=messages, tools=[WEATHER], options={"temperature": 0}, stream=True))
    streamed = [c for part in parts for c in (part.message.tool_calls or [])]
    assert [(c.function.name, c.function.arguments) for c in streamed] == [(call.function.name, call.function.arguments)]
    assert parts[-1].done
    # The call and its result go back, in Ollama's form (no ids).
    conversation = messages + [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": call.function.arguments}}]},
        {"role": "tool", "content": json.dumps({"temperature_celsius": 22, "sky": "sunny"})},
    ]
    answer = client.chat(model=QWEN, messages=conversation, options={"temperature": 0, "num_predict": 80})
    assert "22" in answer.message.content, answer.message.content
    # A tool message with no call before it is refused.
    with pytest.raises(ollama.ResponseError) as raised:
        client.chat(model=QWEN, messages=[{"role": "tool", "content": "22"}])
    assert raised.value.status_code == 400 and "tool message" in raised.value.error
