#!/usr/bin/env python3
"""Summarises bench/gateway/run.sh results: medians per mode over the rounds, and each gateway
mode against its baseline (node and moat against direct, lib-gateway against lib-client): the
added p50 latency in ms and the throughput ratio, checked against issue 6's targets (added p50
<= 1 ms, throughput >= 95%). Prints markdown; standard library only.

    python3 bench/gateway/summary.py bench/results/gateway-*.jsonl
"""

import json
import statistics
import sys

# Each gateway mode and the baseline it is compared with.
BASELINES = {"node": "direct", "moat": "direct", "lib-gateway": "lib-client"}
MAX_ADDED_P50_MS = 1.0
MIN_THROUGHPUT_RATIO = 0.95


def load(path):
    """The env record and the run records of one results file."""
    env, runs = None, []
    with open(path) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                sys.exit(f"{path}:{number}: not JSON: {err}")
            if record.get("kind") == "env":
                env = record
            elif record.get("bench") == "gateway":
                runs.append(record)
    return env, runs


def median(values):
    return statistics.median(values) if values else None


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def summarise(path):
    env, runs = load(path)
    print(f"## {path}\n")
    if env:
        print(
            f"{env['rounds']} rounds x {env['duration_s']} s, concurrency {env['concurrency']}, "
            f"upstream delay {env['delay_ms']} ms, {env['cpus']} CPUs (cores: {env['cores']}), "
            f"load average at start {[round(x, 2) for x in env['load_average']]}, "
            f"commit {env['commit']}; moat: {env['moat']}\n"
        )
    groups = {}
    for run in runs:
        groups.setdefault((run["stream"], run["label"]), []).append(run)
    for stream in sorted({key[0] for key in groups}):
        kind = "streamed (SSE)" if stream else "whole answers"
        print(f"### {kind}\n")
        print(
            "| mode | rounds | req/s (median) | p50 ms | p95 ms | p99 ms | TTFB p50 ms | errors "
            "| CPU µs/request: load, upstream, gateway |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        medians = {}
        for (s, label), group in sorted(groups.items(), key=lambda item: order(item[0][1])):
            if s != stream:
                continue
            ttfb = [r["ttfb_ms"]["p50"] for r in group if r.get("ttfb_ms")]
            m = {
                "rps": median([r["rps"] for r in group]),
                "p50": median([r["latency_ms"]["p50"] for r in group if r["latency_ms"]]),
                "p95": median([r["latency_ms"]["p95"] for r in group if r["latency_ms"]]),
                "p99": median([r["latency_ms"]["p99"] for r in group if r["latency_ms"]]),
                "ttfb": median(ttfb),
                "errors": sum(r["errors"] for r in group),
                "cpu": [median(cpu_per_request(group, part)) for part in ("load", "upstream", "gateway")],
                "rounds": {r["round"]: r for r in group},
            }
            medians[label] = m
            print(
                f"| {label} | {len(group)} | {fmt(m['rps'], 0)} | {fmt(m['p50'])} | {fmt(m['p95'])} "
                f"| {fmt(m['p99'])} | {fmt(m['ttfb'])} | {m['errors']} "
                f"| {', '.join(fmt(c, 0) for c in m['cpu'])} |"
            )
        print()
        rows = []
        for mode, base in BASELINES.items():
            if mode not in medians or base not in medians:
                continue
            a, b = medians[mode], medians[base]
            added = a["p50"] - b["p50"]
            ratio = a["rps"] / b["rps"] if b["rps"] else None
            # Per round, against the baseline run of the same round: the spread shows the noise.
            paired = [
                a["rounds"][r]["rps"] / b["rounds"][r]["rps"]
                for r in a["rounds"]
                if r in b["rounds"] and b["rounds"][r]["rps"]
            ]
            spread = f"{min(paired):.3f}-{max(paired):.3f}" if paired else "-"
            ok_latency = "yes" if added <= MAX_ADDED_P50_MS else "no"
            ok_ratio = "yes" if ratio is not None and ratio >= MIN_THROUGHPUT_RATIO else "no"
            rows.append(
                f"| {mode} vs {base} | {added:+.3f} ({ok_latency}) | {fmt(ratio, 3)} ({ok_ratio}) | {spread} |"
            )
        if rows:
            print("| comparison | added p50 ms (<= 1?) | throughput ratio (>= 0.95?) | ratio per round |")
            print("|---|---:|---:|---:|")
            print("\n".join(rows))
            print()


def cpu_per_request(group, part):
    """CPU microseconds per request of one process over a mode's runs. The servers' CPU time
    covers the warm-up too, so their count includes the warm-up's requests; the load
    generator's covers only the measured phase."""
    values = []
    for run in group:
        cpu = (run.get("cpu_s") or {}).get(part)
        if cpu is None:
            continue
        n = run["requests_ok"] + run["errors"]
        if part != "load":
            n += run.get("warmup_requests", 0)
        if n:
            values.append(cpu * 1e6 / n)
    return values


def order(label):
    known = ["direct", "node", "moat", "lib-client", "lib-gateway"]
    return known.index(label) if label in known else len(known)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        summarise(path)


if __name__ == "__main__":
    main()
