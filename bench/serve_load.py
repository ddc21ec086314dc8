#!/usr/bin/env python3
"""Load client for OpenAI-compatible servers (moat serve, llama-server).

Standard library only (threads + http.client), so it runs with any python3 and adds no
dependency of its own. Every request is a streaming /v1/chat/completions call with
temperature 0 and stream_options.include_usage; a token's arrival time is the arrival of the
SSE chunk that carries its text.

Modes (one JSON object on stdout per run):
  load    --concurrency C workers, each sending --requests requests back to back (distinct
          short prompts asking for long answers), --max-tokens each. Reports aggregate
          generated tokens/s (sum of completion tokens / wall time of the whole run), p50/p95
          time to first token, p50/p95/p99 inter-token latency (all gaps pooled) and the share
          of gaps over 100 ms (a stream stalled behind other prompts' prefill), and the
          per-stream generation rate (tokens after the first / time after the first).
  prefix  one warm-up then --requests sequential requests sharing a ~1,000-token system
          prompt, each with a short distinct question, max_tokens --max-tokens. Reports the
          TTFT of every request and their p50.
  shared  --requests rounds; in each, request A (a fresh ~1,000-token system prompt and a
          question, 256 tokens) starts, and once its first token is out request B (the same
          system prompt, another question, --max-tokens) is sent while A still generates.
          Reports B's TTFT and cached prompt tokens per round, their p50, and A's longest gap
          between tokens (B's admission may delay one of A's steps). A server that shares
          prefixes across running sequences serves B's system prompt from A's.
  pp      --requests sequential requests with a ~512-token user prompt that differs from its
          first word on (so no prefix cache helps), max_tokens 1. Reports prompt tokens (from
          usage) / TTFT = prompt processing tokens/s, median over requests.
  short   --requests sequential streaming /v1/completions requests, max_tokens 1, whose
          prompts are "z" and a number counting up from a random start (about 7 tokens): each
          shares its first tokens with the one before, and none repeats. Reports the TTFT of
          every request, their p50, and the cached prompt tokens (usage) of each. What a
          one-slot server does with a short shared start: llama-server keeps it in its slot.
"""
import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

TOPICS = [
    "a lighthouse keeper", "a lost robot", "the history of bread", "a dragon who bakes",
    "the water cycle", "a journey to Mars", "an old clockmaker", "the ocean floor",
    "a city of cats", "a winter festival", "a talking tree", "the first airplane",
    "a desert caravan", "a library at night", "a mountain village", "a pirate's map",
]

FILLER = (
    "The committee reviewed the quarterly report on regional rail maintenance, noting that "
    "track inspections were completed on schedule, signal upgrades were delayed by supply "
    "issues, and passenger satisfaction improved slightly after the timetable change. "
)


