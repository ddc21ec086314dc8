"""Embeddings, knowledge bases and grounded chat through `moat serve` over a real socket, driven
by the official ``openai`` Python SDK (and plain HTTP for moat's knowledge-base routes), with
the real all-MiniLM-L6-v2 (a sentence-transformers folder) and SmolLM2-135M-Instruct pulled
into a temporary MOAT_HOME from ``$MOAT_TEST_MODELS``.

Covers: ``client.embeddings.create`` with a string, a list, token arrays, base64 (decoded and
equal to the floats), ``dimensions`` (equal: fine; other: 400), an unknown model (404) and a
chat model (400); vectors equal to ``moat embed``'s for the same text; knowledge bases over
HTTP (create, multipart and JSON upload with per-file results, query, document removal,
delete, 404 for a missing one, 400 for a vector of the wrong dimension); grounded chat with a
request field and with an alias from moat.toml, whole and streamed, returning citations whose
first document is the one that holds the answer; the no-answer reply when nothing is relevant.
No assertion is made on the model's wording.

The binary is ``$MOAT_BIN``, else ``$CARGO_TARGET_DIR/release/moat`` or ``target/release/moat``.
"""

import base64
import json
import math
import os
import struct
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

MODELS_DIR = os.environ.get("MOAT_TEST_MODELS")
if not MODELS_DIR:
    pytest.skip(
        "MOAT_TEST_MODELS is unset: no model files to serve (scripts/test.sh sets it)",
        allow_module_level=True,
    )

import openai  # noqa: E402

from test_openai_server import REPO_ROOT, SMOLLM2, Server, http, model_file, moat  # noqa: E402

MINILM = "all-minilm:l6-v2"
MINILM_DIR = Path(MODELS_DIR) / "all-minilm-l6-v2"
CORPUS = REPO_ROOT / "crates/moat-rag/tests/fixtures/corpus"
BAD = REPO_ROOT / "crates/moat-rag/tests/fixtures/bad"
ALIAS = "handbook-assistant"
PENGUIN_QUESTION = "What does the penguin colony on the roof need every winter?"


def cosine(a, b) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("moat-kb-home")
    assert MINILM_DIR.is_dir(), f"{MINILM_DIR} is missing (scripts/fetch-test-models.sh)"
    for source, name in [(model_file(SMOLLM2), SMOLLM2), (MINILM_DIR, MINILM)]:
        done = moat(home, "pull", str(source), "--name", name, "--quiet")
        assert done.returncode == 0, done.stderr
    (home / "moat.toml").write_text(
        f'[aliases.{ALIAS}]\nmodel = "{SMOLLM2}"\n'
        f'knowledge_base = {{ name = "handbook", top_k = 3 }}\n'
    )
    return home


@pytest.fixture(scope="module")
def server(home):
    server = Server(home, [SMOLLM2, MINILM], "--ctx", "2048", "--parallel", "2").wait_ready()
    yield server
    code = server.stop()
    assert code == 0, server.output()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return server.client()


# ----------------------------------------------------------------------------
# /v1/embeddings
# ----------------------------------------------------------------------------


def test_models_lists_embedding_models_and_aliases(client):
    models = {m.id: m for m in client.models.list()}
    assert models[MINILM].model_extra["type"] == "embedding"
    assert models[SMOLLM2].model_extra["type"] == "chat"
    alias = models[ALIAS].model_extra
    assert (alias["type"], alias["alias_of"], alias["knowledge_base"]) == ("alias", SMOLLM2, "handbook")


def test_embeddings_string_and_list(client):
    one = client.embeddings.create(model=MINILM, input="The cat sat on the mat.")
    assert one.object == "list" and one.model == MINILM
    assert len(one.data) == 1 and one.data[0].index == 0
    assert len(one.data[0].embedding) == 384
    assert one.usage.prompt_tokens > 2 and one.usage.total_tokens == one.usage.prompt_tokens
    many = client.embeddings.create(model=MINILM, input=["The cat sat on the mat.", "Penguins eat herring."])
    assert [d.index for d in many.data] == [0, 1]
    assert cosine(many.data[0].embedding, one.data[0].embedding) > 0.9999
    assert cosine(many.data[0].embedding, many.data[1].embedding) < 0.9
    assert many.usage.prompt_tokens > one.usage.prompt_tokens


