#!/usr/bin/env python3
"""Reference sentence embeddings for a BERT-family sentence-transformer, computed with numpy.

An independent check on moat's embedders (candle in `moat-embed`, llama.cpp over a GGUF): no
torch, no transformers, no sentence-transformers. The BERT forward pass below is written from
the architecture (post-LayerNorm encoder, exact erf GELU) and runs in float64; tokenization uses
the `tokenizers` package on the model's own tokenizer.json.

It follows sentence-transformers' pipeline:
  - truncate at `sentence_bert_config.json` max_seq_length (capped by the model's
    max_position_embeddings), special tokens included; no padding (one text at a time), which
    overrides whatever truncation/padding tokenizer.json itself fixes;
  - pooling per `1_Pooling/config.json` (cls, mean, max, mean_sqrt_len; several modes are
    concatenated in sentence-transformers' order);
  - L2 normalisation when `modules.json` lists a `sentence_transformers.models.Normalize` module.

Python packages (pinned in scripts/embed_reference.requirements.txt):
  numpy==2.4.6
  tokenizers==0.23.3
  safetensors==0.8.0

Regenerate the committed fixture (the model folder comes from scripts/fetch-test-models.sh):

  python3 -m venv ~/.cache/moat/embed-ref-venv
  ~/.cache/moat/embed-ref-venv/bin/pip install -r scripts/embed_reference.requirements.txt
  ~/.cache/moat/embed-ref-venv/bin/python scripts/embed_reference.py \
      "${MOAT_TEST_MODELS:-$HOME/.cache/moat/test-models}/all-minilm-l6-v2" \
      crates/moat-embed/tests/fixtures/minilm-reference.json

Output JSON: {"model", "script", "texts", "token_counts", "vectors", ...}: token_counts are the
tokens the model saw for each text (special tokens included, after truncation); vectors are the
final sentence embeddings, one per text, in the order of `texts`.
"""

import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SCRIPT = "scripts/embed_reference.py"

# Long enough (well over 256 word pieces) that truncation at max_seq_length is exercised.
_LONG_PROSE = " ".join(
    f"Paragraph {i}: the quick brown fox jumps over the lazy dog while the committee "
    f"reviews budget item number {i * 7} and argues about the colour of the bikeshed."
    for i in range(1, 16)
)
_LONG_CODE = "\n".join(
    f"def handler_{i}(request, *, retries={i}):\n"
    f"    value = request.payload.get('field_{i}', None) or {{}}\n"
    f"    return {{'status': 200, 'id': {i}, 'value': value}}"
    for i in range(1, 20)
)

TEXTS = [
    "Hello, world!",
    "The cat sits on the mat.",
    "A man is playing a guitar.",
    "How do I reset my password if I no longer have access to my email?",
    "Self-hosting keeps every document on the team's own machines.",
    "Rust's ownership model prevents data races at compile time.",
    "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '7 days';",
    "fn main() {\n    println!(\"{}\", (1..=10).map(|x| x * x).sum::<u32>());\n}",
    "Café, naïve, résumé, Ångström, Straße.",
    "東京は日本の首都です。",
    "Привет, как дела?",
    "Emoji test 🚀🔥 with symbols ± ≤ ≥ → and math ∑ x².",
    "  leading and trailing whitespace around the words   ",
    "UPPER CASE AND lower case ARE the SAME after lowercasing?",
    "Numbers: 3.14159, 2.71828, 1,000,000 and 0x1F.",
    "a",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "The quarterly report shows revenue grew by 12% while costs stayed flat.",
    _LONG_PROSE,
    _LONG_CODE,
]


def fail(msg):
    sys.exit(f"embed_reference: {msg}")


def read_json(folder, name):
    path = os.path.join(folder, name)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def pooling_modes(folder):
    """The pooling modes of 1_Pooling/config.json, in sentence-transformers' concat order."""
    modules = read_json(folder, "modules.json")
    pool_dir = None
    normalize = False
    for m in modules:
        kind = m.get("type", "")
        if kind.endswith(".Pooling"):
            pool_dir = m.get("path", "")
        elif kind.endswith(".Normalize"):
            normalize = True
    if pool_dir is None:
        fail("modules.json lists no Pooling module")
    cfg = read_json(folder, os.path.join(pool_dir, "config.json"))
    for unsupported in ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"):
        if cfg.get(unsupported):
            fail(f"{pool_dir}/config.json: {unsupported} is not supported")
    modes = [
        name
        for key, name in (
            ("pooling_mode_cls_token", "cls"),
            ("pooling_mode_max_tokens", "max"),
            ("pooling_mode_mean_tokens", "mean"),
            ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
        )
        if cfg.get(key)
    ]
    if not modes:
        fail(f"{pool_dir}/config.json enables no pooling mode")
    return modes, normalize


