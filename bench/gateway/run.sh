#!/usr/bin/env bash
# The gateway overhead benchmark (issue 6): the same load against a fast upstream directly and
# through a gateway, in alternating rounds, one JSON line per run in bench/results/. See
# bench/gateway/README.md for what each mode measures and how to read the summary.
#
# Modes, run in this order in every round (so machine noise spreads over all of them):
#   direct       the load generator -> the fast upstream
#   node         -> gateway_node (the moat-gateway library behind a minimal axum server) -> upstream
#   moat         -> `$MOAT_BIN serve` with an upstream alias in moat.toml -> upstream (only when
#                   MOAT_BIN is set and that server answers the alias; otherwise skipped, and said)
#   lib-client   moat_upstream::UpstreamClient in the load generator's process -> upstream
#   lib-gateway  moat_gateway::Gateway::chat in the load generator's process -> upstream
#
# Knobs (environment): ROUNDS (5), CONC (64), DURATION (seconds per run, 8), WARMUP (2),
# STREAMS ("whole stream"), DELAY_MS (the upstream's delay before answering, 0), LIBRARY (1: the
# lib-* modes too), MOAT_BIN, MOAT_SERVE_ARGS (extra `moat serve` arguments), CPU_LOAD,
# CPU_UPSTREAM, CPU_GATEWAY (cores for taskset), OUT (the results file), SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-5}
CONC=${CONC:-64}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
STREAMS=${STREAMS:-"whole stream"}
DELAY_MS=${DELAY_MS:-0}
LIBRARY=${LIBRARY:-1}
TARGET=${CARGO_TARGET_DIR:-target}
BIN="$TARGET/release/examples"
mkdir -p bench/results
OUT=${OUT:-bench/results/gateway-$(date -u +%Y-%m-%dT%H%M).jsonl}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p moat-gateway --examples
fi

# Cores: the upstream, the gateway and the load generator each run one worker thread. With
# three or more cores each gets its own; with two, the load generator and the upstream share
# core 0 (they work in every mode) and the gateway has core 1 to itself, like a gateway node
# on its own machine. Without taskset nothing is pinned.
ncpu=$(nproc)
if [ "$ncpu" -ge 3 ]; then
  : "${CPU_LOAD:=0}" "${CPU_UPSTREAM:=1}" "${CPU_GATEWAY:=2}"
else
  : "${CPU_LOAD:=0}" "${CPU_UPSTREAM:=0}" "${CPU_GATEWAY:=$((ncpu - 1))}"
fi
pin_load=() pin_upstream=() pin_gateway=()
if command -v taskset >/dev/null; then
  pin_load=(taskset -c "$CPU_LOAD")
  pin_upstream=(taskset -c "$CPU_UPSTREAM")
  pin_gateway=(taskset -c "$CPU_GATEWAY")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/moat-gateway-bench.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME LOG COMMAND...: starts a server in the background, remembers its PID, waits for
# its "listening on ADDR" line and sets `address` to ADDR.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$log"; then
      address=$(sed -n 's/^listening on //p' "$log" | head -n1)
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "run.sh: $name did not start:" >&2
  cat "$log" >&2
  return 1
}

start upstream "$work/upstream.log" \
  "${pin_upstream[@]}" "$BIN/fast_upstream" --port 0 --threads 1 --delay-ms "$DELAY_MS"
upstream=$address upstream_pid=${pids[-1]}
echo "fast upstream on $upstream (core $CPU_UPSTREAM, delay ${DELAY_MS} ms)"

# The alias as the issue's moat.toml has it; the same file configures gateway_node and moat.
cat >"$work/moat.toml" <<EOF
[aliases.fast]
[[aliases.fast.targets]]
type = "upstream"
url = "http://$upstream/v1"
model = "fast-model"
EOF

start gateway_node "$work/node.log" \
  "${pin_gateway[@]}" "$BIN/gateway_node" --config "$work/moat.toml" --port 0 --threads 1
node=$address node_pid=${pids[-1]}
echo "gateway_node on $node (core $CPU_GATEWAY)"

# One chat request through ADDR for the alias; true when it answers 200 with a completion.
answers_alias() {
  curl -sf --max-time 5 -H 'content-type: application/json' \
    -d '{"model":"fast","messages":[{"role":"user","content":"hi"}]}' \
    "http://$1/v1/chat/completions" 2>/dev/null | grep -q '"choices"'
}

