#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: moat's CUDA build (scripts/build-cuda.sh) against llama.cpp's
# own CUDA llama-server and llama-bench (bench/gpu/build-peer.sh), through bench/engine.sh:
# every layer on the GPU on both sides, the same model, thread count and parallel sequences,
# runs alternated, REPS rounds (default 5), medians.
#
#   bench/gpu/peer.sh MOAT_BIN PEER_BIN_DIR MODEL.gguf OUT_DIR
#
# MOAT_BIN's shared libraries (libllama.so.0, libggml*.so.0) are looked for beside it and in
# lib/ beside it. libcudart.so.13, libcublas.so.13 and libcublasLt.so.13 are looked for under
# /usr/local/cuda*, /opt and /usr, unless LD_LIBRARY_PATH already finds them.
# LIMIT (seconds, default 3600) stops the benchmark early, keeping the rounds done so far.
# Defaults: THREADS=8, CONC="1 4 8 16" on as many slots (MAXPAR=16), PHASES="load prefix shared
# bench". OUT_DIR gets results.jsonl, summary.md, commands.txt, env.txt and logs.tar.gz (the
# servers' logs), no more: the rest (the store with its copy of the model) stays in a
# temporary folder that is removed at the end.
set -euo pipefail
moat=$(realpath "$1") peer=$(realpath "$2") model=$(realpath "$3") out=$4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

libs="$(dirname "$moat"):$(dirname "$moat")/lib"
if ! ldconfig -p 2>/dev/null | grep -q 'libcublasLt.so.13'; then
  found=$(find /usr/local/cuda* /opt /usr -name 'libcublasLt.so.13*' 2>/dev/null | head -1 || true)
  [ -n "$found" ] && libs="$libs:$(dirname "$found")"
  found=$(find /usr/local/cuda* /opt /usr -name 'libcudart.so.13*' 2>/dev/null | head -1 || true)
  [ -n "$found" ] && libs="$libs:$(dirname "$found")"
fi
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  ldd "$moat" | grep -E 'cuda|cublas|llama|ggml' || true
  ldd "$peer/llama-server" | grep -E 'cuda|cublas' || true
} >"$out/gpu.txt" 2>&1

status=0
MOAT_BIN=$moat PEER_BIN=$peer MODEL_FILE=$model OUT=$work MOAT_HOME=$work/home \
  THREADS=${THREADS:-8} MAXPAR=${MAXPAR:-16} CONC=${CONC:-"1 4 8 16"} C16=0 \
  PEER_ARGS="-ngl 99" PEER_BENCH_ARGS="-ngl 99" SHARED_ARGS="--a-tokens 512 --a-margin 0.1" \
  PHASES=${PHASES:-"load prefix shared bench"} REPS=${REPS:-5} \
  timeout -k 10 "${LIMIT:-3600}" "$here/../engine.sh" || status=$?

for f in results.jsonl commands.txt env.txt; do
  [ -f "$work/$f" ] && cp "$work/$f" "$out/"
done
[ -f "$work/results.jsonl" ] && python3 "$here/../engine_summary.py" "$work/results.jsonl" >"$out/summary.md"
(cd "$work" && tar czf "$out/logs.tar.gz" ./*.log 2>/dev/null) || true
grep -h "ready (" "$work"/moat-*.log 2>/dev/null | head -3 >>"$out/gpu.txt" || true
exit $status
