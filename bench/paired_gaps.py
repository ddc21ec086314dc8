#!/usr/bin/env python3
"""The gaps between streamed tokens of two or more servers, compared in paired blocks.

    python3 bench/paired_gaps.py --server moat=http://127.0.0.1:P1 \
        --server llama=http://127.0.0.1:P2 [--blocks 30] [--requests 4] [--max-tokens 64]

One stream at a time. Each block sends --requests streaming chat requests (distinct prompts,
temperature 0) to every server in turn, the order rotated from block to block, so that each
block compares the servers over the same minute or so of a machine whose speed drifts. Prints
one JSON line per server (its pooled gap quantiles, in ms) and one per server after the first
(`mode: paired`): the ratio of its pooled p50 / p95 / p99 to the first server's, with a 95 %
interval from resampling whole blocks (2,000 resamples, fixed seed), and in how many blocks its
p95 was the lower. A ratio whose interval holds 1 is a tie at this sample size.
Standard library only; reuses serve_load.py's streaming client.
"""
import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_load  # noqa: E402

QUANTILES = (50, 95, 99)


def quantile(sorted_xs, p):
    return sorted_xs[int(p / 100 * (len(sorted_xs) - 1))]


def pooled(blocks):
    xs = sorted(g for block in blocks for g in block)
    return {p: quantile(xs, p) for p in QUANTILES} if xs else None


def block_gaps(url, model, requests, max_tokens):
    gaps = []
    for _ in range(requests):
        prompt = f"{time.time_ns()} Tell me a long story about the sea and ships."
        r = serve_load.stream_chat(url, model, [{"role": "user", "content": prompt}], max_tokens)
        t = r["times"]
        gaps += [(b - a) * 1000 for a, b in zip(t, t[1:])]
    return gaps


def compare(base, other, resamples, rng):
    """Ratios other/base of pooled quantiles, with intervals from resampling block indices."""
    n = len(base)
    point = {p: pooled(other)[p] / pooled(base)[p] for p in QUANTILES}
    draws = {p: [] for p in QUANTILES}
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        b, o = pooled([base[i] for i in idx]), pooled([other[i] for i in idx])
        for p in QUANTILES:
            draws[p].append(o[p] / b[p])
    out = {}
    for p in QUANTILES:
        d = sorted(draws[p])
        out[f"p{p}_ratio"] = round(point[p], 3)
        out[f"p{p}_ratio_ci95"] = [round(quantile(d, 2.5), 3), round(quantile(d, 97.5), 3)]
    lower = sum(1 for b, o in zip(base, other)
                if quantile(sorted(o), 95) < quantile(sorted(b), 95))
    out["blocks_p95_lower"] = lower
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", action="append", required=True, metavar="NAME=URL",
                   help="a server to compare (two or more); the first is the base of the ratios")
    p.add_argument("--model", default="smollm2:latest")
    p.add_argument("--blocks", type=int, default=30)
    p.add_argument("--requests", type=int, default=4, help="requests per server per block")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args()
    servers = []
    for spec in a.server:
        name, sep, url = spec.partition("=")
        if not sep or not name or not url.startswith("http"):
            p.error(f"--server wants NAME=URL, got {spec!r}")
        servers.append((name, url))
    if len(servers) < 2:
        p.error("give at least two --server")
    if a.blocks < 2 or a.requests < 1:
        p.error("--blocks must be at least 2 and --requests at least 1")
    tags = dict(t.partition("=")[::2] for t in a.tag)
    gaps = {name: [] for name, _ in servers}
    for block in range(a.blocks):
        k = block % len(servers)
        for name, url in servers[k:] + servers[:k]:
            gaps[name].append(block_gaps(url, a.model, a.requests, a.max_tokens))
        print(f"block {block + 1}/{a.blocks}", file=sys.stderr)
    for name, _ in servers:
        q = pooled(gaps[name])
        line = {"mode": "paired_gaps", "server": name, "blocks": a.blocks,
                "gaps": sum(len(b) for b in gaps[name])}
        line.update({f"p{p}_ms": round(q[p], 2) for p in QUANTILES})
        print(json.dumps({**line, **tags}))
    rng = random.Random(1)
    base_name = servers[0][0]
    for name, _ in servers[1:]:
        line = {"mode": "paired", "server": name, "base": base_name}
        line.update(compare(gaps[base_name], gaps[name], a.resamples, rng))
        print(json.dumps({**line, **tags}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
