#!/usr/bin/env bash
# Engine and server benchmark: `moat serve` against llama.cpp's own llama-server (and
# llama-bench), same model, same machine, same thread count, runs alternated.
#
#   bench/engine.sh                      # all phases, REPS=5
#   REPS=3 PHASES="load prefix" bench/engine.sh
#
# Phases (PHASES, default "load prefix bench"):
#   load    for each C in $CONC (default "1 4 8"): one moat serve (--parallel min(C,8)
#           --ctx 2048) and one llama-server (-np min(C,8) -c min(C,8)*2048 --jinja) up side by
#           side; a warm-up, then REPS rounds, each running bench/serve_load.py on one server
#           and then the other (the order flips every round): streaming chat, max_tokens 64,
#           temperature 0, C concurrent workers x max(2, SAMPLES/C) requests. At C=1 each round
#           also runs the `pp` mode (3 requests, ~512-token distinct prompts, max_tokens 1). With
#           C16=1 the C=8 servers also get a 16-worker load (queueing behind 8 slots), SAMPLES/16
#           requests per worker. After the rounds the peak RSS (VmHWM) of both servers is
#           recorded.
#   prefix  moat serve --parallel 1 --ctx 2048, the same with --no-prefix-reuse, and
#           llama-server -np 1 -c 2048 (default cache_prompt); REPS rounds of serve_load.py's
#           `prefix` mode (warm-up + 8 sequential requests sharing a ~1,000-token system prompt).
#   shared  prefix sharing between running sequences, at --parallel 2: moat serve (one KV cache
#           per sequence, the default), the same with --kv-unified, the same with
#           --no-prefix-reuse, and llama-server -np 2 -c 4096; REPS rounds of serve_load.py's
#           `shared` mode (4 pairs: A generates with a fresh ~1,000-token system prompt, B
#           with the same one is sent after A's first token) on each in turn.
#   burst   the arrival window, at --parallel 8: moat serve (the default window), the same with
#           --arrival-window 0, and llama-server -np 8 -c 16384; REPS rounds, the order rotated
#           each round, each running serve_load.py's `load` mode with 8 workers x 6 requests
#           and then 16 workers x 3 on each server (unique prompts unless REPEAT=1; the 8-worker
#           run first, so a moat sees 16 at once right after 8).
#   gaps    one stream: moat serve and llama-server at --parallel 1 / -np 1, up side by side;
#           bench/paired_gaps.py compares their gaps between tokens in GAP_BLOCKS paired blocks
#           (default 30) of 4 requests each, and gives the ratios of p50 / p95 / p99 with 95 %
#           intervals (the run-to-run spread of a 5-round load run hides a 10 % difference in
#           a tail).
#   paired  for each C in $CONC (and 16 with C16=1): moat serve and llama-server at --parallel
#           min(C,MAXPAR), up side by side; bench/paired_gaps.py --concurrency C compares their
#           times to first token and gaps between tokens in PAIRED_BLOCKS (default 16) paired
#           blocks, each PAIRED_BURSTS (default 2) bursts of C streams of 64 tokens per server
#           after one uncounted burst, with 95 % intervals: the ratios the load phase's
#           5-round medians leave inside the machine's drift, above all its TTFT p95, which at
#           C streams rests on the slowest few bursts of a run.
#   bench   llama-bench's pp512 and tg128 at $THREADS threads: REPS rounds, each running
#           llama-bench -r BENCH_R (default 3) on the peer build and moat's engine_bench example
#           with the same arguments (ENGINE_BENCH, default examples/engine_bench beside MOAT_BIN:
#           `cargo build --release -p moat-engine-llamacpp --example engine_bench`), the order
#           flipping every round; no HTTP on either side.
#
# On a GPU: MAXPAR (default 8) caps the load phase's parallel sequences (16 measures 16 streams
# on 16 slots), MOAT_ARGS and PEER_ARGS are extra arguments for every moat serve and
# llama-server (e.g. PEER_ARGS="-ngl 99"), SHARED_ARGS are extra arguments for serve_load.py's
# shared mode (a GPU finishes A's 256 tokens too soon: "--a-tokens 512 --a-margin 0.1"), and PEER_BIN points at bench/gpu/build-peer.sh's
# build (bench/gpu/peer.sh runs it so).
#
# SAMPLES (default 48) is the number of requests, so of TTFT samples, in one run. With 16, a
# run's TTFT p95 lay between its two slowest requests (one of them often the first after the
# other server's turn, with cold caches); with 48 it lies between the 45th and 46th of 48.
#
# REPEAT=1 makes the load phase send the same prompts in every round (a prompt cache serves
# them) instead of unique ones.
#
# Results: one JSON object per run in $OUT/results.jsonl (default /tmp/moat-engine-bench-*);
# bench/engine_summary.py turns that into the tables in docs/PERFORMANCE.md.
# Servers listen on 127.0.0.1 only and are stopped by their PID.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
REPS="${REPS:-5}"
CONC="${CONC:-1 4 8}"
C16="${C16:-1}"
SAMPLES="${SAMPLES:-48}"
PHASES="${PHASES:-load prefix bench}"
THREADS="${THREADS:-2}"
MAXPAR="${MAXPAR:-8}"
MOAT_ARGS="${MOAT_ARGS:-}"
PEER_ARGS="${PEER_ARGS:-}"
PEER_BENCH_ARGS="${PEER_BENCH_ARGS:-}"
SHARED_ARGS="${SHARED_ARGS:-}"
BENCH_R="${BENCH_R:-3}"
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
bench_paths "$HERE"
MOAT=$moat PEER_BIN=$peer MODEL_FILE=$model
ENGINE_BENCH="${ENGINE_BENCH:-$(dirname "$MOAT")/examples/engine_bench}"
PY="${PY:-python3}"
OUT="${OUT:-$(mktemp -d -t moat-engine-bench-XXXXXX)}"
PORT_MOAT="${PORT_MOAT:-18801}"
PORT_MOAT_NR="${PORT_MOAT_NR:-18802}"
PORT_LLAMA="${PORT_LLAMA:-18803}"
PORT_MOAT_KVU="${PORT_MOAT_KVU:-18804}"
PORT_MOAT_NW="${PORT_MOAT_NW:-18805}"
RES="$OUT/results.jsonl"
mkdir -p "$OUT"
export MOAT_HOME="${MOAT_HOME:-$OUT/home}"

