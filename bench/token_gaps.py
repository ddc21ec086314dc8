#!/usr/bin/env python3
"""Distribution of the gaps between streamed tokens, one stream at a time.

    python3 bench/token_gaps.py --url http://127.0.0.1:PORT [--requests 10] [--max-tokens 64]

Sends --requests streaming chat requests one after another (distinct prompts, temperature 0)
and prints one JSON line: quantiles of the time between consecutive content chunks as the
client receives them (p1 ... p99, in ms). A server that delivers tokens unevenly shows it as a
wide p5..p95 spread around the same p50: a late token followed by an early one. Standard
library only; reuses serve_load.py's streaming client.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_load  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--model", default="smollm2:latest")
    p.add_argument("--requests", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--times", metavar="FILE",
                   help="also write each request's token arrival times (ms on the clock of "
                   "time.perf_counter, CLOCK_MONOTONIC on Linux), one JSON list per line")
    a = p.parse_args()
    gaps = []
    times = open(a.times, "w") if a.times else None
    for _ in range(a.requests):
        prompt = f"{time.time_ns()} Tell me a long story about the sea and ships."
        r = serve_load.stream_chat(a.url, a.model, [{"role": "user", "content": prompt}],
                                   a.max_tokens)
        t = r["times"]
        gaps += [b - x for x, b in zip(t, t[1:])]
        if times:
            times.write(json.dumps([round(x * 1000, 4) for x in t]) + "\n")
    if times:
        times.close()
    if not gaps:
        print(json.dumps({"error": "no token gaps"}))
        return 1
    gaps.sort()

    def q(p):
        return round(gaps[int(p * (len(gaps) - 1))] * 1000, 2)

    out = {"mode": "token_gaps", "url": a.url, "gaps": len(gaps)}
    out.update({f"p{int(p * 100)}_ms": q(p) for p in (0.01, 0.05, 0.25, 0.5, 0.9, 0.95, 0.99)})
    for tag in a.tag:
        k, _, v = tag.partition("=")
        out[k] = v
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