def wordpiece_ids(words):
    """Token ids of whole lowercase words from the model's vocab.txt (each word must be one
    token), an independent way to build token-array inputs."""
    vocab = (MINILM_DIR / "vocab.txt").read_text(encoding="utf-8").splitlines()
    index = {token: i for i, token in enumerate(vocab)}
    return [index[w] for w in words]


def test_embeddings_token_arrays_match_text(client):
    text_vector = client.embeddings.create(model=MINILM, input="the cat sat").data[0].embedding
    ids = wordpiece_ids(["the", "cat", "sat"])
    single = client.embeddings.create(model=MINILM, input=ids)
    assert cosine(single.data[0].embedding, text_vector) > 0.9999
    nested = client.embeddings.create(model=MINILM, input=[ids, wordpiece_ids(["penguins"])])
    assert len(nested.data) == 2
    assert cosine(nested.data[0].embedding, text_vector) > 0.9999


def test_embeddings_base64_equals_float(server, client):
    text = "Hybrid retrieval fuses keyword search with vector search."
    floats = client.embeddings.create(model=MINILM, input=text, encoding_format="float")
    # The SDK decodes base64 itself when it asked for it; do the raw request to see the bytes.
    status, _, body = http(
        "POST",
        server.url + "/v1/embeddings",
        json.dumps({"model": MINILM, "input": text, "encoding_format": "base64"}).encode(),
    )
    assert status == 200, body
    raw = base64.b64decode(body["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == 384
    assert max(abs(a - b) for a, b in zip(decoded, floats.data[0].embedding)) < 1e-6
    # And the SDK's own base64 path (its default) gives the same vector.
    sdk = client.embeddings.create(model=MINILM, input=text)
    assert cosine(sdk.data[0].embedding, floats.data[0].embedding) > 0.9999


def test_embeddings_match_the_cli(client, home):
    texts = ["The server listens on port 11434 by default.", "Build the binary from source with cargo."]
    served = client.embeddings.create(model=MINILM, input=texts)
    done = moat(home, "embed", MINILM, *texts)
    assert done.returncode == 0, done.stderr
    cli = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(cli) == 2
    for a, b in zip(served.data, cli):
        assert cosine(a.embedding, b) > 0.9999


def test_embeddings_errors(client):
    same = client.embeddings.create(model=MINILM, input="fine", dimensions=384)
    assert len(same.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=MINILM, input="fine", dimensions=128)
    assert "shortening" in str(error.value) and error.value.body["param"] == "dimensions"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-embedder:1", input="x")
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=SMOLLM2, input="x")
    assert "chat model" in str(error.value)
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=MINILM, input=["fine", ""])
    assert "input[1]" in str(error.value)
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=MINILM, input=["fine", "word " * 400])
    assert "1" in str(error.value) and "256" in str(error.value)


# ----------------------------------------------------------------------------
# knowledge bases over HTTP
# ----------------------------------------------------------------------------


def multipart(files, tags=()):
    """A multipart/form-data body with file parts and `tag` fields."""
    boundary = uuid.uuid4().hex
    parts = []
    for tag in tags:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="tag"\r\n\r\n{tag}\r\n'.encode()
        )
    for name, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_raw(url, body, content_type):
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def handbook(server):
    """The `handbook` knowledge base, filled over HTTP."""
    kbs = server.url + "/v1/knowledge_bases"
    status, _, body = http("POST", kbs, json.dumps({"name": "handbook", "embed_model": MINILM}).encode())
    assert status == 201, body
    assert (body["name"], body["embed_model"], body["dimension"]) == ("handbook", MINILM, 384)
    files = [(name, (CORPUS / name).read_bytes()) for name in ["notes.txt", "page.html", "guide.md"]]
    files.append(("bad/binary.bin", (BAD / "binary.bin").read_bytes()))
    body, content_type = multipart(files, tags=["fixture"])
    status, uploaded = post_raw(kbs + "/handbook/documents", body, content_type)
    assert status == 200, uploaded
    results = {r["path"]: r for r in uploaded["data"]}
    assert {p: r["status"] for p, r in results.items()} == {
        "notes.txt": "added", "page.html": "added", "guide.md": "added", "bad/binary.bin": "failed",
    }
    assert results["bad/binary.bin"]["error"]
    assert all(results[p]["chunks"] >= 1 for p in ["notes.txt", "page.html", "guide.md"])
    source = (CORPUS / "src/lib.rs").read_bytes()
    json_upload = {"path": "src/lib.rs", "content": base64.b64encode(source).decode(), "encoding": "base64"}
    status, _, body = http("POST", kbs + "/handbook/documents", json.dumps(json_upload).encode())
    assert status == 200 and body["data"][0]["status"] == "added", body
    status, _, body = http("POST", kbs + "/handbook/documents", json.dumps(json_upload).encode())
    assert body["data"][0]["status"] == "unchanged", body
    return kbs


