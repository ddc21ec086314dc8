#!/usr/bin/env python3
"""Markdown tables from bench/engine.sh's results.jsonl (path as the only argument).

Every figure is the median over the rounds (REPS) of the per-round value; a ratio is
moat's median / llama-server's median (for latencies: llama / moat, so > 1 means moat is
faster in every column labelled "ratio")."""
import json
import statistics
import sys
from collections import defaultdict


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def print_gaps(rows):
    """The `gaps` and `paired` phases: bench/paired_gaps.py's pooled quantiles and ratios."""
    pooled = {(r["server"], r.get("concurrency", 1)): r
              for r in rows if r["mode"] == "paired_gaps"}
    what = {"paired": ("Gaps between tokens", "gaps", ""),
            "paired_ttft": ("Time to first token", "requests", "ttft_")}
    for r in (r for r in rows if r["mode"] in what):
        c = r.get("concurrency", 1)
        s, b = pooled.get((r["server"], c)), pooled.get((r["base"], c))
        if not s or not b:
            continue
        title, count, key = what[r["mode"]]
        streams = "one stream" if c == 1 else f"{c} streams"
        print(f"### {title} at {streams} ({s['blocks']} paired blocks, "
              f"{s.get(count, '?')} {count} each)\n")
        print(f"| quantile | {r['server']} (ms) | {r['base']} (ms) | ratio | 95 % interval |")
        print("|---|---|---|---|---|")
        for q in (50, 95, 99):
            lo, hi = r[f"p{q}_ratio_ci95"]
            print(f"| p{q} | {s[f'{key}p{q}_ms']} | {b[f'{key}p{q}_ms']} | {r[f'p{q}_ratio']} | "
                  f"{lo}–{hi} |")
        print(f"\nBlocks in which {r['server']}'s p95 was the lower: {r['blocks_p95_lower']} "
              f"of {s['blocks']}\n")


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    load = defaultdict(list)
    pp = defaultdict(list)
    prefix = defaultdict(list)
    shared = defaultdict(list)
    burst = defaultdict(list)
    hwm = {}
    gpu = {}
    bench = []
    gaps = []
    for r in rows:
        m = r.get("mode")
        if m == "load" and r.get("phase") == "burst":
            burst[(r["concurrency"], r["server"])].append(r)
        elif m == "load":
            load[(r["concurrency"], r["server"])].append(r)
        elif m == "pp":
            pp[r["server"]].append(r)
        elif m == "prefix":
            prefix[r["server"]].append(r)
        elif m == "shared":
            shared[r["server"]].append(r)
        elif m == "hwm":
            hwm[(r["parallel"], r["server"])] = r["vmhwm_kib"]
            if r.get("gpu_mib") is not None:
                gpu[(r["parallel"], r["server"])] = r["gpu_mib"]
        elif m in ("llama-bench", "moat-engine"):
            bench.append(r)
        elif m in ("paired_gaps", "paired", "paired_ttft"):
            gaps.append(r)

    print_gaps(gaps)

    def lm(c, s, k):
        return med([r.get(k) for r in load.get((c, s), [])])

    concs = sorted({c for c, _ in load})
    # the parallel sequences each concurrency ran with (engine.sh's MAXPAR)
    par = {c: max([p for p, _ in hwm if p <= c] or [min(c, 8)]) for c in concs}
    if concs:
        print("### Server under load (streaming chat, max_tokens 64, temperature 0)\n")
        print("| streams | parallel | rounds | agg tok/s moat | agg tok/s llama | ratio | "
              "TTFT p50 moat / llama (ms) | TTFT p95 moat / llama (ms) | "
              "ITL p50 moat / llama (ms) | ITL p95 moat / llama (ms) | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for c in concs:
            am, al = lm(c, "moat", "agg_tok_s"), lm(c, "llama", "agg_tok_s")
            n = min(len(load.get((c, "moat"), [])), len(load.get((c, "llama"), [])))
            errs = sum(len(r["errors"]) for s in ("moat", "llama") for r in load.get((c, s), []))
            print(f"| {c} | {par[c]} | {n} | {f(am)} | {f(al)} | "
                  f"{f(am / al if am and al else None, 2)} | "
                  f"{f(lm(c, 'moat', 'ttft_p50_ms'))} / {f(lm(c, 'llama', 'ttft_p50_ms'))} | "
                  f"{f(lm(c, 'moat', 'ttft_p95_ms'))} / {f(lm(c, 'llama', 'ttft_p95_ms'))} | "
                  f"{f(lm(c, 'moat', 'itl_p50_ms'))} / {f(lm(c, 'llama', 'itl_p50_ms'))} | "
                  f"{f(lm(c, 'moat', 'itl_p95_ms'))} / {f(lm(c, 'llama', 'itl_p95_ms'))} | {errs} |")
    if 1 in concs and 8 in concs:
        print("\nScaling, aggregate tok/s at 8 streams / at 1 stream: moat "
              f"{f(lm(8, 'moat', 'agg_tok_s') / lm(1, 'moat', 'agg_tok_s'), 2)}x, llama-server "
              f"{f(lm(8, 'llama', 'agg_tok_s') / lm(1, 'llama', 'agg_tok_s'), 2)}x")

    if pp or 1 in concs:
        print("\n### Single stream through the server (concurrency 1)\n")
        print("| metric | moat | llama-server | ratio moat/llama |")
        print("|---|---|---|---|")
        pm = med([r["pp_tok_s_median"] for r in pp.get("moat", [])])
        pl = med([r["pp_tok_s_median"] for r in pp.get("llama", [])])
        pt = med([t for r in pp.get("moat", []) for t in r["prompt_tokens"] if t])
        print(f"| prompt processing tok/s (~{f(pt, 0)}-token prompt, tokens / TTFT) | {f(pm)} | "
              f"{f(pl)} | {f(pm / pl if pm and pl else None, 2)} |")
        gm, gl = lm(1, "moat", "stream_tg_tok_s_median"), lm(1, "llama", "stream_tg_tok_s_median")
        print(f"| generation tok/s (per stream, after the first token) | {f(gm)} | {f(gl)} | "
              f"{f(gm / gl if gm and gl else None, 2)} |")

    if prefix:
        print("\n### Shared prefix (~1,000-token system prompt, 8 sequential distinct questions)\n")
        print("| server | prompt tokens | rounds | TTFT p50 (ms) | vs moat --no-prefix-reuse |")
        print("|---|---|---|---|---|")
        base = med([r["ttft_p50_ms"] for r in prefix.get("moat-noreuse", [])])
        for s in ("moat", "moat-noreuse", "llama"):
            if s not in prefix:
                continue
            t = med([r["ttft_p50_ms"] for r in prefix[s]])
            name = {"moat": "moat serve (prefix reuse)", "moat-noreuse": "moat serve --no-prefix-reuse",
                    "llama": "llama-server (cache_prompt default)"}[s]
            print(f"| {name} | {prefix[s][0]['prompt_tokens']} | {len(prefix[s])} | {f(t)} | "
                  f"{f(base / t if base and t else None, 2)}x |")

    if shared:
        print("\n### Prefix shared with a running sequence (parallel 2; B sent after A's first "
              "token, both with a fresh ~1,000-token system prompt)\n")
        print("| server | rounds x pairs | B cached tokens (median) | B TTFT p50 (ms) | "
              "vs moat --no-prefix-reuse | A's longest gap between tokens, median (ms) |")
        print("|---|---|---|---|---|---|")
        base = med([t for r in shared.get("moat-noreuse", []) for t in r["ttft_ms"]])
        for s in ("moat", "moat-kv-unified", "moat-noreuse", "llama"):
            if s not in shared:
                continue
            t = med([t for r in shared[s] for t in r["ttft_ms"]])
            cached = med([c for r in shared[s] for c in r["cached_tokens"]])
            gap = med([g for r in shared[s] for g in r["a_max_gap_ms"]])
            name = {"moat": "moat serve (one KV cache per sequence: copy)",
                    "moat-kv-unified": "moat serve --kv-unified (shared cells)",
                    "moat-noreuse": "moat serve --no-prefix-reuse",
                    "llama": "llama-server -np 2 (cache_prompt default)"}[s]
            print(f"| {name} | {len(shared[s])} x {shared[s][0]['requests']} | {f(cached, 0)} | "
                  f"{f(t)} | {f(base / t if base and t else None, 2)}x | {f(gap)} |")

    if burst:
        print("\n### Arrival window (parallel 8; the `burst` phase, servers rotated each round)\n")
        print("| streams | server | rounds | agg tok/s | TTFT p50 (ms) | ITL p50 (ms) | "
              "ITL p95 (ms) | ITL p99 (ms) | gaps over 100 ms (%) |")
        print("|---|---|---|---|---|---|---|---|---|")
        names = {"moat": "moat serve", "moat-nowindow": "moat serve --arrival-window 0",
                 "llama": "llama-server -np 8"}
        for c in sorted({c for c, _ in burst}):
            for s in ("moat", "moat-nowindow", "llama"):
                rs = burst.get((c, s), [])
                if not rs:
                    continue

                def bm(k):
                    return med([r.get(k) for r in rs])
                print(f"| {c} | {names[s]} | {len(rs)} | {f(bm('agg_tok_s'))} | "
                      f"{f(bm('ttft_p50_ms'))} | {f(bm('itl_p50_ms'))} | {f(bm('itl_p95_ms'))} | "
                      f"{f(bm('itl_p99_ms'))} | {f(bm('itl_over_100ms_pct'), 2)} |")

    if hwm:
        print("\n### Peak resident memory (VmHWM after the load rounds)\n")
        print("| parallel | ctx | moat serve (MiB) | llama-server (MiB) | ratio moat/llama |")
        print("|---|---|---|---|---|")
        for p in sorted({p for p, _ in hwm}):
            a, b = hwm.get((p, "moat")), hwm.get((p, "llama"))
            print(f"| {p} | moat {p}x2048, llama {p * 2048} | {f(a / 1024 if a else None)} | "
                  f"{f(b / 1024 if b else None)} | {f(a / b if a and b else None, 2)} |")

    if gpu:
        print("\n### GPU memory (nvidia-smi, per process, after the load rounds)\n")
        print("| parallel | moat serve (MiB) | llama-server (MiB) |")
        print("|---|---|---|")
        for p in sorted({p for p, _ in gpu}):
            print(f"| {p} | {gpu.get((p, 'moat'), '-')} | {gpu.get((p, 'llama'), '-')} |")

    if bench:
        print_bench(bench)


def print_bench(bench):
    """llama-bench's pp and tg next to moat's engine_bench, the ratio per round (a round ran
    both, one after the other), and their median."""
    def test(b):
        return f"pp{b['n_prompt']}" if b.get("n_prompt") else f"tg{b['n_gen']}"

    rows = {}
    for b in bench:
        rows.setdefault((test(b), b.get("round")), {})[b["mode"]] = b.get("avg_ts")
    print("\n### Raw pp and tg: moat's engine (engine_bench) against llama-bench\n")
    print("| test | round | moat tok/s | llama-bench tok/s | ratio |")
    print("|---|---|---|---|---|")
    ratios = {}
    for (t, rnd), v in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        m, l = v.get("moat-engine"), v.get("llama-bench")
        ratio = m / l if m and l else None
        if ratio:
            ratios.setdefault(t, []).append(ratio)
        print(f"| {t} | {rnd if rnd is not None else '-'} | {f(m)} | {f(l)} | {f(ratio, 3)} |")
    for t, rs in sorted(ratios.items()):
        print(f"\n{t}: median ratio {med(rs):.3f} over {len(rs)} rounds "
              f"(range {min(rs):.3f}-{max(rs):.3f})")

if __name__ == "__main__":
    main(sys.argv[1])