def ms(x):
    return None if x is None else round(1e3 * x, 2)


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def post_stream(url, path, body, timeout):
    """POSTs `body` (JSON text) to `path` asking for an event stream; returns the connection,
    the response (status 200, else an error) and the time the request was sent."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", path, body=body,
                 headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    return conn, resp, t0


def stream_chat(url, model, messages, max_tokens, timeout=300, first_token=None, extra=None):
    """One streaming chat completion. Returns dict with t0, token times, usage. Sets the
    threading.Event `first_token` (if given) when the first token arrives. `extra` adds or
    replaces body fields (`response_format`, ...)."""
    body = json.dumps({
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
        **(extra or {}),
    })
    conn, resp, t0 = post_stream(url, "/v1/chat/completions", body, timeout)
    times = []
    usage = None
    text = []
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        now = time.perf_counter()
        obj = json.loads(data)
        if obj.get("usage"):
            usage = obj["usage"]
        for ch in obj.get("choices") or []:
            piece = (ch.get("delta") or {}).get("content")
            if piece:
                times.append(now)
                text.append(piece)
                if first_token is not None:
                    first_token.set()
    conn.close()
    t_end = time.perf_counter()
    return {"t0": t0, "times": times, "t_end": t_end, "usage": usage, "text": "".join(text)}


def n_completion(r):
    if r["usage"] and r["usage"].get("completion_tokens") is not None:
        return r["usage"]["completion_tokens"]
    return len(r["times"])


def mode_load(a):
    results = []
    errors = []
    lock = threading.Lock()

    def worker(w):
        for i in range(a.requests):
            topic = TOPICS[(w * a.requests + i) % len(TOPICS)]
            # A unique opening (a nanosecond clock) keeps every prompt distinct across
            # workers, requests and rounds, so no prompt cache serves a repeat; with --repeat
            # the prompts are the same in every round (what a prompt cache is for).
            opening = f"Request {w}-{i}" if a.repeat else f"{time.time_ns()} {w}-{i}"
            msgs = [{"role": "user", "content":
                     f"{opening}. Write a long, detailed story about {topic}."}]
            try:
                r = stream_chat(a.url, a.model, msgs, a.max_tokens)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(a.concurrency)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    total = sum(n_completion(r) for r in results)
    ttft = [r["times"][0] - r["t0"] for r in results if r["times"]]
    itl = []
    per_stream = []
    for r in results:
        ts = r["times"]
        itl += [b - a_ for a_, b in zip(ts, ts[1:])]
        if len(ts) > 1:
            per_stream.append((n_completion(r) - 1) / (ts[-1] - ts[0]))
    return {
        "mode": "load", "concurrency": a.concurrency, "requests": len(results),
        "errors": errors, "wall_s": wall, "completion_tokens": total,
        "agg_tok_s": total / wall,
        "ttft_p50_ms": ms(percentile(ttft, 50)), "ttft_p95_ms": ms(percentile(ttft, 95)),
        "itl_p50_ms": ms(percentile(itl, 50)), "itl_p95_ms": ms(percentile(itl, 95)),
        "itl_p99_ms": ms(percentile(itl, 99)),
        # Gaps of a whole prefill step or more (a stream stalled behind other prompts).
        "itl_over_100ms_pct": (round(100.0 * sum(g > 0.1 for g in itl) / len(itl), 3)
                               if itl else None),
        "stream_tg_tok_s_median": statistics.median(per_stream) if per_stream else None,
    }


def system_prompt():
    # ~1,000 tokens with SmolLM2's tokenizer (the filler is ~40 tokens a sentence).
    return ("You are the assistant of a regional transport authority. Answer briefly. "
            "Background material follows.\n" + FILLER * 24)


QUESTIONS = [
    "What was delayed?", "What improved?", "Who reviewed the report?", "What was on schedule?",
    "Why were upgrades delayed?", "Summarise in five words.", "Is the tone positive?",
    "What changed for passengers?", "Name one risk.", "What is the main topic?",
    "Give one recommendation.", "What happens next quarter?",
]


def mode_prefix(a):
    sysmsg = {"role": "system", "content": system_prompt()}
    warm = stream_chat(a.url, a.model, [sysmsg, {"role": "user", "content": "Hello."}],
                       a.max_tokens)
    ttft = []
    ptoks = None
    for i in range(a.requests):
        q = QUESTIONS[i % len(QUESTIONS)]
        r = stream_chat(a.url, a.model, [sysmsg, {"role": "user", "content": q}], a.max_tokens)
        end = r["times"][0] if r["times"] else r["t_end"]
        ttft.append(end - r["t0"])
        if r["usage"]:
            ptoks = r["usage"].get("prompt_tokens")
    return {
        "mode": "prefix", "requests": len(ttft), "prompt_tokens": ptoks,
        "warmup_prompt_tokens": (warm["usage"] or {}).get("prompt_tokens"),
        "ttft_ms": [round(1e3 * t, 1) for t in ttft],
        "ttft_p50_ms": 1e3 * statistics.median(ttft),
    }


LONG_ASK = "Write a long, detailed story about the people behind this report."


def mode_shared(a):
    ttft, cached, a_gaps = [], [], []
    for i in range(a.requests):
        # A fresh opening each round, so that only A (running) holds this system prompt.
        sysmsg = {"role": "system", "content": f"Session {time.time_ns()}. " + system_prompt()}
        started = threading.Event()
        first = {}

        def run_a():
            try:
                first["r"] = stream_chat(a.url, a.model,
                                         [sysmsg, {"role": "user", "content": LONG_ASK}],
                                         a.a_tokens, first_token=started)
            finally:
                started.set()

        thread = threading.Thread(target=run_a)
        thread.start()
        started.wait()
        q = QUESTIONS[i % len(QUESTIONS)]
        r = stream_chat(a.url, a.model, [sysmsg, {"role": "user", "content": q}], a.max_tokens)
        end = r["times"][0] if r["times"] else r["t_end"]
        thread.join()
        if "r" not in first:
            raise RuntimeError("request A failed")
        a_times = first["r"]["times"]
        # B joins at the next step after it is sent (tens of ms on a CPU); A must outlast that.
        if not a_times or a_times[-1] < r["t0"] + a.a_margin:
            raise RuntimeError("A ended right after B was sent: B may not have run beside it")
        ttft.append(end - r["t0"])
        cached.append(((r["usage"] or {}).get("prompt_tokens_details") or {})
                      .get("cached_tokens"))
        gaps = [t1 - t0 for t0, t1 in zip(a_times, a_times[1:])]
        a_gaps.append(max(gaps) if gaps else None)
    return {
        "mode": "shared", "requests": len(ttft),
        "ttft_ms": [round(1e3 * t, 1) for t in ttft],
        "ttft_p50_ms": 1e3 * statistics.median(ttft),
        "cached_tokens": cached,
        "a_max_gap_ms": [ms(g) for g in a_gaps],
    }


def mode_pp(a):
    rates = []
    ttfts = []
    ptoks = []
    for i in range(a.requests):
        # A distinct opening word each time defeats any prompt/prefix cache beyond the
        # template's few leading tokens.
        content = (f"{TOPICS[i % len(TOPICS)]} {i} {time.time_ns()}. " + FILLER * 12
                   + "Summarise the above.")
        r = stream_chat(a.url, a.model, [{"role": "user", "content": content}], 1)
        end = r["times"][0] if r["times"] else r["t_end"]
        t = end - r["t0"]
        p = (r["usage"] or {}).get("prompt_tokens")
        ttfts.append(t)
        ptoks.append(p)
        if p:
            rates.append(p / t)
    return {
        "mode": "pp", "requests": len(ttfts), "prompt_tokens": ptoks,
        "ttft_ms": [round(1e3 * t, 1) for t in ttfts],
        "pp_tok_s_median": statistics.median(rates) if rates else None,
    }


def stream_completion(url, model, prompt, max_tokens, timeout=300):
    """One streaming /v1/completions request; returns its start, first-text and end times
    and its usage."""
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn, resp, t0 = post_stream(url, "/v1/completions", body, timeout)
    first = None
    usage = None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for ch in chunk.get("choices") or []:
            if ch.get("text") and first is None:
                first = time.perf_counter()
    t_end = time.perf_counter()
    conn.close()
    return {"t0": t0, "first": first, "t_end": t_end, "usage": usage}


def mode_short(a):
    start = random.randint(100_000, 800_000)
    ttfts = []
    cached = []
    for i in range(a.requests):
        r = stream_completion(a.url, a.model, f"z{start + i}", 1)
        ttfts.append((r["first"] or r["t_end"]) - r["t0"])
        details = (r["usage"] or {}).get("prompt_tokens_details") or {}
        cached.append(details.get("cached_tokens"))
    return {
        "mode": "short", "requests": len(ttfts), "cached_tokens": cached,
        "ttft_ms": [round(1e3 * t, 2) for t in ttfts],
        "ttft_p50_ms": ms(statistics.median(ttfts)),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["load", "prefix", "shared", "pp", "short"])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--model", default="smollm2:latest")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--requests", type=int, default=2,
                   help="load: per worker; prefix/pp/short: total (sequential); shared: rounds")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--a-tokens", type=int, default=256,
                   help="shared: max_tokens of the running request A")
    p.add_argument("--a-margin", type=float, default=0.5,
                   help="shared: seconds A must still run after B was sent (less on a GPU)")
    p.add_argument("--repeat", action="store_true",
                   help="load: the same prompts in every round instead of unique ones")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="extra fields copied into the JSON result (repeatable)")
    a = p.parse_args()
    out = {"load": mode_load, "prefix": mode_prefix, "shared": mode_shared,
           "pp": mode_pp, "short": mode_short}[a.mode](a)
    out["url"] = a.url
    for t in a.tag:
        k, _, v = t.partition("=")
        out[k] = int(v) if v.isdigit() else v
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
