"""Structured output over a real socket: `response_format` (OpenAI's API, driven by the official
``openai`` SDK, its ``parse`` helper with a pydantic model included) and Ollama's ``format``
(driven by the official ``ollama`` client), with the real SmolLM2-135M-Instruct and
Qwen2.5-Coder-0.5B-Instruct.

Covers: a pydantic model filled by both models where free text would not parse; a stream that
holds to the schema and equals the whole answer; sampled choices that all follow it; a JSON
object; `response_format` on completions (a moat extension, as in vLLM); malformed formats,
schemas llama.cpp cannot use and schemas that would crash its converter refused with a 400
naming the field, the server serving on; Ollama's ``format`` as ``"json"`` and as a schema.

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
