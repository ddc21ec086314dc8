#!/usr/bin/env bash
# The decode threads' scheduling, A/B on one running moat serve: one moat serve and one
# llama-server (--parallel 1 / -np 1, 2 threads, the same model) up side by side; for each
# variant in turn, ROUNDS rounds (default 2), bench/sched_attr.py sets moat's decode threads
# (named moat-llamacpp) to it, then bench/paired_gaps.py compares the gaps between streamed
# tokens of llama-server and moat in BLOCKS blocks (default 10). With CONTENTION=1 (the
# default) each round then runs one stream of 6 requests × 64 tokens (serve_load.py) on moat
# in each variant and on llama-server, each beside two busy `yes` processes. One JSON line per
# result, tagged cfg (the variant, or llama) and round.
#
#   bench/sched_ab.sh OUT.jsonl [NAME=POLICY:NICE:SLICE_US ...]
#
# Variants default to "slice30ms=0:0:30000 kernel=0:0:0" (moat's default slice and the
# kernel's); POLICY 0 is SCHED_OTHER, 3 SCHED_BATCH. MOAT_BIN, PEER_BIN, MODEL_FILE as for
# bench/engine.sh. Servers listen on 127.0.0.1 and are stopped by their PIDs, the busy
# processes too.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1; shift
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(slice30ms=0:0:30000 kernel=0:0:0)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_paths "$here"
MOAT_HOME=$(mktemp -d)
export MOAT_HOME
pids=(); hogs=()
trap 'kill "${hogs[@]}" "${pids[@]}" 2>/dev/null; rm -rf "$MOAT_HOME"' EXIT
"$moat" pull -q "$model" --name smollm2 >/dev/null

mport=$(free_port)
"$moat" serve smollm2 --host 127.0.0.1 --port "$mport" --parallel 1 --ctx 2048 --threads 2 \
  >/dev/null 2>&1 &
mpid=$!; pids+=("$mpid")
lport=$(free_port)
LD_LIBRARY_PATH=$peer "$peer/llama-server" -m "$model" --host 127.0.0.1 --port "$lport" \
  -t 2 -tb 2 -np 1 -c 2048 --jinja -a smollm2:latest --no-webui >/dev/null 2>&1 &
lpid=$!; pids+=("$lpid")
wait_up "$mport" "$mpid" && wait_up "$lport" "$lpid" || { echo "a server did not start" >&2; exit 1; }
# The first decode starts ggml's pool threads, which sched_attr.py must find.
python3 "$here/serve_load.py" load --url "http://127.0.0.1:$mport" --requests 2 --max-tokens 16 >/dev/null
python3 "$here/serve_load.py" load --url "http://127.0.0.1:$lport" --requests 2 --max-tokens 16 >/dev/null

apply() { # NAME=POLICY:NICE:SLICE_US
  local spec=${1#*=}
  IFS=: read -r policy nice slice <<<"$spec"
  python3 "$here/sched_attr.py" --pid "$mpid" --policy "$policy" --nice "$nice" --slice-us "$slice"
}

busy_stream() { # PORT CFG ROUND
  hogs=()
  yes >/dev/null & hogs+=($!)
  yes >/dev/null & hogs+=($!)
  timeout 300 python3 "$here/serve_load.py" load --url "http://127.0.0.1:$1" --concurrency 1 \
    --requests 6 --max-tokens 64 --tag "cfg=$2" --tag "round=$3" --tag "background=busy2" >>"$out"
  kill "${hogs[@]}"; hogs=()
}

for round in $(seq 1 "${ROUNDS:-2}"); do
  for v in "${variants[@]}"; do
    apply "$v" || exit 1
    python3 "$here/paired_gaps.py" --server "llama=http://127.0.0.1:$lport" \
      --server "moat=http://127.0.0.1:$mport" --blocks "${BLOCKS:-10}" \
      --tag "cfg=${v%%=*}" --tag "round=$round" >>"$out"
  done
  [ "${CONTENTION:-1}" = 1 ] || continue
  for v in "${variants[@]}"; do
    apply "$v" || exit 1
    busy_stream "$mport" "${v%%=*}" "$round"
  done
  busy_stream "$lport" llama "$round"
done
