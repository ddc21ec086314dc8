#!/usr/bin/env bash
# The reference for moat-engine-llamacpp's greedy-parity test: the token ids that llama.cpp's
# own llama-server generates greedily for a fixed prompt with SmolLM2-135M-Instruct Q4_1, for
# each CPU kernel flavour our engine can be built with.
#
# Greedy output depends on the CPU kernels: this small model has near-ties (the story prompt's
# token 21 is won by 0.02 nats), and AVX2 and AVX-512 kernels differ by more than that. So the
# reference is taken from two builds of llama.cpp's tools, each with the kernel flags of one way
# of building moat-engine-llamacpp:
#   native  GGML_NATIVE=ON (AVX-512 here): bench/llamacpp/build.sh's build; matches a moat build
#           with RUSTFLAGS="-C target-cpu=native" (llama-cpp-sys-2 then sets GGML_NATIVE).
#   avx2    GGML_NATIVE=OFF with AVX, AVX2, FMA, F16C, BMI2, SSE4.2 and -march=x86-64,
#           RelWithDebInfo: the flags llama-cpp-sys-2 0.1.161 uses by default (read from its
#           CMakeCache.txt); matches a plain `cargo build --release`.
#
# Writes crates/moat-engine-llamacpp/tests/fixtures/greedy_smollm2.json: the prompt, its token
# ids (llama-server's /tokenize), and per flavour the 64 generated ids (/completion with
# return_tokens), their text, the llama.cpp version, the cmake flags and the exact requests.
#
# Needs: bench/llamacpp/build.sh (invoked when the native binaries are missing; it also unpacks
# the sources the avx2 build uses), cmake, a C++ compiler, curl, python3, and the model in
# $MOAT_TEST_MODELS (default ~/.cache/moat/test-models). The avx2 build takes about 10 minutes
# on 2 cores the first time. Each server runs on 127.0.0.1 with one slot, 2 threads and the
# prompt cache off, and is stopped by its PID.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${MOAT_BENCH_CACHE:-$HOME/.cache/moat-bench}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
JOBS="${JOBS:-2}"
MODELS="${MOAT_TEST_MODELS:-$HOME/.cache/moat/test-models}"
MODEL_FILE=smollm2-135m-instruct-q4_1.gguf
MODEL="$MODELS/$MODEL_FILE"
OUT="$REPO/crates/moat-engine-llamacpp/tests/fixtures/greedy_smollm2.json"
PORT="${PORT:-18791}"
WORK="$(mktemp -d -t greedy-reference-XXXXXX)"

log() { echo "[greedy_reference.sh] $*" >&2; }

[ -f "$MODEL" ] || { log "missing $MODEL"; exit 1; }

# --- the two builds ------------------------------------------------------------
NATIVE_BIN="$CACHE/llama.cpp-$VERSION/build/bin"
if [ ! -x "$NATIVE_BIN/llama-server" ]; then
    NATIVE_BIN="$("$HERE/build.sh" | tail -n 1)"
fi
LLAMA_SRC="$CACHE/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
LLAMA_COMMIT="$(cat "$CACHE/llama.cpp-$VERSION/llama-commit.txt")"
AVX2_BUILD="$CACHE/llama.cpp-$VERSION/build-avx2"
AVX2_FLAGS=(
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
    "-DCMAKE_C_FLAGS=-ffunction-sections -fdata-sections -fPIC -m64 -march=x86-64"
    "-DCMAKE_CXX_FLAGS=-ffunction-sections -fdata-sections -fPIC -m64 -march=x86-64"
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
    -DGGML_SSE42=ON -DGGML_AVX512=OFF -DGGML_OPENMP=ON -DGGML_CCACHE=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_LLGUIDANCE=OFF
    -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT"
)
if [ ! -x "$AVX2_BUILD/bin/llama-server" ]; then
    [ -f "$AVX2_BUILD/CMakeCache.txt" ] || cmake -S "$LLAMA_SRC" -B "$AVX2_BUILD" "${AVX2_FLAGS[@]}" >&2
    log "building the avx2 llama-server (about 10 minutes on 2 cores)"
    cmake --build "$AVX2_BUILD" --config RelWithDebInfo -j "$JOBS" --target llama-server >&2
fi
AVX2_BIN="$AVX2_BUILD/bin"

