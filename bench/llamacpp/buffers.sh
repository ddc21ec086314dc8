#!/usr/bin/env bash
# Load each test model with llama.cpp's own llama-server on CPU, for a few
# (context, parallel) settings, and record the memory buffers llama.cpp reports
# (model / KV / output / compute) plus the hyperparameters it prints.
#
# Ground truth for `moat show`'s memory estimate. Writes
#   bench/results/llamacpp-buffers.json
# and keeps the full logs under $MOAT_BENCH_CACHE/logs/buffers-<version>/.
#
# Needs: bench/llamacpp/build.sh to have run (it is invoked if the binaries are
# missing), the models in $MOAT_TESTMODELS (default ~/.cache/testmodels).
#
# Each case: start llama-server with -lv 4 (the default verbosity 3 hides
# llama.cpp's own info lines), wait until it logs "listening on", kill it by
# PID (it then prints its memory breakdown table and exits). A few cases use
# llama-completion -n 1 instead, which exits by itself. Threads: -t 2;
# batch/ubatch: llama.cpp defaults (2048/512) unless the case sets -b/-ub; KV
# type f16 (default) unless -ctk/-ctv; flash attention "auto" (the default,
# resolves to enabled on CPU) unless the case says "-fa off";
# the fit step (-fit, default on) is left at its default - on a CPU-only build
# it has no GPU to fit to and changes nothing it was told explicitly (-c, -np).
#
# Env: CASES_FILTER=regex  run only cases whose id matches (default: all); the
#                           JSON still lists every case that has a log
#      REUSE_LOGS=1         do not rerun a case whose earlier run succeeded
#      PORT_BASE=N          first port to try (default 18731)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${MOAT_BENCH_CACHE:-$HOME/.cache/moat-bench}"
MODELS="${MOAT_TESTMODELS:-$HOME/.cache/testmodels}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
BIN="$CACHE/llama.cpp-$VERSION/build/bin"
LOGDIR="$CACHE/logs/buffers-$VERSION"
OUT="$REPO/bench/results/llamacpp-buffers.json"
PORT="${PORT_BASE:-18731}"
FILTER="${CASES_FILTER:-.}"
TIMEOUT_S=180

if [ ! -x "$BIN/llama-server" ]; then
    BIN="$("$HERE/build.sh" | tail -n 1)"
fi
mkdir -p "$LOGDIR" "$(dirname "$OUT")"

declare -A MODEL_FILE=(
    [smollm2]=smollm2-135m-instruct-q4_1.gguf
    [qwen]=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
    [gemma]=gemma-3-270m-q4_k_m.gguf
)
declare -A MODEL_BYTES=(
    [smollm2]=98362432
    [qwen]=491400064
    [gemma]=253113024
)

# case id | tool | model | total ctx (-c) | parallel (-np) | extra flags
# tool "server": llama-server (the primary peer). tool "completion":
# llama-completion -n 1 -p hi -no-cnv, which reserves the compute graph for
# n_outputs = n_ubatch logits rows instead of the server's n_parallel rows.
CASES=()
for m in smollm2 qwen gemma; do
    CASES+=("$m.c4096.np1|server|$m|4096|1|")
    CASES+=("$m.c8192.np1|server|$m|8192|1|")
    CASES+=("$m.c8192.np4|server|$m|8192|4|")
    CASES+=("$m.c8192.np4.kvu|server|$m|8192|4|--kv-unified")
    if [ "$m" = smollm2 ]; then
        # SmolLM2's n_ctx_train is 8192: no 32768 case
        CASES+=("$m.c4096.np1.fa-off|server|$m|4096|1|-fa off")
        CASES+=("$m.c8192.np1.fa-off|server|$m|8192|1|-fa off")
        CASES+=("$m.c8192.np4.fa-off|server|$m|8192|4|-fa off")
    else
        CASES+=("$m.c32768.np1|server|$m|32768|1|")
        CASES+=("$m.c4096.np1.fa-off|server|$m|4096|1|-fa off")
        CASES+=("$m.c32768.np1.fa-off|server|$m|32768|1|-fa off")
        CASES+=("$m.c8192.np4.fa-off|server|$m|8192|4|-fa off")
    fi
    # a non-default ubatch, to see how the compute buffer scales with it
    CASES+=("$m.c8192.np1.ub256|server|$m|8192|1|-ub 256")
    # odd sizes, to see the padding of n_ctx to 256 and of n_ctx_seq per stream
    CASES+=("$m.c5000.np3|server|$m|5000|3|")
    CASES+=("$m.completion.c4096.np1|completion|$m|4096|1|")
    CASES+=("$m.completion.c4096.np1.fa-off|completion|$m|4096|1|-fa off")