def test_kb_list_show_and_errors(server, handbook):
    status, _, body = http("GET", handbook)
    assert status == 200 and [kb["name"] for kb in body["data"]] == ["handbook"]
    assert body["data"][0]["documents"] == 4
    status, _, body = http("GET", handbook + "/handbook")
    assert status == 200
    assert sorted(d["path"] for d in body["document_list"]) == ["guide.md", "notes.txt", "page.html", "src/lib.rs"]
    status, _, body = http("POST", handbook, json.dumps({"name": "handbook", "embed_model": MINILM}).encode())
    assert status == 409, body
    status, _, body = http("POST", handbook, json.dumps({"name": "other", "embed_model": SMOLLM2}).encode())
    assert status == 400 and "not an embedding model" in body["error"]["message"], body
    status, _, body = http("POST", handbook + "/missing/query", json.dumps({"query": "penguins"}).encode())
    assert status == 404 and body["error"]["code"] == "knowledge_base_not_found", body
    status, _, body = http("POST", handbook + "/handbook/query", json.dumps({"vector": [0.1] * 17}).encode())
    assert status == 400 and body["error"]["code"] == "wrong_dimension", body
    status, _, body = http("POST", handbook + "/handbook/query", json.dumps({"query": "x", "mode": "fuzzy"}).encode())
    assert status == 400 and body["error"]["param"] == "mode", body
    # Too many tag fields are refused before every file gets a copy of every tag.
    body, content_type = multipart([(f"f{i}.txt", b"x") for i in range(100)], tags=[f"t{i}" for i in range(65)])
    status, refused = post_raw(handbook + "/missing/documents", body, content_type)
    assert status == 400 and "65 tag fields" in refused["error"]["message"], refused


def test_kb_query_finds_the_right_document(server, handbook):
    status, _, body = http("POST", handbook + "/handbook/query", json.dumps({"query": "what do the penguins eat?", "top_k": 3}).encode())
    assert status == 200, body
    hits = body["data"]
    assert hits[0]["path"] == "notes.txt"
    assert {"score", "location", "text", "chunk_id"} <= set(hits[0])
    status, _, body = http(
        "POST", handbook + "/handbook/query",
        json.dumps({"query": "which port does the server listen on", "mode": "vector", "path_glob": "*.html", "tags": ["fixture"]}).encode(),
    )
    assert status == 200 and [h["path"] for h in body["data"]][:1] == ["page.html"], body
    assert all(h["path"].endswith(".html") for h in body["data"])


def citations_of(answer):
    citations = answer.model_extra["citations"]
    for citation in citations:
        assert {"marker", "document", "location", "score", "snippet"} <= set(citation), citation
    return citations


def test_grounded_chat_returns_citations(client, handbook):
    answer = client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": PENGUIN_QUESTION}],
        max_tokens=24,
        temperature=0,
        extra_body={"knowledge_base": {"name": "handbook", "top_k": 2}},
    )
    citations = citations_of(answer)
    assert 1 <= len(citations) <= 2
    assert [c["marker"] for c in citations] == list(range(1, len(citations) + 1))
    assert citations[0]["document"] == "notes.txt"
    assert "penguin" in citations[0]["snippet"].lower()
    assert answer.choices[0].message.content