log() { echo "[engine.sh $(date +%T)] $*" >&2; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

if [ ! -d "$MOAT_HOME/models" ] || ! "$MOAT" list 2>/dev/null | grep -q smollm2; then
    "$MOAT" pull -q "$MODEL_FILE" --name smollm2 >/dev/null
fi

start_moat() { # port parallel ctx [extra...]; sets SPID
    local port=$1 par=$2 ctx=$3; shift 3
    "$MOAT" serve smollm2 --host 127.0.0.1 --port "$port" --parallel "$par" --ctx "$ctx" \
        --threads "$THREADS" "$@" $MOAT_ARGS >"$OUT/moat-$port-$par$*.log" 2>&1 &
    SPID=$!; PIDS+=("$SPID")
    echo "$MOAT serve smollm2 --host 127.0.0.1 --port $port --parallel $par --ctx $ctx --threads $THREADS $* $MOAT_ARGS" >>"$OUT/commands.txt"
    wait_up "$port" "$SPID" || { log "server on :$port did not come up"; return 1; }
}

start_llama() { # port np; sets SPID
    local port=$1 np=$2
    local args=(-m "$MODEL_FILE" --host 127.0.0.1 --port "$port" -t "$THREADS" -tb "$THREADS"
                -np "$np" -c $((np * 2048)) --jinja -a smollm2:latest --no-webui $PEER_ARGS)
    LD_LIBRARY_PATH="$PEER_BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PEER_BIN/llama-server" "${args[@]}" >"$OUT/llama-$port-$np.log" 2>&1 &
    SPID=$!; PIDS+=("$SPID")
    echo "$PEER_BIN/llama-server ${args[*]}" >>"$OUT/commands.txt"
    wait_up "$port" "$SPID" || { log "server on :$port did not come up"; return 1; }
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

hwm() { # server pid parallel
    local kb
    kb=$(awk '/VmHWM/ {print $2}' "/proc/$2/status")
    # GPU memory the process holds now, where nvidia-smi can say (null elsewhere)
    gpu=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null \
          | awk -F', *' -v p="$2" '$1 == p {print $2}' || true)
    echo "{\"mode\": \"hwm\", \"server\": \"$1\", \"parallel\": $3, \"vmhwm_kib\": $kb, \"gpu_mib\": ${gpu:-null}}" >>"$RES"
}

load() { # server port C requests rep
    local repeat=()
    [ "${REPEAT:-0}" = 1 ] && repeat=(--repeat --tag prompts=repeated)
    "$PY" "$HERE/serve_load.py" load --url "http://127.0.0.1:$2" --concurrency "$3" \
        --requests "$4" --max-tokens 64 --tag "server=$1" --tag "rep=$5" "${repeat[@]}" >>"$RES"
}

pp() { # server port rep
    "$PY" "$HERE/serve_load.py" pp --url "http://127.0.0.1:$2" --requests 3 \
        --tag "server=$1" --tag "rep=$3" >>"$RES"
}

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "moat: $("$MOAT" --version 2>/dev/null || echo '?'), git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)"
    echo "peer: $PEER_BIN ($(cat "$PEER_BIN/../../llama-commit.txt" 2>/dev/null || echo '?'))"
} >"$OUT/env.txt"