done
# held-out settings: not used to fit the compute-buffer widths in the README
CASES+=("heldout.qwen.c16384.np2.ub1024|server|qwen|16384|2|-ub 1024")
CASES+=("heldout.qwen.c8192.np1.q8kv|server|qwen|8192|1|-ctk q8_0 -ctv q8_0")
CASES+=("heldout.qwen.c12000.np2.fa-off.b256|server|qwen|12000|2|-fa off -b 256 -ub 256")
CASES+=("heldout.smollm2.c8192.np2.q4kv|server|smollm2|8192|2|-ctk q4_0 -ctv q4_0")
CASES+=("heldout.smollm2.c6000.np8.kvu|server|smollm2|6000|8|--kv-unified")
CASES+=("heldout.gemma.c32768.np8|server|gemma|32768|8|")
CASES+=("heldout.gemma.c12000.np2.kvu|server|gemma|12000|2|--kv-unified")
CASES+=("heldout.gemma.c8192.np1.swa-full|server|gemma|8192|1|--swa-full")
CASES+=("heldout.gemma.c16384.np2.fa-off.ub1024|server|gemma|16384|2|-fa off -ub 1024")
CASES+=("heldout.gemma.completion.c8192.np1.ub256|completion|gemma|8192|1|-ub 256")
CASES+=("heldout.gemma.c4096.np1.no-mmap|server|gemma|4096|1|-lm none")
CASES+=("heldout.qwen.c4096.np1.no-mmap|server|qwen|4096|1|-lm none")

# --- wait for the models (a background job may still be downloading them) ---
for m in "${!MODEL_FILE[@]}"; do
    f="$MODELS/${MODEL_FILE[$m]}"
    for _ in $(seq 1 360); do
        sz=$(stat -c %s "$f" 2>/dev/null || echo 0)
        [ "$sz" = "${MODEL_BYTES[$m]}" ] && break
        sleep 5
    done
    sz=$(stat -c %s "$f" 2>/dev/null || echo 0)
    [ "$sz" = "${MODEL_BYTES[$m]}" ] || { echo "model $f incomplete ($sz bytes)" >&2; exit 1; }
done

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

SERVER_PID=""
cleanup() { if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

"$BIN/llama-server" --version > "$LOGDIR/version.txt" 2>&1 || true

for c in "${CASES[@]}"; do
    IFS='|' read -r id tool m ctx np extra <<<"$c"
    [[ "$id" =~ $FILTER ]] || continue
    log="$LOGDIR/$id.log"
    meta="$LOGDIR/$id.meta"
    if [ "${REUSE_LOGS:-0}" = 1 ] && [ -f "$meta" ] && [ "$(cut -f7 "$meta")" = ok ]; then
        echo ">> $id: reusing $log" >&2
        continue
    fi
    if [ "$tool" = server ]; then
        while ! port_free "$PORT"; do PORT=$((PORT + 1)); done
        # shellcheck disable=SC2206
        cmd=("$BIN/llama-server" -m "$MODELS/${MODEL_FILE[$m]}" -c "$ctx" -np "$np" -t 2 -lv 4
             --host 127.0.0.1 --port "$PORT" $extra)
        PORT=$((PORT + 1))
    else
        # shellcheck disable=SC2206
        cmd=("$BIN/llama-completion" -m "$MODELS/${MODEL_FILE[$m]}" -c "$ctx" -np "$np" -t 2 -lv 4
             -n 1 -p hi -no-cnv $extra)
    fi
    echo ">> $id: ${cmd[*]}" >&2
    start=$(date +%s%N)
    "${cmd[@]}" > "$log" 2>&1 < /dev/null &
    SERVER_PID=$!
    status=timeout
    for _ in $(seq 1 $((TIMEOUT_S * 5))); do
        if [ "$tool" = server ] && grep -q "listening on" "$log"; then status=ok; break; fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            if wait "$SERVER_PID"; then status=ok; else status=exited; fi
            SERVER_PID=""
            break
        fi
        sleep 0.2
    done
    secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
    echo "   $status in ${secs}s" >&2
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$tool" "$m" "$ctx" "$np" "$extra" "$status" "$secs" "${cmd[*]}" > "$meta"
done

# every case of the list that has a run on record, in list order
CASE_LIST="$LOGDIR/cases.tsv"
: > "$CASE_LIST"
for c in "${CASES[@]}"; do
    id="${c%%|*}"
    if [ -f "$LOGDIR/$id.meta" ]; then cat "$LOGDIR/$id.meta" >> "$CASE_LIST"; fi
done

python3 "$HERE/parse_buffers.py" \
    --cases "$CASE_LIST" --logdir "$LOGDIR" --cache "$CACHE" --version "$VERSION" \
    --models "$MODELS" --out "$OUT"
echo "$OUT"
