#!/usr/bin/env python3
"""Checks one running `moat serve` through the official openai SDK, then measures it.

    python3 bench/gpu/check.py --url http://127.0.0.1:PORT --model smollm2:135m --out FILE.json

Written for GPU builds (bench/gpu/run.sh runs it against the same binary on the GPU and on the
CPU), but it checks any OpenAI-compatible server that serves a ChatML model such as SmolLM2.

Checks (each passes or fails; the exit code is 1 when one fails). Three of them compare two runs
of one request (stream, seed, stop); with --repeats-may-differ, for a GPU server with prefix
reuse on, a difference there is reported as NOTE and does not fail (docs/openai-compat.md,
"Seeds and batching").
  chat        a whole chat answer with consistent usage
  stream      a streamed chat answer with stream_options.include_usage: the chunks add up to
              the text and the usage chunk counts them
  n2          n=2 gives two choices
  seed        the same request with the same seed and temperature 0.9 gives the same text twice
  stop        a stop string never appears in the answer (whole and streamed)
  logprobs    chat logprobs with top_logprobs, and completions echo + logprobs over the prompt
  concurrent  16 streams at once, each asked for 48 tokens with end-of-text banned: every one
              returns exactly 48 completion tokens in its usage

Greedy: three prompts, 64 tokens each at temperature 0 with end-of-text banned; the texts go
into the output so that two runs (GPU and CPU) can be compared.

Load (unless --no-load): serve_load.py's load mode at concurrency 1, 8 and 16 (unique prompts, 128
tokens each): aggregate tokens/s, TTFT and inter-token latency.
"""
import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import openai

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import serve_load  # noqa: E402

# SmolLM2's special tokens (<|endoftext|>, <|im_start|>, <|im_end|>): banning them keeps an
# answer going for as many tokens as asked.
NO_EOS = {"0": -100, "1": -100, "2": -100}
GREEDY_PROMPTS = [
    "Tell me a story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "List five fruits and describe each one.",
]


class RepeatDiffers(AssertionError):
    """Two runs of the same request gave different output."""


def user(text):
    return [{"role": "user", "content": text}]


class Checks:
    def __init__(self, client, model, repeats_may_differ):
        self.client = client
        self.model = model
        self.repeats_may_differ = repeats_may_differ
        self.results = []

    def run(self, name, fn):
        started = time.perf_counter()
        try:
            detail = fn() or ""
            ok = True
        except RepeatDiffers as error:
            ok = None if self.repeats_may_differ else False
            detail = f"repeat differs: {error}"
        except Exception as error:  # noqa: BLE001 (a failed check is reported, not raised)
            ok, detail = False, f"{type(error).__name__}: {error}"
        seconds = round(time.perf_counter() - started, 3)
        self.results.append({"check": name, "ok": ok, "detail": detail, "seconds": seconds})
        word = {True: "PASS", False: "FAIL", None: "NOTE"}[ok]
        print(f"{word} {name} ({seconds} s) {detail}", flush=True)

    def chat(self, messages, **kwargs):
        return self.client.chat.completions.create(model=self.model, messages=messages, **kwargs)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_same(first, again, what):
    if first != again:
        raise RepeatDiffers(f"{what}: {first!r} != {again!r}")


