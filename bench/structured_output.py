#!/usr/bin/env python3
"""What structured output costs: generation speed with and without a grammar, one stream at a
time, on each OpenAI-compatible server given (moat serve and llama-server, same model and
threads).

Formats, each asked with the same prompt (a distinct first word per request, so no prompt cache
serves a repeat): "Describe six people you know as a JSON array ..."
  free    no response_format
  schema  response_format json_schema: an array of exactly six objects
          {name (at most 12 characters), age 0-120, pet cat/dog/none, likes_tea}
  object  response_format json_object
  schema_biased  schema with a neutral logit_bias ({"0": 0}): the same logits, but moat then
          samples through its general path (draw, check, mask the vocabulary when refused)
          instead of checking the likeliest tokens one by one, so the two rows compare them
Streaming chat, temperature 0, max_tokens --max-tokens. Per round the servers alternate (order
flipped each round); per server and format, --requests requests back to back, or with
--concurrency C, --requests batches of C requests sent at once (distinct prompts), each batch
also reporting aggregate tokens/s (its tokens / its wall time).

One JSON line per request on stdout: server, format, round, completion tokens, TTFT, generation
tokens/s ((tokens - 1) / (last token - first token)), finish (stop or length) and whether the
text parses as the format asks. `--summary FILE` prints, per server and format, the median over
rounds of each round's median, and the ratios schema / free and object / free.

Standard library only; uses serve_load.stream_chat.
"""
import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import stream_chat  # noqa: E402

WORDS = ["amber", "birch", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo",
         "juniper", "kelp", "lagoon", "meadow", "nectar", "onyx", "pine", "quartz", "reef"]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "pet": {"enum": ["cat", "dog", "none"]},
        "likes_tea": {"type": "boolean"},
    },
    "required": ["name", "age", "pet", "likes_tea"],
    "additionalProperties": False,
}
PEOPLE = {"type": "array", "items": PERSON, "minItems": 6, "maxItems": 6}
FORMATS = {
    "free": None,
    "schema": {"type": "json_schema", "json_schema": {"name": "people", "schema": PEOPLE}},
    "object": {"type": "json_object"},
    "schema_biased": {"type": "json_schema", "json_schema": {"name": "people", "schema": PEOPLE}},
}
# Body fields besides response_format.
EXTRA = {"schema_biased": {"logit_bias": {"0": 0}}}


def follows(fmt, text):
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if fmt == "object":
        return isinstance(value, dict)
    if fmt.startswith("schema"):
        return (isinstance(value, list) and len(value) == 6 and all(
            isinstance(p, dict) and sorted(p) == ["age", "likes_tea", "name", "pet"]
            and isinstance(p["name"], str) and len(p["name"]) <= 12
            and isinstance(p["age"], int) and 0 <= p["age"] <= 120
            and p["pet"] in ("cat", "dog", "none") and isinstance(p["likes_tea"], bool)
            for p in value))
    return True


def one(url, a, fmt, word):
    """One streamed request; its result line (without server and round)."""
    extra = {"response_format": FORMATS[fmt]} if FORMATS[fmt] else {}
    extra.update(EXTRA.get(fmt, {}))
    prompt = (f"{word}. Describe six people you know as a JSON array of objects "
              "with name, age, pet and likes_tea.")
    r = stream_chat(url, a.model, [{"role": "user", "content": prompt}], a.max_tokens, extra=extra)
    times = r["times"]
    tokens = (r["usage"] or {}).get("completion_tokens", len(times))
    gen = ((tokens - 1) / (times[-1] - times[0])
           if len(times) > 1 and times[-1] > times[0] else None)
    return {
        "format": fmt, "tokens": tokens,
        "ttft_ms": round(1e3 * (times[0] - r["t0"]), 2) if times else None,
        "gen_tok_s": round(gen, 2) if gen else None,
        "finish": "length" if tokens >= a.max_tokens else "stop",
        "follows": follows(fmt, r["text"]),
    }


