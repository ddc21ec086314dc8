#!/usr/bin/env bash
# Load on a GPU: `moat serve` with its defaults, `moat serve` with the host prompt cache on
# (--cache-tokens), and llama.cpp's llama-server when one is given, each with 16 sequences of
# 2,048 tokens and every layer on the GPU; serve_load.py at 1, 8 and 16 streams (unique
# prompts, 128 tokens each, max(2, 32/C) requests per stream). Writes one JSON line per run.
#
#   bench/gpu/load.sh MOAT_BIN MODEL.gguf OUT.jsonl [LLAMA_SERVER_BIN]
#
# ROUNDS (default 1) repeats the whole set, servers in turn. Servers listen on 127.0.0.1 and
# are stopped by their PIDs.
set -euo pipefail
bin=$1 model=$2 out=$3 peer=${4:-}
here=$(cd "$(dirname "$0")/.." && pwd)
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
MOAT_HOME=$home "$bin" pull "$model" --name smollm2:135m --quiet >/dev/null

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/../lib.sh"

servers=(moat moat-hostcache)
[ -n "$peer" ] && servers+=(llama-server)
for round in $(seq 1 "${ROUNDS:-1}"); do
  for server in "${servers[@]}"; do
    port=$(free_port)
    case $server in
      moat) cmd=("$bin" serve smollm2:135m --port "$port" --parallel 16 --ctx 2048) ;;
      moat-hostcache) cmd=("$bin" serve smollm2:135m --port "$port" --parallel 16 --ctx 2048
                           --cache-tokens 65536) ;;
      llama-server) cmd=("$peer" -m "$model" --host 127.0.0.1 --port "$port" -np 16 -c 32768
                         -ngl 99 --jinja -a smollm2:135m --no-webui) ;;
    esac
    MOAT_HOME=$home "${cmd[@]}" >"$out.$server.log" 2>&1 &
    pid=$!
    if ! wait_up "$port" "$pid"; then
      echo "$server did not start"; tail -5 "$out.$server.log"; kill "$pid" 2>/dev/null; continue
    fi
    for c in 1 8 16; do
      python3 "$here/serve_load.py" load --url "http://127.0.0.1:$port" --model smollm2:135m \
        --concurrency "$c" --requests $(( 32 / c > 2 ? 32 / c : 2 )) --max-tokens 128 \
        --tag "server=$server" --tag "round=$round" >>"$out"
      tail -1 "$out" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["server"], r["concurrency"], round(r["agg_tok_s"]), "tok/s  TTFT p50", r["ttft_p50_ms"], "ms  ITL p50", r["itl_p50_ms"], "ms  errors", len(r["errors"]))'
    done
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  done
done
