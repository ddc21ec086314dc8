#!/usr/bin/env python3
"""Generation beside other llama.cpp decodes on the same cores: moat's engine (engine_bench)
against llama-bench, each run beside CONTENDERS loops of `llama-bench -p 0 -n 512` (2 threads
each), so with --threads 2 (the default) of its own the cores are oversubscribed (3x on 2
cores with the default 2 contenders). Rounds alternate the two, order flipped each round.

    python3 bench/oversubscribed.py --engine-bench target/release/examples/engine_bench \
        --peer ~/.cache/moat-bench/llama.cpp-0.3.36/build-avx2/bin \
        --model smollm2-135m-instruct-q4_1.gguf --rounds 6 --out OUT.jsonl

One JSON line per run: which (moat-engine / llama-bench), round, the tg samples (tok/s, one
per repetition), the run's wall time and the CPU time its process used (user + system, from
wait4), which shows time spent spinning at OpenMP barriers while a partner thread waits for a
core. A run longer than --limit seconds is cut and recorded with "cut": true. Every process
it starts is ended by its PID (contenders by their process group).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time


def contender(peer, model):
    """A shell loop of llama-bench tg runs in its own process group."""
    bench = os.path.join(peer, "llama-bench")
    loop = f'while true; do "{bench}" -m "{model}" -t 2 -p 0 -n 512 -r 1 >/dev/null 2>&1; done'
    env = dict(os.environ, LD_LIBRARY_PATH=peer)
    return subprocess.Popen(["bash", "-c", loop], env=env, start_new_session=True)


def run_measured(argv, env, limit):
    """Runs argv; returns (stdout, wall s, cut). Its CPU time lands in os.times() children."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    cut = False
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        cut = True
    wall = time.monotonic() - start
    # communicate() reaped it; its CPU time is in our children's totals.
    return out, wall, cut


def tg_samples(out):
    for line in out.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("n_prompt") == 0 and row.get("n_gen", 0) > 0:
            return row["samples_ts"]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine-bench", required=True)
    ap.add_argument("--peer", required=True, help="llama-bench's folder (the peer build)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--contenders", type=int, default=2)
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="threads of the measured run")
    ap.add_argument("--limit", type=float, default=300.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    peer_env = dict(os.environ, LD_LIBRARY_PATH=args.peer)
    threads = str(args.threads)
    common = ["-m", args.model, "-t", threads, "-p", "0", "-n", str(args.n_gen), "-r", str(args.reps)]
    commands = {
        "llama-bench": ([os.path.join(args.peer, "llama-bench"), *common, "-o", "jsonl"], peer_env),
        # engine_bench always measures a prompt too: one token keeps it short.
        "moat-engine": ([args.engine_bench, args.model, "-t", threads, "-p", "1", "-n",
                         str(args.n_gen), "-r", str(args.reps)], dict(os.environ)),
    }
    with open(args.out, "a") as out:
        for rnd in range(1, args.rounds + 1):
            order = ["moat-engine", "llama-bench"]
            if rnd % 2 == 0:
                order.reverse()
            for which in order:
                hogs = [contender(args.peer, args.model) for _ in range(args.contenders)]
                try:
                    time.sleep(1.0)
                    before = os.times()
                    stdout, wall, cut = run_measured(*commands[which], args.limit)
                    after = os.times()
                finally:
                    for hog in hogs:
                        os.killpg(hog.pid, signal.SIGKILL)
                        hog.wait()
                cpu = (after.children_user - before.children_user
                       + after.children_system - before.children_system)
                row = {"which": which, "round": rnd, "contenders": args.contenders,
                       "threads": args.threads,
                       "n_gen": args.n_gen, "samples_ts": tg_samples(stdout),
                       "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cut": cut}
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(json.dumps(row), file=sys.stderr)

    rows = [json.loads(line) for line in open(args.out)]
    for which in commands:
        samples = [s for r in rows if r["which"] == which and r["samples_ts"] for s in r["samples_ts"]]
        cuts = sum(r["cut"] for r in rows if r["which"] == which)
        if samples:
            print(f"{which}: tg median {statistics.median(samples):.1f} tok/s, "
                  f"min {min(samples):.1f}, max {max(samples):.1f} over {len(samples)} samples; "
                  f"{cuts} runs cut")


if __name__ == "__main__":
    main()
