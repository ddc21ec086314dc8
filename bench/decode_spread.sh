#!/usr/bin/env bash
# Where the spread of the gaps between tokens comes from, at one stream: the decode itself, or
# what happens after it. For moat serve and llama-server in turn (ROUNDS rounds, default 3),
# times every llama.cpp decode with uprobes on its entry and return (`llama_decode` in moat's
# binary; `llama_context::decode(llama_batch_ext const&)`, which llama-server calls, in the peer's
# libllama.so) and every write to a socket (`writev` for moat, `sendto` for llama-server) while
# bench/token_gaps.py sends 10 requests of 64 tokens, and prints one JSON line per server and
# round: the client's gap quantiles, the decodes' and the time between one decode's return and
# the next one's entry (sampling, delivery, planning). The probes and the client's token times
# share one clock (CLOCK_MONOTONIC), so each gap also splits into the decode before it, the time
# from that decode's return to the socket write (`write_after_decode_ms`) and from the write to
# the client's read (`client_after_write_ms`); `tail` gives their means over the gaps at or
# above the client's p95.
#
#   sudo bench/decode_spread.sh OUT.jsonl
#
# Needs perf and the right to add uprobes (root). MOAT_BIN, PEER_BIN (llama-server's folder),
# MODEL_FILE as for bench/engine.sh. Servers listen on 127.0.0.1 and are stopped by their PIDs;
# the probes are removed at the end.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$1
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_paths "$here"
work=$(mktemp -d)
export MOAT_HOME=$work/home
lib=$(readlink -f "$peer/libllama.so")
method=_ZN13llama_context6decodeERK15llama_batch_ext
cleanup() { perf probe -q -d 'probe_moat:spread_*' -d 'probe_libllama:spread_*' 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
perf probe -q -x "$moat" -a spread_moat_in=llama_decode -a 'spread_moat_out=llama_decode%return' || exit 1
# perf also puts the return probe on the method's PLT stub and then fails for want of its debug
# information; the probes it needs are there all the same, so check for them instead.
perf probe -q -x "$lib" --no-demangle -a "spread_llama_in=$method" -a "spread_llama_out=$method%return" 2>/dev/null
probes=$(perf probe -l 2>/dev/null)
[[ $probes == *"probe_libllama:spread_llama_in "* ]] || { echo "no probe on $method in $lib" >&2; exit 1; }
"$moat" pull -q "$model" --name smollm2 >/dev/null

for round in $(seq 1 "${ROUNDS:-3}"); do
  for server in moat llama; do
    port=$(free_port)
    case $server in
      moat) "$moat" serve smollm2 --host 127.0.0.1 --port "$port" --parallel 1 --ctx 2048 \
              --threads 2 >/dev/null 2>&1 &
            probes=(-e probe_moat:spread_moat_in -e probe_moat:spread_moat_out__return) ;;
      llama) LD_LIBRARY_PATH=$peer "$peer/llama-server" -m "$model" --host 127.0.0.1 --port "$port" \
               -t 2 -tb 2 -np 1 -c 2048 --jinja -a smollm2:latest --no-webui >/dev/null 2>&1 &
             probes=(-e probe_libllama:spread_llama_in -e probe_libllama:spread_llama_out__return) ;;
    esac
    pid=$!
    if ! wait_up "$port" "$pid"; then echo "$server did not start" >&2; kill "$pid"; continue; fi
    python3 "$here/token_gaps.py" --url "http://127.0.0.1:$port" --requests 2 >/dev/null
    perf record -q -k CLOCK_MONOTONIC "${probes[@]}" -e syscalls:sys_enter_writev \
      -e syscalls:sys_enter_sendto -p "$pid" -o "$work/perf.data" >/dev/null 2>&1 &
    rec=$!
    sleep 0.3
    gaps=$(python3 "$here/token_gaps.py" --url "http://127.0.0.1:$port" --requests 10 \
      --times "$work/times.jsonl")
    kill -INT "$rec"; wait "$rec"
    kill "$pid"; wait "$pid" 2>/dev/null
    perf script -i "$work/perf.data" -F time,event 2>/dev/null | python3 -c '
import bisect, json, sys
gaps = json.loads(sys.argv[1])
spans, entered, writes = [], None, []
for line in sys.stdin:
    stamp, event = line.split()[:2]
    t = float(stamp.rstrip(":")) * 1000
    if event.startswith("syscalls:"):
        writes.append(t)
    elif "out" in event:
        if entered is not None:
            spans.append((entered, t))
        entered = None
    else:
        entered = t
decode = sorted(b - a for a, b in spans)
between = sorted(n[0] - p[1] for p, n in zip(spans, spans[1:]) if n[0] - p[1] < 30)
ends = [b for _, b in spans]
# Each client gap: the socket write just before the later token, the decode that returned last
# before that write.
split = []
for line in open(sys.argv[4]):
    times = json.loads(line)
    for a, b in zip(times, times[1:]):
        w = bisect.bisect_right(writes, b) - 1
        d = bisect.bisect_right(ends, writes[w]) - 1 if w >= 0 else -1
        if d >= 0:
            split.append((b - a, spans[d][1] - spans[d][0], writes[w] - ends[d], b - writes[w]))
def q(xs):
    xs = sorted(xs)
    return {f"p{p}": round(xs[int(p / 100 * (len(xs) - 1))], 3) for p in (5, 50, 95, 99)} if xs else {}
p95 = q([s[0] for s in split]).get("p95", 0)
tail = [s for s in split if s[0] >= p95]
mean = lambda i: round(sum(s[i] for s in tail) / len(tail), 3) if tail else None
gaps.pop("url", None)
print(json.dumps({"server": sys.argv[2], "round": int(sys.argv[3]), "client_gaps": gaps,
                  "decodes": len(decode), "decode_ms": q(decode), "between_ms": q(between),
                  "write_after_decode_ms": q([s[2] for s in split]),
                  "client_after_write_ms": q([s[3] for s in split]),
                  "tail": {"gaps": len(tail), "decode_ms": mean(1), "write_after_decode_ms": mean(2),
                           "client_after_write_ms": mean(3)}}))
' "$gaps" "$server" "$round" "$work/times.jsonl" >>"$out"
  done
done
