#!/usr/bin/env python3
"""Parse llama-server logs written by buffers.sh into bench/results/llamacpp-buffers.json.

Also reads each model's GGUF header (a small self-contained reader, no deps) so
the JSON carries the hyperparameters and tensor byte counts that an estimator
needs, and evaluates the closed-form approximations documented in README.md
against each measured case.
"""
import argparse
import json
import math
import os
import re
import struct
import sys
from collections import OrderedDict

MiB = 1024.0 * 1024.0

# ---------------------------------------------------------------------------
# minimal GGUF reader
# ---------------------------------------------------------------------------

# ggml_type -> (name, block size in elements, bytes per block)
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}


def read_gguf(path):
    with open(path, "rb") as f:
        data = f.read(64 * 1024 * 1024)  # header + tensor infos are far smaller than this
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def rd_str():
        nonlocal pos
        n = rd("Q")
        s = data[pos:pos + n].decode("utf-8", errors="replace")
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def rd_val(t, keep_array=True):
        if t in scalar:
            return rd(scalar[t])
        if t == 8:
            return rd_str()
        if t == 9:
            at = rd("I")
            n = rd("Q")
            vals = [rd_val(at) for _ in range(n)]
            return vals if keep_array else {"array_len": n}
        raise ValueError("unknown gguf value type %d" % t)

    assert data[:4] == b"GGUF", path
    pos = 4
    version = rd("I")
    n_tensors = rd("Q")
    n_kv = rd("Q")
    kv = OrderedDict()
    for _ in range(n_kv):
        k = rd_str()
        t = rd("I")
        v = rd_val(t)
        kv[k] = v
    tensors = []
    for _ in range(n_tensors):
        name = rd_str()
        nd = rd("I")
        ne = [rd("Q") for _ in range(nd)]
        t = rd("I")
        off = rd("Q")
        tname, bs, bb = GGML_TYPES[t]
        nel = 1
        for d in ne:
            nel *= d
        tensors.append({"name": name, "ne": ne, "type": tname, "offset": off, "nbytes": nel // bs * bb})
    align = int(kv.get("general.alignment", 32))
    data_offset = (pos + align - 1) // align * align
    return {"version": version, "kv": kv, "tensors": tensors, "data_offset": data_offset,
            "alignment": align, "file_size": os.path.getsize(path)}


def model_summary(path):
    g = read_gguf(path)
    kv = g["kv"]
    arch = kv["general.architecture"]

    def a(key, default=None):
        return kv.get("%s.%s" % (arch, key), default)

    n_layer = a("block_count")
    n_head = a("attention.head_count")
    n_head_kv = a("attention.head_count_kv", n_head)
    n_embd = a("embedding_length")
    head_k = a("attention.key_length", n_embd // n_head if n_head else None)
    head_v = a("attention.value_length", head_k)
    tokens = kv.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens) if isinstance(tokens, list) else a("vocab_size")
    total = sum(t["nbytes"] for t in g["tensors"])
    first = min(t["offset"] for t in g["tensors"])
    last = max(t["offset"] + t["nbytes"] for t in g["tensors"])
    by_type = {}
    for t in g["tensors"]:
        by_type.setdefault(t["type"], [0, 0])
        by_type[t["type"]][0] += 1
        by_type[t["type"]][1] += t["nbytes"]
    # tensors the CPU "repack" extra buffer type takes (x86 AVX2/AVX512 rules of
    # ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type: with AVX2,
    # Q4_0, Q4_K, IQ4_NL, MXFP4 (and Q2_K with AVX512) when ne[1] % 8 == 0;
    # Q8_0/Q5_K/Q6_K are repacked on ARM/RISC-V only; token_embd is only used
    # by GET_ROWS and stays in the mapped buffer)
    repack_types = {"Q4_0", "Q4_K", "IQ4_NL", "Q2_K", "MXFP4"}
    repack_bytes = sum(t["nbytes"] for t in g["tensors"]
                       if t["type"] in repack_types and len(t["ne"]) == 2 and t["ne"][1] % 8 == 0
                       and t["name"] != "token_embd.weight")
    swa_pattern = a("attention.sliding_window_pattern")
    return OrderedDict([
        ("file", os.path.basename(path)),
        ("file_size_bytes", g["file_size"]),
        ("arch", arch),
        ("n_ctx_train", a("context_length")),
        ("n_embd", n_embd),
        ("n_layer", n_layer),
        ("n_head", n_head),
        ("n_head_kv", n_head_kv),
        ("n_embd_head_k", head_k),
        ("n_embd_head_v", head_v),
        ("n_embd_k_gqa", head_k * n_head_kv if head_k and n_head_kv else None),
        ("n_embd_v_gqa", head_v * n_head_kv if head_v and n_head_kv else None),
        ("n_ff", a("feed_forward_length")),
        ("n_vocab", n_vocab),
        ("n_swa", a("attention.sliding_window")),
        ("sliding_window_pattern_gguf", swa_pattern),
        ("tied_embeddings", not any(t["name"] == "output.weight" for t in g["tensors"])),
        ("n_tensors", len(g["tensors"])),
        ("tensor_data_bytes", total),
        ("tensor_data_offset", g["data_offset"]),
        ("tensor_data_span_bytes", last - first),
        ("tensor_bytes_by_type", {k: {"count": v[0], "bytes": v[1]} for k, v in sorted(by_type.items())}),
        ("repackable_bytes_x86", repack_bytes),
    ])


# ---------------------------------------------------------------------------
# log parsing
# ---------------------------------------------------------------------------

BUF_RE = re.compile(r"^(?P<func>[\w:]+): +(?P<buft>\S+) +(?P<kind>model|KV|output|compute|RS) buffer size = +(?P<mib>[\d.]+) MiB")
KV_SIZE_RE = re.compile(r"^llama_kv_cache: size = +(?P<mib>[\d.]+) MiB \( *(?P<cells>\d+) cells, +(?P<layers>\d+) layers, +(?P<seqs>\d+)/(?P<streams>\d+) seqs\), K \((?P<tk>\w+)\): +(?P<kmib>[\d.]+) MiB, V \((?P<tv>\w+)\): +(?P<vmib>[\d.]+) MiB")
ISWA_RE = re.compile(r"^llama_kv_cache_iswa: creating +(?P<which>non-SWA|SWA) KV cache, size = (?P<cells>\d+) cells")
CTX_RE = re.compile(r"^llama_context: (?P<k>n_seq_max|n_ctx|n_ctx_seq|n_batch|n_ubatch|causal_attn|flash_attn|kv_unified|n_outputs_max|n_outputs_max_per_seq|n_rs_seq) += (?P<v>\S+)")
INFO_RE = re.compile(r"^print_info: (?P<k>[\w ]+?) += (?P<v>.+)$")
GRAPH_RE = re.compile(r"^sched_reserve: graph.*nodes = (?P<nodes>[\d / ]+), splits = (?P<splits>[\d / ]+)")
FA_RE = re.compile(r"Flash Attention (?P<state>enabled|not supported, set to disabled)")

INFO_KEYS = {"arch", "n_ctx_train", "n_embd", "n_layer", "n_head", "n_head_kv", "n_swa", "is_swa_any",
             "n_embd_head_k", "n_embd_head_v", "n_gqa", "n_embd_k_gqa", "n_embd_v_gqa", "n_ff",
             "n_vocab", "file type", "file size", "model params", "model type", "n_embd_head_k_swa",
             "n_embd_head_v_swa", "causal attn", "rope type", "n_ctx_orig_yarn"}


def num(v):
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v


def strip_prefix(line):
    # llama-server/common logs carry "0.01.741.770 I " (time, level) and a
    # "srv  "/"cmn  " tag before the function name
    line = re.sub(r"^\d+\.\d+\.\d+\.\d+ [A-Z] ", "", line)
    line = re.sub(r"^(srv|cmn|slot|spec) +", "", line)
    return line


BREAKDOWN_RE = re.compile(r"^common_memory_breakdown_print: \|\s+- (?P<name>\S+)\s+\|[^|]*?(?P<self>\d+) = +(?P<model>\d+) \+ +(?P<context>\d+) \+ +(?P<compute>\d+)")


def parse_log(path):
    res = OrderedDict()
    res["buffers_mib"] = OrderedDict()
    res["kv_caches"] = []
    res["context"] = OrderedDict()
    res["print_info"] = OrderedDict()
    res["raw_lines"] = []
    pending_iswa = None
    fit_lines = []
    breakdowns = []
    with open(path, errors="replace") as f:
        lines = [strip_prefix(l.rstrip("\n")) for l in f]
    for line in lines:
        keep = False
        m = BUF_RE.match(line)
        if m:
            keep = True
            kind, buft, mib = m["kind"], m["buft"], float(m["mib"])
            key = "%s %s" % (buft, kind)
            if kind == "KV":
                tag = pending_iswa or "kv"
                key = "%s KV (%s)" % (buft, tag)
            # sum duplicates (e.g. two model buffers of the same type) but keep order
            res["buffers_mib"][key] = round(res["buffers_mib"].get(key, 0.0) + mib, 2)
        m = KV_SIZE_RE.match(line)
        if m:
            keep = True
            res["kv_caches"].append(OrderedDict([
                ("which", pending_iswa or "kv"), ("cells", int(m["cells"])), ("layers", int(m["layers"])),
                ("n_seq_max", int(m["seqs"])), ("n_stream", int(m["streams"])),
                ("type_k", m["tk"]), ("type_v", m["tv"]), ("size_mib", float(m["mib"])),
                ("k_mib", float(m["kmib"])), ("v_mib", float(m["vmib"]))]))
        m = ISWA_RE.match(line)
        if m:
            keep = True
            pending_iswa = "non-SWA" if m["which"] == "non-SWA" else "SWA"
        m = CTX_RE.match(line)
        if m:
            keep = True
            res["context"][m["k"]] = num(m["v"])
        m = INFO_RE.match(line)
        if m and m["k"].strip() in INFO_KEYS:
            res["print_info"][m["k"].strip()] = num(m["v"].strip())
        m = GRAPH_RE.match(line)
        if m:
            keep = True
            res["graph"] = {"nodes": m["nodes"].strip(), "splits": m["splits"].strip()}
        m = FA_RE.search(line)
        if m:
            keep = True
            res["flash_attn_resolved"] = "enabled" if m["state"] == "enabled" else "disabled"
        if "common_params_fit" in line or "common_fit_params" in line:
            fit_lines.append(line)
        m = BREAKDOWN_RE.match(line)
        if m:
            keep = True
            breakdowns.append(OrderedDict([("name", m["name"])] + [(k, int(m[k])) for k in ("self", "model", "context", "compute")]))
        if "n_ctx is not divisible" in line or "using full-size SWA cache" in line or "rounding" in line:
            keep = True
        if keep:
            res["raw_lines"].append(line)
    if fit_lines:
        res["fit_lines"] = fit_lines[:20]
    if breakdowns:
        # common_memory_breakdown_print runs twice for llama-server: once in the
        # -fit dry run (a projection, before "successfully fit") and once at exit
        # (actual); both tables list Host and CPU_REPACK rows, whole MiB
        res["memory_breakdown_mib"] = breakdowns
    if "flash_attn_resolved" not in res:
        fa = str(res["context"].get("flash_attn", ""))
        res["flash_attn_resolved"] = {"enabled": "enabled", "disabled": "disabled"}.get(fa, "unknown(%s)" % fa)
    return res


# ---------------------------------------------------------------------------
# closed-form approximation (see README.md)
# ---------------------------------------------------------------------------

def pad(x, n):
    return (x + n - 1) // n * n


def swa_layers(ms):
    """(n_full_layers, n_swa_layers) - gemma3: pattern 6, layer il is SWA iff il % 6 < 5."""
    n_layer = ms["n_layer"]
    if ms["arch"] == "gemma3" and ms.get("n_swa"):
        n_full = sum(1 for il in range(n_layer) if il % 6 == 5)
        return n_full, n_layer - n_full
    return n_layer, 0


# bytes per element of a KV cache row (ggml_row_size / block size)
KV_TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
                 "q4_1": 20 / 32, "q4_0": 18 / 32, "iq4_nl": 18 / 32}


def estimate(ms, ctx_req, n_seq, unified, fa, n_ubatch=512, n_batch=2048, n_outputs_max=None, repack=True,
             type_k="f16", type_v="f16", swa_full=False, mmap=True):
    """Closed-form estimate (bytes -> MiB) of every buffer llama.cpp allocates on CPU.

    See bench/llamacpp/README.md for the derivation (source file + function
    for each step). n_outputs_max: llama-server passes n_parallel, llama-cli /
    llama-completion leave it 0 (= n_batch).
    """
    # llama_context::llama_context (src/llama-context.cpp)
    n_ctx = pad(ctx_req, 256)
    if unified or n_seq == 1:
        n_ctx_seq, n_stream = n_ctx, 1
        if not unified:
            n_stream = n_seq  # == 1
    else:
        n_ctx_seq = pad(n_ctx // n_seq, 256)
        n_ctx = n_ctx_seq * n_seq
        n_stream = n_seq
    n_batch = min(n_ctx, n_batch)
    n_ubatch = min(n_batch, n_ubatch if n_ubatch else n_batch)
    if n_outputs_max is None or n_outputs_max == 0:
        n_outputs_max = n_batch
    T = min(n_ctx, n_ubatch)  # sched_reserve: worst-case ubatch
    n_out = min(T, n_outputs_max)

    out = OrderedDict()
    out["n_ctx"] = n_ctx
    out["n_ctx_seq"] = n_ctx_seq
    out["n_stream"] = n_stream

    # weights: load_tensors, mmap -> one CPU_Mapped buffer spanning the tensor data
    # (--no-mmap: a plain CPU buffer holding only the tensors that are not repacked)
    repack_b = ms["repackable_bytes_x86"] if repack else 0
    out["weights_mib"] = (ms["tensor_data_span_bytes"] - (0 if mmap else repack_b)) / MiB
    out["repack_mib"] = repack_b / MiB

    # KV: llama_kv_cache ctor, K and V tensors [n_embd_{k,v}_gqa, kv_size, n_stream] f16
    n_full, n_swa_l = swa_layers(ms)
    per_cell_layer = ms["n_embd_k_gqa"] * KV_TYPE_BYTES[type_k] + ms["n_embd_v_gqa"] * KV_TYPE_BYTES[type_v]
    caches = [("full", n_full, n_ctx_seq)]
    if n_swa_l:
        # llama_kv_cache_iswa ctor
        swa_cells = pad(min(n_ctx_seq, ms["n_swa"] * (n_seq if unified else 1) + n_ubatch), 256)
        if swa_full:
            swa_cells = n_ctx_seq
        caches.append(("swa", n_swa_l, swa_cells))
    kv = 0
    for name, nl, cells in caches:
        b = int(nl * cells * n_stream * per_cell_layer)
        out["kv_%s_cells" % name] = cells
        out["kv_%s_mib" % name] = b / MiB
        kv += b
    out["kv_mib"] = kv / MiB

    # output buffer: llama_context::output_reserve(n_seq_max): logits f32 [n_vocab, n_seq_max]
    out["output_mib"] = ms["n_vocab"] * n_seq * 4 / MiB

    # compute buffer: ggml-alloc high-water mark of the worst-case graph
    # (T tokens, n_out outputs); max over three phases, empirical widths
    n_embd, n_ff = ms["n_embd"], ms["n_ff"]
    n_q = ms["n_head"] * ms["n_embd_head_k"]
    elt_mask = 2 if fa else 4                     # build_attn_inp_kq_mask: f16 with FA
    masks = sum(cells * T * elt_mask for _, _, cells in caches)
    ffn = masks + T * 4 * (3 * n_ff + 3 * n_embd + max(n_embd, n_q))
    lm_head = ms["n_vocab"] * n_out * 4 + T * 4 * 3 * n_embd
    attn = 0
    if not fa:
        max_cells = max(cells for _, _, cells in caches)
        attn = masks + max_cells * T * 4 * ms["n_head"] + T * 4 * (3 * n_embd + 2 * n_q + 2 * ms["n_embd_k_gqa"])
    out["compute_terms_mib"] = {"ffn": ffn / MiB, "lm_head": lm_head / MiB, "attn_kq": attn / MiB}
    out["compute_mib"] = max(ffn, lm_head, attn) / MiB
    out["total_mib"] = out["weights_mib"] + out["repack_mib"] + out["kv_mib"] + out["output_mib"] + out["compute_mib"]
    out["total_without_repack_mib"] = out["total_mib"] - out["repack_mib"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", required=True)
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    build_root = os.path.join(args.cache, "llama.cpp-%s" % args.version)

    def readf(p, default=None):
        try:
            with open(p) as f:
                return f.read().strip()
        except OSError:
            return default

    version_txt = readf(os.path.join(args.logdir, "version.txt"), "")
    flags = (readf(os.path.join(build_root, "cmake-flags.txt"), "") or "").split("\n")
    result = OrderedDict()
    result["generated_by"] = "bench/llamacpp/buffers.sh (parse_buffers.py)"
    result["llama_cpp_python_version"] = args.version
    result["llama_cpp_commit"] = readf(os.path.join(build_root, "llama-commit.txt"))
    result["llama_server_version"] = [l for l in version_txt.splitlines() if l.strip()]
    result["cmake_flags"] = [f for f in flags if f]
    result["machine"] = {"cpu": "x86_64, AVX2 + AVX512 (CPU_REPACK active for Q4_K)", "threads": 2, "backend": "CPU only"}
    result["defaults"] = OrderedDict([
        ("threads", 2), ("n_batch", 2048), ("n_ubatch", 512), ("type_k", "f16"), ("type_v", "f16"),
        ("flash_attn", "auto (resolves to enabled on CPU) unless the case sets -fa off"),
        ("mmap", True), ("fit", "on (default; CPU only, changes nothing)"), ("warmup", True),
        ("log_verbosity", 4)])
    result["notes"] = [
        "MiB = 2^20 bytes, as printed by llama.cpp (%.2f).",
        "buffers_mib keys: '<buffer type> <kind>'; KV buffers are tagged kv / non-SWA / SWA.",
        "CPU_REPACK holds re-laid-out copies of Q4_0/Q4_K/IQ4_NL/MXFP4 matrices (x86 AVX2); the originals stay "
        "inside the CPU_Mapped file mapping, so the file bytes are counted once in CPU_Mapped and the repacked "
        "tensors a second time in CPU_REPACK.",
        "llama-server passes n_outputs_max = n_parallel; llama-completion/llama-cli use n_batch, which makes the "
        "worst-case graph hold n_vocab x n_ubatch f32 logits (the 'completion' cases).",
        "memory_breakdown_mib: llama.cpp's own table (whole MiB); the first Host/CPU_REPACK pair comes from the "
        "-fit dry run (a projection), the last from the exit of the process (actual).",
        "estimate: parse_buffers.py estimate(); see README.md.",
    ]
    result["models"] = OrderedDict()
    result["cases"] = []

    summaries = {}
    with open(args.cases) as f:
        rows = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    for row in rows:
        cid, tool, m, ctx, np_, extra, status, secs, cmd = row
        mpath = cmd.split(" -m ")[1].split(" ")[0]
        if m not in summaries:
            summaries[m] = model_summary(mpath)
            result["models"][m] = summaries[m]
        parsed = parse_log(os.path.join(args.logdir, cid + ".log"))
        ctx, np_ = int(ctx), int(np_)
        case = OrderedDict()
        case["id"] = cid
        case["model"] = m
        case["tool"] = "llama-" + tool
        case["requested_ctx"] = ctx
        case["parallel"] = np_
        case["extra_flags"] = extra
        case["command"] = cmd.replace(os.path.expanduser("~") + "/", "~/")
        case["status"] = status
        case["load_seconds"] = float(secs)
        case["flash_attn"] = parsed["flash_attn_resolved"]
        case["kv_unified"] = parsed["context"].get("kv_unified")
        case["buffers_mib"] = parsed["buffers_mib"]
        case["total_mib"] = round(sum(parsed["buffers_mib"].values()), 2)
        case["context"] = parsed["context"]
        case["kv_caches"] = parsed["kv_caches"]
        case["print_info"] = parsed["print_info"]
        for k in ("graph", "memory_breakdown_mib", "fit_lines"):
            if k in parsed:
                case[k] = parsed[k]
        case["raw_lines"] = parsed["raw_lines"]

        # the estimate only uses what the user asked for (flags) and the GGUF,
        # never the values llama.cpp printed
        flags = extra.split()

        def flag(name, default):
            return flags[flags.index(name) + 1] if name in flags else default

        est = estimate(summaries[m], ctx, np_,
                       unified="--kv-unified" in flags,
                       fa=flag("-fa", "auto") != "off",  # auto resolves to on for the CPU backend
                       n_ubatch=int(flag("-ub", 512)), n_batch=int(flag("-b", 2048)),
                       n_outputs_max=np_ if tool == "server" else 0,
                       repack=True,  # x86 with AVX2
                       type_k=flag("-ctk", "f16"), type_v=flag("-ctv", "f16"),
                       swa_full="--swa-full" in flags, mmap=flag("-lm", "auto") in ("auto", "mmap", "mmap+mlock"))
        b = parsed["buffers_mib"]
        meas = OrderedDict()
        meas["weights_mib"] = sum(v for k, v in b.items() if k.endswith(" model") and "REPACK" not in k)
        meas["repack_mib"] = sum(v for k, v in b.items() if k.endswith(" model") and "REPACK" in k)
        meas["kv_mib"] = sum(v for k, v in b.items() if " KV " in k)
        meas["output_mib"] = sum(v for k, v in b.items() if k.endswith(" output"))
        meas["compute_mib"] = sum(v for k, v in b.items() if k.endswith(" compute"))
        meas["total_mib"] = sum(meas.values())
        meas["total_without_repack_mib"] = meas["total_mib"] - meas["repack_mib"]

        def err(e, mv):
            return None if not mv else round(100.0 * (e - mv) / mv, 2)

        case["estimate"] = OrderedDict((k, (round(v, 3) if isinstance(v, float) else v)) for k, v in est.items()
                                       if k != "compute_terms_mib")
        case["estimate"]["compute_terms_mib"] = {k: round(v, 3) for k, v in est["compute_terms_mib"].items()}
        case["measured_components_mib"] = OrderedDict((k, round(v, 2)) for k, v in meas.items())
        case["estimate_error_pct"] = OrderedDict([
            ("weights", err(est["weights_mib"], meas["weights_mib"])),
            ("repack", err(est["repack_mib"], meas["repack_mib"])),
            ("kv", err(est["kv_mib"], meas["kv_mib"])),
            ("output", err(est["output_mib"], meas["output_mib"])),
            ("compute", err(est["compute_mib"], meas["compute_mib"])),
            ("total", err(est["total_mib"], meas["total_mib"])),
            ("total_without_repack", err(est["total_without_repack_mib"], meas["total_without_repack_mib"])),
        ])
        result["cases"].append(case)

    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    # markdown table on stdout
    print("| case | tool | ctx | np | FA | kvu | CPU_Mapped | CPU_REPACK | KV | output | compute | total | est. total | err % | est. compute | err % |")
    print("|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in result["cases"]:
        mc = c["measured_components_mib"]
        e = c["estimate"]
        ep = c["estimate_error_pct"]
        print("| %s | %s | %d | %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %+.2f | %.2f | %+.2f |" % (
            c["id"], c["tool"].replace("llama-", ""), c["requested_ctx"], c["parallel"],
            "on" if c["flash_attn"] == "enabled" else "off", "yes" if c["kv_unified"] == "true" else "no",
            mc["weights_mib"], mc["repack_mib"], mc["kv_mib"], mc["output_mib"], mc["compute_mib"], mc["total_mib"],
            e["total_mib"], ep["total"], e["compute_mib"], ep["compute"]))


if __name__ == "__main__":
    main()
