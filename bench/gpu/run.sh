#!/usr/bin/env bash
# A GPU build of moat on a machine with a GPU: serves one model on the GPU (every layer, the
# default), on the GPU with --no-prefix-reuse, and on the CPU (--gpu-layers 0), from the same
# binary; runs check.py against each (the openai SDK checks, greedy texts, load at 1/8/16
# streams on the first and last) and compares the greedy texts of the GPU (no reuse) and the
# CPU. Needs python3 with the `openai` package.
#
#   bench/gpu/run.sh MOAT_BIN MODEL.gguf OUT_DIR [NAME]
#
# NO_LOAD=1 skips the load runs. OUT_DIR gets serve-MODE.log, check-MODE.json (MODE: gpu,
# gpu-exact, cpu) and summary.json. Exit 1 when a check fails or the GPU server does not say
# that it offloaded the model.
set -euo pipefail
bin=$1 model=$2 out=$3 name=${4:-smollm2:135m}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
MOAT_HOME=$home "$bin" pull "$model" --name "$name" --quiet

# shellcheck source=bench/lib.sh
. "$here/../lib.sh"

status=0
# gpu: the defaults (every layer, prefix reuse on), where two runs of a request may differ;
# gpu-exact: prefix reuse off, where they must not; cpu: the same binary with no layer offloaded.
for mode in gpu gpu-exact cpu; do
  extra=() check=()
  case $mode in
    gpu) check=(--repeats-may-differ) ;;
    gpu-exact) extra=(--no-prefix-reuse) check=(--no-load) ;;
    cpu) extra=(--gpu-layers 0) ;;
  esac
  port=$(free_port)
  MOAT_HOME=$home "$bin" serve "$name" --port "$port" --parallel 16 --ctx 2048 \
    "${extra[@]}" >"$out/serve-$mode.log" 2>&1 &
  pid=$!
  wait_up "$port" "$pid" || echo "the $mode server did not answer /health"
  cat "$out/serve-$mode.log"
  if [ "$mode" = gpu ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader \
      | tee "$out/gpu-memory.txt"
  fi
  python3 "$here/check.py" --url "http://127.0.0.1:$port" --model "$name" --label "$mode" \
    ${NO_LOAD:+--no-load} "${check[@]}" --out "$out/check-$mode.json" || status=1
  kill -TERM "$pid"
  wait "$pid" || status=1
done

grep -q "ready (.*; on .*layers)" "$out/serve-gpu.log" || { echo "the GPU server did not offload"; status=1; }

python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
runs = {m: json.load(open(f"{out}/check-{m}.json")) for m in ("gpu", "gpu-exact", "cpu")}
same = []
for g, c in zip(runs["gpu-exact"]["greedy"], runs["cpu"]["greedy"]):
    n = 0
    for a, b in zip(g["tokens"], c["tokens"]):
        if a != b:
            break
        n += 1
    same.append({"prompt": g["prompt"], "tokens": len(g["tokens"]), "same_prefix": n})
summary = {
    "greedy_gpu_exact_vs_cpu": same,
    "load": {m: [{k: row[k] for k in ("concurrency", "agg_tok_s", "ttft_p50_ms", "ttft_p95_ms",
                                      "itl_p50_ms", "itl_p95_ms")} for row in r.get("load", [])]
             for m, r in runs.items()},
    "failed": [f"{m}:{c['check']}" for m, r in runs.items() for c in r["checks"] if c["ok"] is False],
    "repeats_differed": [f"{m}:{c['check']}" for m, r in runs.items() for c in r["checks"]
                         if c["ok"] is None],
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
EOF
exit $status