def run(a):
    servers = [spec.split("=", 1) for spec in a.server]
    n = 0
    for rnd in range(a.rounds):
        order = servers if rnd % 2 == 0 else list(reversed(servers))
        for name, url in order:
            for fmt in a.formats.split(","):
                for _ in range(a.requests):
                    words = [WORDS[(n + i) % len(WORDS)] + str(n + i) for i in range(a.concurrency)]
                    n += a.concurrency
                    began = time.perf_counter()
                    with ThreadPoolExecutor(a.concurrency) as pool:
                        lines = list(pool.map(lambda word: one(url, a, fmt, word), words))
                    wall = time.perf_counter() - began
                    for line in lines:
                        print(json.dumps({"server": name, "round": rnd, "concurrency": a.concurrency,
                                          **line}), flush=True)
                    if a.concurrency > 1:
                        tokens = sum(line["tokens"] for line in lines)
                        print(json.dumps({"kind": "batch", "server": name, "format": fmt, "round": rnd,
                                          "concurrency": a.concurrency, "tokens": tokens,
                                          "wall_s": round(wall, 3),
                                          "agg_tok_s": round(tokens / wall, 2)}), flush=True)


def summary(path):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    batches = [r for r in rows if r.get("kind") == "batch"]
    rows = [r for r in rows if r.get("kind") != "batch"]
    if batches:
        agg = {}
        for b in batches:
            agg.setdefault((b["server"], b["format"]), {}).setdefault(b["round"], []).append(b["agg_tok_s"])
        print("| server | format | streams | aggregate tok/s |")
        print("|---|---|---:|---:|")
        for (server, fmt), rounds in sorted(agg.items()):
            value = statistics.median(statistics.median(v) for v in rounds.values())
            print(f"| {server} | {fmt} | {batches[0]['concurrency']} | {value:.1f} |")
        print()
    by = {}
    for r in rows:
        by.setdefault((r["server"], r["format"]), {}).setdefault(r["round"], []).append(r)
    med = {}
    print("| server | format | gen tok/s | TTFT ms | tokens | finished (stop) | follows the format |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (server, fmt), rounds in sorted(by.items()):
        gen = statistics.median(statistics.median(x["gen_tok_s"] for x in rs if x["gen_tok_s"])
                                for rs in rounds.values())
        ttft = statistics.median(statistics.median(x["ttft_ms"] for x in rs) for rs in rounds.values())
        every = [x for rs in rounds.values() for x in rs]
        med[(server, fmt)] = gen
        print(f"| {server} | {fmt} | {gen:.1f} | {ttft:.1f} | "
              f"{statistics.median(x['tokens'] for x in every):.0f} | "
              f"{sum(x['finish'] == 'stop' for x in every)}/{len(every)} | "
              f"{sum(x['follows'] for x in every)}/{len(every)} |")
    print()
    for server in sorted({s for s, _ in med}):
        for fmt in ("schema", "schema_biased", "object"):
            if (server, fmt) in med and (server, "free") in med:
                print(f"{server}: {fmt} / free generation speed = "
                      f"{med[(server, fmt)] / med[(server, 'free')]:.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", action="append", default=[], help="NAME=URL, repeatable")
    p.add_argument("--model", default="smollm2:135m")
    p.add_argument("--formats", default="free,schema,object")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=3,
                   help="requests (or, with --concurrency, batches) per server, format and round")
    p.add_argument("--concurrency", type=int, default=1,
                   help="requests sent at once; each batch also reports aggregate tokens/s")
    p.add_argument("--max-tokens", type=int, default=400)
    p.add_argument("--summary", metavar="FILE")
    a = p.parse_args()
    if a.summary:
        summary(a.summary)
    elif a.server:
        run(a)
    else:
        p.error("give --server NAME=URL (one or more) or --summary FILE")


if __name__ == "__main__":
    main()
