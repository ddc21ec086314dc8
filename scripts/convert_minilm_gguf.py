#!/usr/bin/env python3
"""Converts a sentence-transformers BERT folder (all-MiniLM-L6-v2) into a GGUF that llama.cpp
loads as arch `bert` with the model's own pooling, so moat can test its llama.cpp embedder
against the same reference vectors as its candle embedder.

No GGUF embedding model ships in a package we can fetch, hence this small converter. It needs
only the `gguf` package and numpy (no torch): the safetensors file is read directly (a JSON
header, then raw little-endian arrays).

What it writes, and why:
- tensors renamed to llama.cpp's BERT names (token_embd, position_embd, token_types,
  token_embd_norm, blk.N.attn_q/k/v/output, attn_output_norm, ffn_up/down, layer_output_norm);
  the unused pooler head and position ids are left out;
- `bert.context_length` = sentence-transformers' `max_seq_length` (256), with the position
  table cut to match, so llama.cpp never accepts more tokens than sentence-transformers would;
- `bert.pooling_type` from 1_Pooling/config.json (mean for MiniLM), non-causal attention;
- a WordPiece vocabulary (`tokenizer.ggml.model` = bert) in llama.cpp's spelling: a word-start
  piece carries a leading U+2581, a continuation piece (`##ing`) loses its `##`, and the special
  tokens ([CLS] [SEP] [PAD] [UNK] [MASK]) stay as they are, typed CONTROL;
- `general.license` apache-2.0 (the model card's license).

The output is deterministic (same inputs, same bytes) and written atomically (a temporary file
in the same folder, then a rename).

    python convert_minilm_gguf.py MODEL_DIR OUT.gguf [--outtype f32|f16]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

import gguf

ARCH = "bert"
LICENSE = "apache-2.0"
# A safetensors header larger than this is not a BERT-sized model; refuse rather than read it.
MAX_HEADER_BYTES = 100 * 1024 * 1024
SAFETENSORS_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
PHANTOM_SPACE = "\u2581"
SPECIAL_TOKENS = ("cls", "sep", "pad", "unk", "mask")
# The sentence-transformers modules this converter reproduces; anything else (a Dense layer,
# say) would change the vectors, so it is refused.
KNOWN_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}


class ConversionError(Exception):
    """A problem with the input folder, reported as one line without a traceback."""


def read_json(path: Path) -> dict | list:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConversionError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"{path} cannot be read as JSON: {e}") from None


def require_int(config: dict, key: str, source: Path) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConversionError(f"{source}: {key} must be a positive integer, got {value!r}")
    return value


class SafeTensors:
    """The tensors of one .safetensors file, memory-mapped; every offset checked."""

    def __init__(self, path: Path):
        try:
            size = path.stat().st_size
            with path.open("rb") as f:
                prefix = f.read(8)
                if len(prefix) != 8:
                    raise ConversionError(f"{path}: too short for a safetensors header")
                (header_len,) = struct.unpack("<Q", prefix)
                if header_len > MAX_HEADER_BYTES or 8 + header_len > size:
                    raise ConversionError(
                        f"{path}: a header of {header_len} bytes does not fit this "
                        f"{size}-byte file (truncated or not safetensors)")
                header = json.loads(f.read(header_len))
        except FileNotFoundError:
            raise ConversionError(f"{path} is missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f"{path}: cannot read the header: {e}") from None
        if not isinstance(header, dict):
            raise ConversionError(f"{path}: the header is not a JSON object")
        header.pop("__metadata__", None)
        self.path = path
        self.header = header
        self.data_start = 8 + header_len
        self.data_len = size - self.data_start
        self.data = np.memmap(path, dtype=np.uint8, mode="r", offset=self.data_start)

    def names(self) -> list[str]:
        return sorted(self.header)

    def get(self, name: str) -> np.ndarray:
        """The tensor as float32, in its stored shape."""
        entry = self.header.get(name)
        if not isinstance(entry, dict):
            raise ConversionError(f"{self.path}: tensor {name} is missing")
        dtype = SAFETENSORS_DTYPES.get(entry.get("dtype"))
        shape = entry.get("shape")
        offsets = entry.get("data_offsets")
        if dtype is None:
            raise ConversionError(f"{self.path}: {name} has unsupported dtype {entry.get('dtype')!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ConversionError(f"{self.path}: {name} has a bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) for o in offsets)):
            raise ConversionError(f"{self.path}: {name} has bad data offsets {offsets!r}")
        begin, end = offsets
        n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not (0 <= begin <= end <= self.data_len) or end - begin != n_bytes:
            raise ConversionError(f"{self.path}: {name} data {offsets} does not fit its shape {shape}")
        raw = self.data[begin:end].view(dtype).reshape(shape)
        if entry["dtype"] == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)


def expect_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if array.shape != shape:
        raise ConversionError(f"tensor {name} has shape {array.shape}, expected {shape}")
    return array


def tensor_map(n_layer: int) -> list[tuple[str, str]]:
    """(safetensors name, GGUF name) for every tensor llama.cpp's BERT graph uses, in file order."""
    names = [
        ("embeddings.word_embeddings.weight", "token_embd.weight"),
        ("embeddings.token_type_embeddings.weight", "token_types.weight"),
        ("embeddings.position_embeddings.weight", "position_embd.weight"),
        ("embeddings.LayerNorm.weight", "token_embd_norm.weight"),
        ("embeddings.LayerNorm.bias", "token_embd_norm.bias"),
    ]
    per_layer = [
        ("attention.self.query", "attn_q"),
        ("attention.self.key", "attn_k"),
        ("attention.self.value", "attn_v"),
        ("attention.output.dense", "attn_output"),
        ("attention.output.LayerNorm", "attn_output_norm"),
        ("intermediate.dense", "ffn_up"),
        ("output.dense", "ffn_down"),
        ("output.LayerNorm", "layer_output_norm"),
    ]
    for layer in range(n_layer):
        for hf, ours in per_layer:
            for part in ("weight", "bias"):
                names.append((f"encoder.layer.{layer}.{hf}.{part}", f"blk.{layer}.{ours}.{part}"))
    return names