for phase in $PHASES; do
  case "$phase" in
  load)
    for c in $CONC; do
        par=$(( c < MAXPAR ? c : MAXPAR ))
        # SAMPLES requests per run (at least 2 per worker), so that a run's TTFT p95 does not
        # rest on its two slowest requests.
        per_worker=$(( SAMPLES / c > 2 ? SAMPLES / c : 2 ))
        per_worker16=$(( SAMPLES / 16 > 1 ? SAMPLES / 16 : 1 ))
        log "load C=$c (parallel $par, $per_worker requests per worker)"
        start_moat "$PORT_MOAT" "$par" 2048; MP=$SPID
        start_llama "$PORT_LLAMA" "$par"; LP=$SPID
        # warm-up (not recorded)
        "$PY" "$HERE/serve_load.py" load --url "http://127.0.0.1:$PORT_MOAT" --concurrency "$c" --requests 1 --max-tokens 16 >/dev/null
        "$PY" "$HERE/serve_load.py" load --url "http://127.0.0.1:$PORT_LLAMA" --concurrency "$c" --requests 1 --max-tokens 16 >/dev/null
        for rep in $(seq 1 "$REPS"); do
            if [ $((rep % 2)) -eq 1 ]; then order="moat llama"; else order="llama moat"; fi
            for s in $order; do
                port=$PORT_MOAT; [ "$s" = llama ] && port=$PORT_LLAMA
                load "$s" "$port" "$c" "$per_worker" "$rep"
                [ "$c" -eq 1 ] && pp "$s" "$port" "$rep"
                if [ "$c" -eq 8 ] && [ "$C16" = 1 ]; then load "$s" "$port" 16 "$per_worker16" "$rep"; fi
            done
        done
        hwm moat "$MP" "$par"; hwm llama "$LP" "$par"
        stop "$MP"; stop "$LP"
    done
    ;;
  gaps)
    log "gaps (one stream, ${GAP_BLOCKS:-30} paired blocks)"
    start_moat "$PORT_MOAT" 1 2048; MP=$SPID
    start_llama "$PORT_LLAMA" 1; LP=$SPID
    "$PY" "$HERE/token_gaps.py" --url "http://127.0.0.1:$PORT_MOAT" --requests 2 >/dev/null
    "$PY" "$HERE/token_gaps.py" --url "http://127.0.0.1:$PORT_LLAMA" --requests 2 >/dev/null
    "$PY" "$HERE/paired_gaps.py" --server "llama=http://127.0.0.1:$PORT_LLAMA" \
        --server "moat=http://127.0.0.1:$PORT_MOAT" --blocks "${GAP_BLOCKS:-30}" --requests 4 \
        2>/dev/null >>"$RES"
    stop "$MP"; stop "$LP"
    ;;
  paired)
    cs="$CONC"; [ "$C16" = 1 ] && cs="$cs 16"
    for c in $cs; do
        par=$(( c < MAXPAR ? c : MAXPAR ))
        log "paired C=$c (parallel $par, ${PAIRED_BLOCKS:-16} blocks)"
        start_moat "$PORT_MOAT" "$par" 2048; MP=$SPID
        start_llama "$PORT_LLAMA" "$par"; LP=$SPID
        "$PY" "$HERE/paired_gaps.py" --server "llama=http://127.0.0.1:$PORT_LLAMA" \
            --server "moat=http://127.0.0.1:$PORT_MOAT" --blocks "${PAIRED_BLOCKS:-16}" \
            --requests "${PAIRED_BURSTS:-2}" --concurrency "$c" --warm 1 --max-tokens 64 \
            2>/dev/null >>"$RES"
        stop "$MP"; stop "$LP"
    done
    ;;
  prefix)
    log "prefix"
    start_moat "$PORT_MOAT" 1 2048; MP=$SPID
    start_moat "$PORT_MOAT_NR" 1 2048 --no-prefix-reuse; NP=$SPID
    start_llama "$PORT_LLAMA" 1; LP=$SPID
    for rep in $(seq 1 "$REPS"); do
        for s in moat moat-noreuse llama; do
            case $s in moat) port=$PORT_MOAT;; moat-noreuse) port=$PORT_MOAT_NR;; llama) port=$PORT_LLAMA;; esac
            "$PY" "$HERE/serve_load.py" prefix --url "http://127.0.0.1:$port" --requests 8 \
                --max-tokens 8 --tag "server=$s" --tag "rep=$rep" >>"$RES"
        done
    done
    stop "$MP"; stop "$NP"; stop "$LP"
    ;;
  shared)
    log "shared"
    start_moat "$PORT_MOAT" 2 2048; MP=$SPID
    start_moat "$PORT_MOAT_KVU" 2 2048 --kv-unified; UP=$SPID
    start_moat "$PORT_MOAT_NR" 2 2048 --no-prefix-reuse; NP=$SPID
    start_llama "$PORT_LLAMA" 2; LP=$SPID
    for rep in $(seq 1 "$REPS"); do
        for s in moat moat-kv-unified moat-noreuse llama; do
            case $s in
                moat) port=$PORT_MOAT;; moat-kv-unified) port=$PORT_MOAT_KVU;;
                moat-noreuse) port=$PORT_MOAT_NR;; llama) port=$PORT_LLAMA;;
            esac
            "$PY" "$HERE/serve_load.py" shared --url "http://127.0.0.1:$port" --requests 4 $SHARED_ARGS \
                --max-tokens 8 --tag "server=$s" --tag "rep=$rep" >>"$RES"
        done
    done
    stop "$MP"; stop "$UP"; stop "$NP"; stop "$LP"
    ;;
  burst)
    log "burst"
    start_moat "$PORT_MOAT" 8 2048; MP=$SPID
    start_moat "$PORT_MOAT_NW" 8 2048 --arrival-window 0; WP=$SPID
    start_llama "$PORT_LLAMA" 8; LP=$SPID
    servers=(moat moat-nowindow llama)
    repeat=()
    [ "${REPEAT:-0}" = 1 ] && repeat=(--repeat --tag prompts=repeated)
    for s in "${servers[@]}"; do
        case $s in moat) port=$PORT_MOAT;; moat-nowindow) port=$PORT_MOAT_NW;; llama) port=$PORT_LLAMA;; esac
        "$PY" "$HERE/serve_load.py" load --url "http://127.0.0.1:$port" --concurrency 8 --requests 1 --max-tokens 16 >/dev/null
    done
    for rep in $(seq 1 "$REPS"); do
        for i in 0 1 2; do
            s=${servers[$(( (i + rep) % 3 ))]}
            case $s in moat) port=$PORT_MOAT;; moat-nowindow) port=$PORT_MOAT_NW;; llama) port=$PORT_LLAMA;; esac
            for cr in 8:6 16:3; do
                "$PY" "$HERE/serve_load.py" load --url "http://127.0.0.1:$port" \
                    --concurrency "${cr%:*}" --requests "${cr#*:}" --max-tokens 64 --tag "server=$s" --tag "rep=$rep" \
                    --tag phase=burst "${repeat[@]}" >>"$RES"
            done
        done
    done
    stop "$MP"; stop "$WP"; stop "$LP"
    ;;
  bench)
    if [ -x "$PEER_BIN/llama-bench" ]; then
        peer_bench=(env LD_LIBRARY_PATH="$PEER_BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PEER_BIN/llama-bench" -m "$MODEL_FILE" -t "$THREADS" -p 512 -n 128 -r "$BENCH_R" -o jsonl $PEER_BENCH_ARGS)
        echo "${peer_bench[*]}" >>"$OUT/commands.txt"
        if [ -x "$ENGINE_BENCH" ]; then
            moat_bench=("$ENGINE_BENCH" "$MODEL_FILE" -t "$THREADS" -p 512 -n 128 -r "$BENCH_R")
            echo "${moat_bench[*]}" >>"$OUT/commands.txt"
        else
            log "no $ENGINE_BENCH (cargo build --release -p moat-engine-llamacpp --example engine_bench); llama-bench alone"
            moat_bench=()
        fi
        # ROUND: one run of each, tagged with the round; odd rounds start with moat.
        run_peer_bench() {
            "${peer_bench[@]}" 2>/dev/null | sed "s/^{/{\"mode\": \"llama-bench\", \"round\": $1, /" >>"$RES"
        }
        run_moat_bench() {
            [ ${#moat_bench[@]} -gt 0 ] || return 0
            "${moat_bench[@]}" 2>/dev/null | sed "s/^{/{\"round\": $1, /" >>"$RES"
        }
        for r in $(seq 1 "$REPS"); do
            log "bench round $r/$REPS"
            if [ $((r % 2)) -eq 1 ]; then
                run_moat_bench "$r"; run_peer_bench "$r"
            else
                run_peer_bench "$r"; run_moat_bench "$r"
            fi
        done
    else
        log "no llama-bench in $PEER_BIN; skipped"
    fi
    ;;
  esac
done
log "results in $RES"
echo "$OUT"
