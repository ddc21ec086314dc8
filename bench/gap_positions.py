#!/usr/bin/env python3
"""Where the long gaps between streamed tokens fall, by position in the answer, for two servers.

    python3 bench/gap_positions.py URL_A URL_B [--rounds 4] [--per 16] [--max-tokens 64]

Sends --per streaming chat requests one after another (distinct prompts, temperature 0) to each
server in turn, --rounds times (the order flipped each round), and prints one JSON line per
server: the gaps' p50, p95 and p99 (ms), and how many gaps at or above p95 fell at token
positions 0-3, 4-15, 16-47 and 48+ next to how many gaps there were at those positions. Work
done once per request (writing its usage, saving its cache) would show as long gaps bunched at
the start. Standard library only; reuses serve_load.py's streaming client.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_load  # noqa: E402

BUCKETS = ((4, "0-3"), (16, "4-15"), (48, "16-47"), (None, "48+"))


def bucket(position):
    return next(name for end, name in BUCKETS if end is None or position < end)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("urls", nargs=2)
    p.add_argument("--model", default="smollm2:latest")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--per", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=64)
    a = p.parse_args()
    gaps = {url: [] for url in a.urls}
    for r in range(a.rounds):
        for url in a.urls if r % 2 == 0 else a.urls[::-1]:
            for _ in range(a.per):
                prompt = f"{time.time_ns()} Tell me a long story about the sea and ships."
                res = serve_load.stream_chat(url, a.model, [{"role": "user", "content": prompt}], a.max_tokens)
                t = res["times"]
                gaps[url] += [(k, (y - x) * 1000) for k, (x, y) in enumerate(zip(t, t[1:]))]
    for url in a.urls:
        found = gaps[url]
        if not found:
            print(json.dumps({"url": url, "error": "no token gaps"}))
            continue
        ordered = sorted(x for _, x in found)

        def q(f):
            return round(ordered[int(f * (len(ordered) - 1))], 2)

        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        over = {name: 0 for _, name in BUCKETS}
        every = {name: 0 for _, name in BUCKETS}
        for k, x in found:
            every[bucket(k)] += 1
            if x >= p95:
                over[bucket(k)] += 1
        print(json.dumps({"url": url, "gaps": len(found), "p50_ms": q(0.5), "p95_ms": q(0.95),
                          "p99_ms": q(0.99), "over_p95_by_position": over, "all_by_position": every}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