def find_tensor_prefix(tensors: SafeTensors) -> str:
    """Checkpoints saved from BertModel have bare names; some carry a `bert.` prefix."""
    for prefix in ("", "bert."):
        if f"{prefix}embeddings.word_embeddings.weight" in tensors.header:
            return prefix
    raise ConversionError(f"{tensors.path}: no BERT word embeddings found")


class Model:
    """Everything read from the sentence-transformers folder, validated."""

    def __init__(self, folder: Path):
        self.folder = folder
        config_path = folder / "config.json"
        config = read_json(config_path)
        if not isinstance(config, dict) or config.get("model_type") != "bert":
            raise ConversionError(f"{config_path}: model_type must be 'bert'")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ConversionError(f"{config_path}: hidden_act {config.get('hidden_act')!r} is not gelu")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ConversionError(f"{config_path}: only absolute position embeddings are supported")
        self.n_embd = require_int(config, "hidden_size", config_path)
        self.n_ff = require_int(config, "intermediate_size", config_path)
        self.n_layer = require_int(config, "num_hidden_layers", config_path)
        self.n_head = require_int(config, "num_attention_heads", config_path)
        self.n_pos = require_int(config, "max_position_embeddings", config_path)
        self.n_token_types = require_int(config, "type_vocab_size", config_path)
        self.n_vocab = require_int(config, "vocab_size", config_path)
        eps = config.get("layer_norm_eps", 1e-12)
        if not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise ConversionError(f"{config_path}: layer_norm_eps {eps!r} is not plausible")
        self.norm_eps = float(eps)
        if self.n_embd % self.n_head:
            raise ConversionError(f"{config_path}: hidden_size is not a multiple of the heads")

        st_config_path = folder / "sentence_bert_config.json"
        st_config = read_json(st_config_path)
        if not isinstance(st_config, dict):
            raise ConversionError(f"{st_config_path}: not a JSON object")
        self.n_ctx = require_int(st_config, "max_seq_length", st_config_path)
        if self.n_ctx > self.n_pos:
            raise ConversionError(
                f"{st_config_path}: max_seq_length {self.n_ctx} exceeds the model's "
                f"{self.n_pos} positions")

        self.pooling = self.read_pooling()
        self.normalize = self.read_modules()
        self.tokens, self.token_types, self.special_ids, self.lowercase = self.read_vocab()

    def read_modules(self) -> bool:
        """Whether the pipeline L2-normalises; refuses modules this converter cannot carry."""
        path = self.folder / "modules.json"
        modules = read_json(path)
        if not isinstance(modules, list):
            raise ConversionError(f"{path}: not a list of modules")
        kinds = [m.get("type") if isinstance(m, dict) else None for m in modules]
        unknown = [k for k in kinds if k not in KNOWN_MODULES]
        if unknown:
            raise ConversionError(f"{path}: modules {unknown} cannot be expressed in a GGUF")
        return "sentence_transformers.models.Normalize" in kinds

    def read_pooling(self) -> gguf.PoolingType:
        path = self.folder / "1_Pooling" / "config.json"
        config = read_json(path)
        if not isinstance(config, dict):
            raise ConversionError(f"{path}: not a JSON object")
        modes = [k for k, v in config.items() if k.startswith("pooling_mode_") and v is True]
        if modes == ["pooling_mode_mean_tokens"]:
            return gguf.PoolingType.MEAN
        if modes == ["pooling_mode_cls_token"]:
            return gguf.PoolingType.CLS
        raise ConversionError(f"{path}: pooling {modes} has no llama.cpp equivalent (mean or cls)")

    def read_vocab(self) -> tuple[list[str], list[int], dict[str, int], bool]:
        vocab_path = self.folder / "vocab.txt"
        try:
            lines = vocab_path.read_text(encoding="utf-8").split("\n")
        except FileNotFoundError:
            raise ConversionError(f"{vocab_path} is missing") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConversionError(f"{vocab_path} cannot be read: {e}") from None
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) != self.n_vocab:
            raise ConversionError(
                f"{vocab_path} has {len(lines)} tokens, config.json says {self.n_vocab}")

        tokenizer_path = self.folder / "tokenizer.json"
        tokenizer = read_json(tokenizer_path)
        if not isinstance(tokenizer, dict):
            raise ConversionError(f"{tokenizer_path}: not a JSON object")
        model = tokenizer.get("model") or {}
        if model.get("type") != "WordPiece" or model.get("continuing_subword_prefix", "##") != "##":
            raise ConversionError(f"{tokenizer_path}: not a WordPiece tokenizer with ## pieces")
        normalizer = tokenizer.get("normalizer") or {}
        lowercase = bool(normalizer.get("lowercase", True))
        strip_accents = normalizer.get("strip_accents")
        if strip_accents is not None and strip_accents != lowercase:
            raise ConversionError(f"{tokenizer_path}: strip_accents differs from lowercase")

        index = {token: i for i, token in enumerate(lines)}
        if len(index) != len(lines):
            raise ConversionError(f"{vocab_path} lists a token twice")
        special = {t["id"] for t in tokenizer.get("added_tokens", [])
                   if isinstance(t, dict) and t.get("special") and isinstance(t.get("id"), int)}
        special_ids = {}
        for name in SPECIAL_TOKENS:
            text = f"[{name.upper()}]"
            if text not in index:
                raise ConversionError(f"{vocab_path} has no {text} token")
            special_ids[name] = index[text]
            special.add(index[text])

        tokens, types = [], []
        for i, token in enumerate(lines):
            if i in special:
                tokens.append(token)
                types.append(gguf.TokenType.CONTROL)
                continue
            # llama.cpp's WordPiece marks word starts with U+2581 and continuations bare.
            if token.startswith("##") and len(token) > 2:
                tokens.append(token[2:])
            else:
                tokens.append(PHANTOM_SPACE + token)
            types.append(gguf.TokenType.NORMAL)
        return tokens, types, special_ids, lowercase