def check_chat(c):
    answer = c.chat(user("Say hello."), max_tokens=24, temperature=0)
    u = answer.usage
    expect(answer.choices[0].message.content, "empty answer")
    expect(u.prompt_tokens > 0 and u.completion_tokens > 0, f"usage {u}")
    expect(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage {u}")
    return repr(answer.choices[0].message.content[:60])


def check_stream(c):
    stream = c.chat(user("Name three colours."), max_tokens=32, temperature=0, stream=True,
                    stream_options={"include_usage": True}, logit_bias=NO_EOS)
    pieces, usage = [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    expect(usage is not None, "no usage chunk")
    expect(usage.completion_tokens == 32, f"completion_tokens {usage.completion_tokens}")
    whole = c.chat(user("Name three colours."), max_tokens=32, temperature=0, logit_bias=NO_EOS)
    expect_same("".join(pieces), whole.choices[0].message.content, "streamed and whole")
    return f"{len(pieces)} chunks"


def check_n2(c):
    answer = c.chat(user("Pick a number."), max_tokens=8, temperature=0.8, n=2, seed=3)
    expect(len(answer.choices) == 2, f"{len(answer.choices)} choices")
    expect(sorted(ch.index for ch in answer.choices) == [0, 1], "indices")
    return ""


def check_seed(c):
    texts = [c.chat(user("Write a short poem about rain."), max_tokens=48, temperature=0.9,
                    seed=1234).choices[0].message.content for _ in range(2)]
    expect_same(texts[0], texts[1], "seed 1234 twice")
    return ""


def check_stop(c):
    messages = user("Count from 1 to 20, separated by commas.")
    whole = c.chat(messages, max_tokens=64, temperature=0, stop=["7"]).choices[0]
    expect("7" not in whole.message.content, repr(whole.message.content))
    expect(whole.finish_reason == "stop", whole.finish_reason)
    streamed = "".join(
        choice.delta.content or ""
        for chunk in c.chat(messages, max_tokens=64, temperature=0, stop=["7"], stream=True)
        for choice in chunk.choices)
    expect_same(streamed, whole.message.content, "streamed and whole")
    return repr(whole.message.content[-20:])


def check_logprobs(c):
    answer = c.chat(user("Say yes."), max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
    content = answer.choices[0].logprobs.content
    expect(len(content) == answer.usage.completion_tokens, "one logprob per token")
    expect(all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content), "top_logprobs")
    done = c.client.completions.create(model=c.model, prompt="The capital of France is",
                                       max_tokens=1, temperature=0, echo=True, logprobs=1)
    lp = done.choices[0].logprobs
    expect(len(lp.tokens) == done.usage.prompt_tokens + 1, f"{len(lp.tokens)} tokens")
    expect(lp.token_logprobs[0] is None, "the first prompt token has no logprob")
    expect(all(x <= 0 for x in lp.token_logprobs[1:]), "logprobs above 0")
    return f"echo over {done.usage.prompt_tokens} prompt tokens"


def check_concurrent(c):
    def one(i):
        usage = None
        for chunk in c.chat(user(f"Story {i}: tell me about the sea."), max_tokens=48,
                            temperature=0, logit_bias=NO_EOS, stream=True,
                            stream_options={"include_usage": True}):
            usage = chunk.usage or usage
        return usage.completion_tokens

    with ThreadPoolExecutor(16) as pool:
        counts = list(pool.map(one, range(16)))
    expect(counts == [48] * 16, f"completion tokens {counts}")
    return "16 x 48 tokens"


def greedy(c):
    out = []
    for prompt in GREEDY_PROMPTS:
        answer = c.chat(user(prompt), max_tokens=64, temperature=0, logit_bias=NO_EOS,
                        logprobs=True)
        out.append({"prompt": prompt,
                    "tokens": [t.token for t in answer.choices[0].logprobs.content],
                    "text": answer.choices[0].message.content})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the server's root (without /v1)")
    p.add_argument("--model", default="smollm2:135m")
    p.add_argument("--label", default="")
    p.add_argument("--no-load", action="store_true", help="skip the load runs at 1, 8 and 16")
    p.add_argument("--repeats-may-differ", action="store_true",
                   help="report two runs of a request that differ as NOTE, not FAIL")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    client = openai.OpenAI(base_url=a.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    c = Checks(client, a.model, a.repeats_may_differ)
    for name, fn in [("chat", check_chat), ("stream", check_stream), ("n2", check_n2),
                     ("seed", check_seed), ("stop", check_stop), ("logprobs", check_logprobs),
                     ("concurrent", check_concurrent)]:
        c.run(name, lambda fn=fn: fn(c))
    report = {"label": a.label, "model": a.model, "checks": c.results, "greedy": greedy(c)}
    if not a.no_load:
        report["load"] = []
        for concurrency in (1, 8, 16):
            args = SimpleNamespace(url=a.url, model=a.model, concurrency=concurrency,
                                   requests=max(2, 32 // concurrency), max_tokens=128,
                                   repeat=False)
            row = serve_load.mode_load(args)
            report["load"].append(row)
            print(json.dumps({k: row[k] for k in ("concurrency", "agg_tok_s", "ttft_p50_ms",
                                                  "itl_p50_ms", "itl_p95_ms")}), flush=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    return 0 if all(r["ok"] is not False for r in c.results) else 1


if __name__ == "__main__":
    sys.exit(main())