moat=""
moat_note="MOAT_BIN is not set"
if [ -n "${MOAT_BIN:-}" ]; then
  mkdir -p "$work/moat-home"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # A fresh MOAT_HOME has no models: should this `moat serve` still try to pull the default
  # model, the pull fails at once (no pip, no hub) instead of downloading.
  # shellcheck disable=SC2086  # MOAT_SERVE_ARGS is a list of words
  MOAT_HOME="$work/moat-home" MOAT_PYTHON=/bin/false PIP_NO_INDEX=1 HF_ENDPOINT=http://127.0.0.1:9 \
    "${pin_gateway[@]}" "$MOAT_BIN" serve --port "$port" --config "$work/moat.toml" \
    ${MOAT_SERVE_ARGS:-} >"$work/moat.log" 2>&1 &
  pids+=("$!")
  moat_pid=$!
  moat_note="moat serve did not answer the alias within 60 s"
  deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$moat_pid" 2>/dev/null; then
      moat_note="moat serve exited: $(tail -n 3 "$work/moat.log" | tr '\n' ' ')"
      break
    fi
    if answers_alias "127.0.0.1:$port"; then
      moat="127.0.0.1:$port"
      moat_note="moat serve answers the alias"
      break
    fi
    sleep 0.1
  done
  if [ -z "$moat" ]; then kill "$moat_pid" 2>/dev/null || true; fi
fi
echo "moat gateway node: ${moat:-not available} ($moat_note)"
answers_alias "$node" || { echo "run.sh: gateway_node does not answer the alias" >&2; exit 1; }

modes="direct node"
[ -n "$moat" ] && modes="$modes moat"
[ "$LIBRARY" = 1 ] && modes="$modes lib-client lib-gateway"

python3 - "$OUT" <<EOF
import json, os, subprocess, sys
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip())
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({
        "bench": "gateway", "kind": "env", "commit": commit + ("+dirty" if dirty else ""),
        "cpus": $ncpu, "load_average": os.getloadavg(),
        "cores": {"load": "$CPU_LOAD", "upstream": "$CPU_UPSTREAM", "gateway": "$CPU_GATEWAY"},
        "rounds": $ROUNDS, "concurrency": $CONC, "duration_s": $DURATION, "warmup_s": $WARMUP,
        "delay_ms": $DELAY_MS, "modes": "$modes".split(), "moat": "$moat_note",
    }) + "\n")
EOF

# CPU time (user + system, in clock ticks) of a server by its PID; empty for none.
clk_tck=$(getconf CLK_TCK)
ticks() {
  if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
    sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
  fi
}
declare -A gateway_pids=([node]="$node_pid" [moat]="${moat_pid:-}")

for round in $(seq "$ROUNDS"); do
  for kind in $STREAMS; do
    stream_flag=()
    [ "$kind" = stream ] && stream_flag=(--stream)
    for mode in $modes; do
      case $mode in
        direct) args=(--mode http --url "http://$upstream/v1" --model fast-model) ;;
        node) args=(--mode http --url "http://$node/v1" --model fast) ;;
        moat) args=(--mode http --url "http://$moat/v1" --model fast) ;;
        lib-client) args=(--mode client --url "http://$upstream/v1" --model fast-model) ;;
        lib-gateway) args=(--mode gateway --url "http://$upstream/v1" --model fast-model) ;;
      esac
      up_before=$(ticks "$upstream_pid") gw_before=$(ticks "${gateway_pids[$mode]:-}")
      line=$("${pin_load[@]}" "$BIN/gateway_load" "${args[@]}" "${stream_flag[@]}" \
        --concurrency "$CONC" --duration "$DURATION" --warmup "$WARMUP" --threads 1 \
        --label "$mode" --round "$round")
      up_after=$(ticks "$upstream_pid") gw_after=$(ticks "${gateway_pids[$mode]:-}")
      # The servers' CPU seconds during the run (warm-up included: see warmup_requests).
      python3 -c '
import json, sys
run = json.loads(sys.argv[1])
tck = float(sys.argv[2])
delta = lambda a, b: round((int(b) - int(a)) / tck, 3) if a and b else None
run["cpu_s"] = {"upstream": delta(sys.argv[3], sys.argv[4]), "gateway": delta(sys.argv[5], sys.argv[6]),
                "load": round(run["cpu_ticks"] / tck, 3) if run.get("cpu_ticks") is not None else None}
print(json.dumps(run))' "$line" "$clk_tck" "$up_before" "$up_after" "$gw_before" "$gw_after" \
        | tee -a "$OUT" | cut -c1-160
    done
  done
done

echo "results: $OUT"
python3 bench/gateway/summary.py "$OUT"