def tensors_to_write(model: Model, outtype: str):
    """(GGUF name, array) for every tensor, converted to the output type."""
    tensors = SafeTensors(model.folder / "model.safetensors")
    prefix = find_tensor_prefix(tensors)
    d, ff = model.n_embd, model.n_ff
    shapes = {
        "token_embd.weight": (model.n_vocab, d),
        "token_types.weight": (model.n_token_types, d),
        "position_embd.weight": (model.n_pos, d),
        "attn_q.weight": (d, d), "attn_k.weight": (d, d), "attn_v.weight": (d, d),
        "attn_output.weight": (d, d),
        "ffn_up.weight": (ff, d), "ffn_up.bias": (ff,),
        "ffn_down.weight": (d, ff),
    }
    for hf_name, name in tensor_map(model.n_layer):
        array = tensors.get(prefix + hf_name)
        short = name.split(".", 2)[-1] if name.startswith("blk.") else name
        array = expect_shape(hf_name, array, shapes.get(short, (d,)))
        if name == "position_embd.weight":
            # Only the positions a sentence-transformers input can reach.
            array = array[: model.n_ctx]
        if not np.all(np.isfinite(array)):
            raise ConversionError(f"tensor {hf_name} holds NaN or infinite values")
        # Only matrices that llama.cpp multiplies or looks rows up in may be F16: norms and
        # biases stay F32, and so does token_types, which the BERT graph adds to F32
        # activations (ggml's CPU add has no F32 + F16 kernel and aborts the process).
        if outtype == "f16" and array.ndim == 2 and name != "token_types.weight":
            array = array.astype(np.float16)
        yield name, np.ascontiguousarray(array)


