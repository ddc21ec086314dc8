#!/usr/bin/env python3
"""The gaps between streamed tokens, and the times to first token, of two or more servers,
compared in paired blocks.

    python3 bench/paired_gaps.py --server moat=http://127.0.0.1:P1 \
        --server llama=http://127.0.0.1:P2 [--blocks 30] [--requests 4] [--max-tokens 64] \
        [--concurrency 1] [--warm 0]

Each block sends --requests bursts of --concurrency streaming chat requests (started at once,
distinct prompts, temperature 0) to every server in turn, the order rotated from block to
block, so that each block compares the servers over the same minute or so of a machine whose
speed drifts. A burst ends when its last stream does, so at --concurrency N the streams run
side by side as N clients that send their next request when all are answered. --warm K sends K
more bursts at the start of each server's turn that are not counted: the first burst of a
turn follows the other server's last one, whose work (or clean-up) may still hold the cores.

Prints one JSON line per server (`mode: paired_gaps`: its pooled gap quantiles in ms, and
`ttft_p*_ms`, the pooled times to first token) and two per server after the first:
`mode: paired` (the ratio of its pooled gap p50 / p95 / p99 to the first server's) and
`mode: paired_ttft` (the same for the times to first token), each with a 95 % interval from
resampling whole blocks (2,000 resamples, fixed seed), and in how many blocks its p95 was the
lower. A ratio whose interval holds 1 is a tie at this sample size.
Standard library only; reuses serve_load.py's streaming client.
"""
import argparse
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_load  # noqa: E402

QUANTILES = (50, 95, 99)


def quantile(sorted_xs, p):
    return sorted_xs[int(p / 100 * (len(sorted_xs) - 1))]


def pooled(blocks):
    xs = sorted(g for block in blocks for g in block)
    return {p: quantile(xs, p) for p in QUANTILES} if xs else None


def block_samples(url, model, bursts, max_tokens, concurrency):
    """The gaps between tokens (ms) and the times to first token (ms) of `bursts` bursts of
    `concurrency` streams each."""
    gaps, ttft = [], []
    for _ in range(bursts):
        results = [None] * concurrency

        def one(i):
            prompt = f"{time.time_ns()} {i}. Tell me a long story about the sea and ships."
            results[i] = serve_load.stream_chat(
                url, model, [{"role": "user", "content": prompt}], max_tokens)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, r in enumerate(results):
            if r is None or not r["times"]:
                raise RuntimeError(f"{url}: stream {i} of a burst gave no token")
            t = r["times"]
            ttft.append((t[0] - r["t0"]) * 1000)
            gaps += [(b - a) * 1000 for a, b in zip(t, t[1:])]
    return gaps, ttft


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
    p.add_argument("--requests", type=int, default=4,
                   help="bursts (of --concurrency requests) per server per block")
    p.add_argument("--concurrency", type=int, default=1, help="streams in a burst")
    p.add_argument("--warm", type=int, default=0,
                   help="bursts at the start of each turn that are not counted")
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
    if a.blocks < 2 or a.requests < 1 or a.concurrency < 1 or a.warm < 0:
        p.error("--blocks must be at least 2, --requests and --concurrency at least 1, "
                "--warm at least 0")
    tags = dict(t.partition("=")[::2] for t in a.tag)
    gaps = {name: [] for name, _ in servers}
    ttft = {name: [] for name, _ in servers}
    for block in range(a.blocks):
        k = block % len(servers)
        for name, url in servers[k:] + servers[:k]:
            if a.warm:
                block_samples(url, a.model, a.warm, a.max_tokens, a.concurrency)
            g, t = block_samples(url, a.model, a.requests, a.max_tokens, a.concurrency)
            gaps[name].append(g)
            ttft[name].append(t)
        print(f"block {block + 1}/{a.blocks}", file=sys.stderr)
    tags["concurrency"] = a.concurrency
    for name, _ in servers:
        q, qt = pooled(gaps[name]), pooled(ttft[name])
        line = {"mode": "paired_gaps", "server": name, "blocks": a.blocks,
                "gaps": sum(len(b) for b in gaps[name]),
                "requests": sum(len(b) for b in ttft[name])}
        line.update({f"p{p}_ms": round(q[p], 2) for p in QUANTILES})
        line.update({f"ttft_p{p}_ms": round(qt[p], 1) for p in QUANTILES})
        print(json.dumps({**line, **tags}))
    rng = random.Random(1)
    base_name = servers[0][0]
    for name, _ in servers[1:]:
        for mode, samples in (("paired", gaps), ("paired_ttft", ttft)):
            line = {"mode": mode, "server": name, "base": base_name}
            line.update(compare(samples[base_name], samples[name], a.resamples, rng))
            print(json.dumps({**line, **tags}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
