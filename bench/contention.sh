#!/usr/bin/env bash
# Inference beside other busy processes: moat serve with --compute-nice 0 (the default) and 5,
# and llama-server, one stream each, alone and then beside two busy `yes` processes at the
# same priority as the servers (the machine's cores: 2 here). ROUNDS rounds (default 2),
# servers in turn; one JSON line per run (serve_load.py load, tags server and background).
#
#   bench/contention.sh OUT.jsonl
#
# MOAT_BIN, PEER_BIN (llama-server's folder), MODEL_FILE as for bench/engine.sh. A run that
# takes longer than LIMIT seconds (default 300) is cut and leaves no line. Servers listen on
# 127.0.0.1 and are stopped by their PIDs, the busy processes too.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_paths "$here"
MOAT_HOME=$(mktemp -d)
export MOAT_HOME
hogs=()
trap 'kill "${hogs[@]}" 2>/dev/null; rm -rf "$MOAT_HOME"' EXIT
"$moat" pull -q "$model" --name smollm2 >/dev/null

for round in $(seq 1 "${ROUNDS:-2}"); do
  for server in moat-nice0 moat-nice5 llama; do
    port=$(free_port)
    case $server in
      moat-nice*) "$moat" serve smollm2 --host 127.0.0.1 --port "$port" --parallel 1 --ctx 2048 \
                    --threads 2 --compute-nice "${server#moat-nice}" >/dev/null 2>&1 & ;;
      llama) LD_LIBRARY_PATH=$peer "$peer/llama-server" -m "$model" --host 127.0.0.1 --port "$port" \
               -t 2 -tb 2 -np 1 -c 2048 --jinja -a smollm2:latest --no-webui >/dev/null 2>&1 & ;;
    esac
    pid=$!
    if ! wait_up "$port" "$pid"; then echo "$server did not start" >&2; kill "$pid"; continue; fi
    python3 "$here/serve_load.py" load --url "http://127.0.0.1:$port" --requests 2 --max-tokens 16 >/dev/null
    for background in none busy2; do
      hogs=()
      if [ "$background" = busy2 ]; then
        yes >/dev/null & hogs+=($!)
        yes >/dev/null & hogs+=($!)
      fi
      timeout "${LIMIT:-300}" python3 "$here/serve_load.py" load --url "http://127.0.0.1:$port" \
        --concurrency 1 --requests 6 --max-tokens 64 --tag "server=$server" \
        --tag "background=$background" --tag "round=$round" >>"$out"
      [ "${#hogs[@]}" -gt 0 ] && kill "${hogs[@]}"
      hogs=()
    done
    kill "$pid"; wait "$pid" 2>/dev/null
  done
done