def write_gguf(model: Model, out: Path, outtype: str) -> None:
    tmp = out.with_name(f".{out.name}.partial.{os.getpid()}")
    writer = gguf.GGUFWriter(tmp, ARCH)
    try:
        writer.add_name("all-MiniLM-L6-v2")
        writer.add_license(LICENSE)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16"
                             else gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(model.n_ctx)
        writer.add_embedding_length(model.n_embd)
        writer.add_feed_forward_length(model.n_ff)
        writer.add_block_count(model.n_layer)
        writer.add_head_count(model.n_head)
        writer.add_layer_norm_eps(model.norm_eps)
        writer.add_causal_attention(False)
        writer.add_pooling_type(model.pooling)

        writer.add_tokenizer_model("bert")
        writer.add_token_list(model.tokens)
        writer.add_token_types(model.token_types)
        writer.add_token_type_count(model.n_token_types)
        # llama.cpp's WordPiece session starts a sequence with BOS, so BOS is [CLS].
        writer.add_bos_token_id(model.special_ids["cls"])
        writer.add_uint32("tokenizer.ggml.cls_token_id", model.special_ids["cls"])
        writer.add_sep_token_id(model.special_ids["sep"])
        writer.add_pad_token_id(model.special_ids["pad"])
        writer.add_unk_token_id(model.special_ids["unk"])
        writer.add_mask_token_id(model.special_ids["mask"])
        writer.add_add_bos_token(True)
        writer.add_add_sep_token(True)
        writer.add_add_eos_token(False)
        writer.add_bool("tokenizer.ggml.normalizer.lowercase", model.lowercase)
        writer.add_bool("tokenizer.ggml.normalizer.strip_accents", model.lowercase)

        for name, array in tensors_to_write(model, outtype):
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.flush()
        for f in writer.fout or []:
            os.fsync(f.fileno())
        writer.close()
        os.replace(tmp, out)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="the sentence-transformers folder")
    parser.add_argument("out", type=Path, help="the GGUF file to write")
    parser.add_argument("--outtype", choices=("f32", "f16"), default="f32",
                        help="type of the 2-D weights (norms and biases stay f32)")
    args = parser.parse_args(argv)
    try:
        if not args.model_dir.is_dir():
            raise ConversionError(f"{args.model_dir} is not a folder")
        model = Model(args.model_dir)
        write_gguf(model, args.out, args.outtype)
    except ConversionError as e:
        print(f"convert_minilm_gguf: {e}", file=sys.stderr)
        return 1
    pooling = model.pooling.name.lower()
    print(f"convert_minilm_gguf: wrote {args.out} ({ARCH}, {pooling} pooling, "
          f"{model.n_ctx} tokens, {args.outtype}; normalize: {model.normalize})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