class Bert:
    """A BERT encoder forward pass in float64 numpy, one unpadded sequence at a time."""

    def __init__(self, folder):
        self.cfg = read_json(folder, "config.json")
        if self.cfg.get("position_embedding_type", "absolute") != "absolute":
            fail("only absolute position embeddings are supported")
        if self.cfg.get("hidden_act", "gelu") != "gelu":
            fail(f"hidden_act {self.cfg.get('hidden_act')!r} is not supported (only gelu)")
        raw = load_file(os.path.join(folder, "model.safetensors"))
        # Checkpoints saved from BertModel have bare names; from BertFor* they carry "bert.".
        self.w = {
            (k[len("bert.") :] if k.startswith("bert.") else k): v.astype(np.float64)
            for k, v in raw.items()
        }
        self.heads = self.cfg["num_attention_heads"]
        self.layers = self.cfg["num_hidden_layers"]
        self.eps = self.cfg.get("layer_norm_eps", 1e-12)
        self._erf = np.frompyfunc(math.erf, 1, 1)

    def _layer_norm(self, x, prefix):
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[prefix + ".weight"] + self.w[
            prefix + ".bias"
        ]

    def _linear(self, x, prefix):
        return x @ self.w[prefix + ".weight"].T + self.w[prefix + ".bias"]

    def _gelu(self, x):
        # The exact (erf) GELU that HF's "gelu" means, not the tanh approximation.
        return 0.5 * x * (1.0 + self._erf(x / math.sqrt(2.0)).astype(np.float64))

    def forward(self, ids):
        """Last hidden states, shape (len(ids), hidden), for one sequence without padding."""
        n = len(ids)
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(n)]
            + w["embeddings.token_type_embeddings.weight"][np.zeros(n, dtype=np.int64)]
        )
        x = self._layer_norm(x, "embeddings.LayerNorm")
        hidden = x.shape[1]
        dh = hidden // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def split(t):
                return t.reshape(n, self.heads, dh).transpose(1, 0, 2)

            q = split(self._linear(x, p + ".attention.self.query"))
            k = split(self._linear(x, p + ".attention.self.key"))
            v = split(self._linear(x, p + ".attention.self.value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, hidden)
            attn = self._linear(ctx, p + ".attention.output.dense")
            x = self._layer_norm(x + attn, p + ".attention.output.LayerNorm")
            inter = self._gelu(self._linear(x, p + ".intermediate.dense"))
            out = self._linear(inter, p + ".output.dense")
            x = self._layer_norm(x + out, p + ".output.LayerNorm")
        return x


def pool(hidden, modes):
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[0])
        elif mode == "max":
            parts.append(hidden.max(axis=0))
        elif mode == "mean":
            parts.append(hidden.mean(axis=0))
        elif mode == "mean_sqrt_len":
            parts.append(hidden.sum(axis=0) / math.sqrt(hidden.shape[0]))
    return np.concatenate(parts)


def main():
    if len(sys.argv) != 3:
        fail("usage: embed_reference.py MODEL_FOLDER OUTPUT_JSON")
    folder, out_path = sys.argv[1], sys.argv[2]
    bert = Bert(folder)
    st = read_json(folder, "sentence_bert_config.json")
    max_len = min(
        int(st.get("max_seq_length", bert.cfg["max_position_embeddings"])),
        int(bert.cfg["max_position_embeddings"]),
    )
    modes, normalize = pooling_modes(folder)

    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)

    token_counts, vectors = [], []
    for text in TEXTS:
        ids = tok.encode(text).ids
        hidden = bert.forward(np.array(ids, dtype=np.int64))
        vec = pool(hidden, modes)
        if normalize:
            vec = vec / max(np.linalg.norm(vec), 1e-12)
        token_counts.append(len(ids))
        vectors.append([float(f"{x:.9g}") for x in vec])

    if not any(c == max_len for c in token_counts):
        fail(f"no text reaches max_seq_length {max_len}: truncation is not exercised")

    result = {
        "model": os.path.basename(os.path.normpath(folder)),
        "script": SCRIPT,
        "max_seq_length": max_len,
        "pooling": modes,
        "normalize": normalize,
        "dimension": len(vectors[0]),
        "texts": TEXTS,
        "token_counts": token_counts,
        "vectors": vectors,
    }
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {out_path}: {len(TEXTS)} texts, token counts {token_counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