def test_grounded_chat_streams_citations_and_works_through_an_alias(client, handbook):
    stream = client.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": PENGUIN_QUESTION}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    with_citations = [c for c in chunks if (c.model_extra or {}).get("citations") is not None]
    assert len(with_citations) == 1
    assert with_citations[0].choices == []
    assert with_citations[0].model_extra["citations"][0]["document"] == "notes.txt"
    assert chunks[-1].usage is not None
    assert all(c.model == ALIAS for c in chunks)


def test_grounded_chat_says_so_when_nothing_is_relevant(client, handbook):
    answer = client.chat.completions.create(
        model=SMOLLM2,
        messages=[{"role": "user", "content": "Who won the 1962 world chess olympiad in Varna?"}],
        max_tokens=16,
        extra_body={"knowledge_base": {"name": "handbook", "min_score": 0.6}},
    )
    assert citations_of(answer) == []
    assert "no relevant information" in answer.choices[0].message.content.lower()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model=SMOLLM2,
            messages=[{"role": "user", "content": PENGUIN_QUESTION}],
            extra_body={"knowledge_base": "missing-kb"},
        )


def test_zz_document_removal_and_kb_delete(server, handbook):
    request = urllib.request.Request(handbook + "/handbook/documents/src/lib.rs", method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    status, _, body = http("GET", handbook + "/handbook")
    assert "src/lib.rs" not in [d["path"] for d in body["document_list"]]
    status, _, body = http("DELETE", handbook + "/handbook/documents/src/lib.rs")
    assert status == 404, body
    status, _, body = http("DELETE", handbook + "/handbook")
    assert status == 200 and body["deleted"] is True
    status, _, body = http("POST", handbook + "/handbook/query", json.dumps({"query": "penguins"}).encode())
    assert status == 404, body


def test_an_embedding_model_whose_license_forbids_the_deployment_is_refused(tmp_path):
    # `moat serve` refuses such a model by name; a knowledge base must not load it either,
    # from the CLI or over HTTP.
    for source, name in [(model_file(SMOLLM2), SMOLLM2), (MINILM_DIR, MINILM)]:
        done = moat(tmp_path, "pull", str(source), "--name", name, "--quiet")
        assert done.returncode == 0, done.stderr
    done = moat(tmp_path, "license", "set", MINILM, "cc-by-nc-4.0")
    assert done.returncode == 0, done.stderr
    (tmp_path / "moat.toml").write_text("[deployment]\ncommercial = true\n")
    refused = moat(tmp_path, "kb", "create", "notes", "--embed", MINILM)
    assert refused.returncode != 0 and "refusing to serve" in refused.stderr, refused.stderr
    server = Server(tmp_path, [SMOLLM2]).wait_ready()
    try:
        status, _, body = http(
            "POST", server.url + "/v1/knowledge_bases", json.dumps({"name": "notes", "embed_model": MINILM}).encode()
        )
        assert status == 403 and body["error"]["code"] == "license_forbidden", body
    finally:
        assert server.stop() == 0, server.output()
    # Served anyway through the override, the embedding model is recorded in the audit log as
    # a chat model named on the command line is.
    server = Server(tmp_path, [SMOLLM2], "--allow-forbidden-license").wait_ready()
    try:
        status, _, body = http(
            "POST", server.url + "/v1/knowledge_bases", json.dumps({"name": "notes", "embed_model": MINILM}).encode()
        )
        assert status == 201, body
    finally:
        assert server.stop() == 0, server.output()
    done = moat(tmp_path, "audit", "--jsonl")
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    overrides = [e for e in entries if e["rails"] == ["license.forbidden_override"]]
    assert [e["model"] for e in overrides] == [MINILM], entries


def keyed(method: str, url: str, secret: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_kb_queries_and_grounded_chats_are_held_to_the_keys_limits(tmp_path):
    for source, name in [(model_file(SMOLLM2), SMOLLM2), (MINILM_DIR, MINILM)]:
        done = moat(tmp_path, "pull", str(source), "--name", name, "--quiet")
        assert done.returncode == 0, done.stderr
    for args in [("create", "notes", "--embed", MINILM), ("add", "notes", str(CORPUS / "notes.txt"))]:
        done = moat(tmp_path, "kb", *args)
        assert done.returncode == 0, done.stderr

    def key(*args) -> str:
        done = moat(tmp_path, "keys", "create", "--json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["secret"]

    slow, tight, judge = key("--name", "slow", "--rpm", "1"), key("--name", "tight", "--tpm", "20"), key("--name", "q")
    grounded = key("--name", "g", "--rpm", "1")
    server = Server(tmp_path, [SMOLLM2, MINILM]).wait_ready()
    try:
        url = server.url + "/v1/knowledge_bases/notes/query"
        # a malformed query is refused before it counts as one of the key's requests
        status, _, body = keyed("POST", url, slow, {"query": "penguins", "vector": [0.1] * 384})
        assert status == 400, body
        status, _, body = keyed("POST", url, slow, {"query": "penguins"})
        assert status == 200 and body["data"], body
        status, headers, body = keyed("POST", url, slow, {"vector": [0.1] * 384})
        assert status == 429 and headers["x-moat-limit"] == "requests_per_minute", body
        # 40 bytes of query may take up to 42 tokens: more than a 20-token limit admits
        status, headers, body = keyed("POST", url, tight, {"query": "where do the penguins of the roof sleep?"})
        assert status == 429 and headers["x-moat-limit"] == "tokens_per_minute", body
        status, _, body = keyed("POST", url, judge, {"query": "what do the penguins eat?"})
        assert status == 200, body
        status, _, body = keyed(
            "POST", server.url + "/v1/embeddings", judge, {"model": MINILM, "input": "what do the penguins eat?"}
        )
        assert status == 200, body
        tokens = body["usage"]["prompt_tokens"]
        # A grounded chat embeds its question: one request (--rpm 1 lets it through), whose
        # embedding counts as the key's usage of the embedding model.
        chat = {
            "model": SMOLLM2,
            "messages": [{"role": "user", "content": PENGUIN_QUESTION}],
            "max_tokens": 8,
            "knowledge_base": {"name": "notes", "top_k": 1},
        }
        status, _, answer = keyed("POST", server.url + "/v1/chat/completions", grounded, chat)
        assert status == 200 and answer["citations"], answer
        status, _, body = keyed("POST", server.url + "/v1/embeddings", judge, {"model": MINILM, "input": PENGUIN_QUESTION})
        assert status == 200, body
        question_tokens = body["usage"]["prompt_tokens"]
        status, headers, body = keyed("POST", server.url + "/v1/chat/completions", grounded, chat)
        assert status == 429 and headers["x-moat-limit"] == "requests_per_minute", body
    finally:
        assert server.stop() == 0, server.output()
    done = moat(tmp_path, "audit", "--jsonl", "--key", "q")
    entries = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    # the query was settled with its real count, the one the embeddings endpoint reports
    assert [e["prompt_tokens"] for e in entries[:2]] == [tokens, tokens], entries
    done = moat(tmp_path, "usage", "--group-by", "key", "--json")
    assert done.returncode == 0, done.stderr
    [row] = [row for row in json.loads(done.stdout)["rows"] if row["group"].endswith(" g")]
    # one request, whose tokens are the chat's and its question's embedding
    assert row["requests"] == 1, row
    assert row["prompt_tokens"] == answer["usage"]["prompt_tokens"] + question_tokens, (row, answer["usage"])
    assert row["completion_tokens"] == answer["usage"]["completion_tokens"], row
    assert MINILM in row["unpriced_models"], row
    # by alias, the question's embedding is part of what the alias the chat named cost
    done = moat(tmp_path, "usage", "--group-by", "alias", "--json")
    assert done.returncode == 0, done.stderr
    [row] = [row for row in json.loads(done.stdout)["rows"] if row["group"] == SMOLLM2]
    assert row["requests"] == 1, row
    assert row["prompt_tokens"] == answer["usage"]["prompt_tokens"] + question_tokens, (row, answer["usage"])