# --- one reference per build ---------------------------------------------------
PROMPT=$'<|im_start|>user\nWrite a short story about a robot.<|im_end|>\n<|im_start|>assistant\n'
json() { python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])))' "$1"; }
TOKENIZE_REQUEST="$(python3 -c 'import json,sys; print(json.dumps({"content": sys.argv[1], "add_special": True, "parse_special": True}))' "$PROMPT")"
COMPLETION_REQUEST="$(python3 -c 'import json,sys; print(json.dumps({"prompt": sys.argv[1], "n_predict": 64, "temperature": 0, "top_k": 1, "samplers": ["top_k"], "ignore_eos": True, "n_probs": 2, "return_tokens": True, "cache_prompt": False, "seed": 0}))' "$PROMPT")"
SERVER_ARGS=(--host 127.0.0.1 --port "$PORT" -np 1 -c 4096 -t 2 --no-webui)

SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT

# reference FLAVOUR BIN: runs the server from BIN, writes $WORK/FLAVOUR.{tokenize,completion,version}
reference() {
    local flavour="$1" bin="$2"
    "$bin/llama-server" -m "$MODEL" "${SERVER_ARGS[@]}" >"$WORK/$flavour.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 120); do
        if curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; then break; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$WORK/$flavour.log" >&2; exit 1; fi
        sleep 0.5
    done
    curl -sf "http://127.0.0.1:$PORT/tokenize" -H 'content-type: application/json' \
        -d "$TOKENIZE_REQUEST" >"$WORK/$flavour.tokenize"
    curl -sf "http://127.0.0.1:$PORT/completion" -H 'content-type: application/json' \
        -d "$COMPLETION_REQUEST" >"$WORK/$flavour.completion"
    "$bin/llama-server" --version 2>&1 | grep -m1 version >"$WORK/$flavour.version" || true
    stop_server
}
reference native "$NATIVE_BIN"
reference avx2 "$AVX2_BIN"

mkdir -p "$(dirname "$OUT")"
printf '%s\n' "${AVX2_FLAGS[@]}" >"$WORK/avx2.flags"
cp "$CACHE/llama.cpp-$VERSION/cmake-flags.txt" "$WORK/native.flags"
python3 - "$OUT" "$WORK" "$PROMPT" "$TOKENIZE_REQUEST" "$COMPLETION_REQUEST" \
    "llama-server -m \$MOAT_TEST_MODELS/$MODEL_FILE ${SERVER_ARGS[*]}" <<'PY'
import json, sys
out, work, prompt, tok_req, comp_req, server = sys.argv[1:]
def read(name):
    with open(f"{work}/{name}") as f:
        return f.read()
flavours = {}
prompt_tokens = None
for flavour in ("native", "avx2"):
    tokenized = json.loads(read(f"{flavour}.tokenize"))["tokens"]
    assert prompt_tokens in (None, tokenized), "the builds tokenize differently"
    prompt_tokens = tokenized
    completion = json.loads(read(f"{flavour}.completion"))
    tokens = completion["tokens"]
    assert len(tokens) == 64, f"{flavour}: expected 64 tokens, got {len(tokens)}"
    margins = [
        round(step["top_logprobs"][0]["logprob"] - step["top_logprobs"][1]["logprob"], 4)
        for step in completion["completion_probabilities"]
    ]
    flavours[flavour] = {
        "llama_cpp_version": read(f"{flavour}.version").strip(),
        "cmake_flags": read(f"{flavour}.flags").split("\n")[:-1],
        "completion_tokens": tokens,
        "completion_text": completion["content"],
        "smallest_top2_margin": min(margins),
    }
    print(f"{flavour}: {len(tokens)} tokens, smallest top-2 margin {min(margins)}: {completion['content']!r}")
fixture = {
    "about": "llama.cpp's own greedy output; regenerate with bench/llamacpp/greedy_reference.sh",
    "model": "smollm2-135m-instruct-q4_1.gguf",
    "llama_cpp_source": "llama-cpp-python 0.3.36 sdist, vendor/llama.cpp",
    "server": server,
    "tokenize_request": json.loads(tok_req),
    "completion_request": json.loads(comp_req),
    "prompt": prompt,
    "prompt_tokens": prompt_tokens,
    "references": flavours,
}
with open(out, "w") as f:
    json.dump(fixture, f, indent=1, ensure_ascii=False)
    f.write("\n")
print(f"wrote {out}")
PY
