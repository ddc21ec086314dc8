#!/usr/bin/env bash
# Runs the knowledge-base benchmarks (docs/PERFORMANCE.md, "Knowledge bases") and prints their
# tables; raw results go to bench/results/rag-*.json.
#
#   bench/rag/run.sh                 # everything: quality, ingest, latency
#   bench/rag/run.sh quality latency # some of them
#
# Needs: apt-get install -y rust-doc (the corpus), the test model all-minilm-l6-v2 under
# $MOAT_TEST_MODELS (default ~/.cache/moat/test-models; scripts/fetch-test-models.sh).
# Knobs: RUNS (ingest runs, 3), PASSES (latency passes, 3), TOTAL (100000), REAL (real
# chunks among them, 3000; rust-doc's manuals hold 7798), QUERIES (200), WORK (corpus copies
# and the 100k knowledge base, reused between runs; default ~/.cache/moat-bench/rag),
# RESULTS (bench/results), TAG (file name suffix; the date), REUSE_INDEX (1: the latency part
# loads the index file of an earlier run instead of timing a rebuild, minutes at 100k chunks).
set -euo pipefail
cd "$(dirname "$0")/../.."

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(quality ingest latency)
work=${WORK:-$HOME/.cache/moat-bench/rag}
results=${RESULTS:-bench/results}
tag=${TAG:-$(date -u +%Y-%m-%d)}
html=${RUST_DOC_HTML:-/usr/share/doc/rust-doc/html}
mkdir -p "$work" "$results"

cargo build --release -p moat-rag --example rag_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/rag_bench

bench/rag/make_corpus.sh "$work/rust-book" > /dev/null
STRIP_SIDEBAR=1 bench/rag/make_corpus.sh "$work/rust-book-nosidebar" > /dev/null

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "corpus: $(head -1 "$work/rust-book/.corpus-version"), $(grep files: "$work/rust-book/.corpus-version")"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

for part in "${parts[@]}"; do
    case $part in
    quality)
        "$bin" quality --corpus "$work/rust-book" --questions bench/rag/questions.jsonl \
            --label "pages as shipped" --out "$results/rag-quality-$tag.json"
        "$bin" quality --corpus "$work/rust-book-nosidebar" --questions bench/rag/questions.jsonl \
            --label "mdBook sidebar removed" --out "$results/rag-quality-nosidebar-$tag.json"
        ;;
    ingest)
        "$bin" ingest --corpus "$work/rust-book" --runs "${RUNS:-3}" \
            --out "$results/rag-ingest-$tag.json"
        ;;
    latency)
        # Real chunks from the Rust book and the other mdBook manuals rust-doc ships.
        sources=()
        for book in book rust-by-example reference nomicon edition-guide embedded-book rustc rustdoc unstable-book; do
            [ -d "$html/$book" ] && sources+=(--sources "$html/$book")
        done
        "$bin" latency "${sources[@]}" --questions bench/rag/questions.jsonl \
            --work "$work/latency" --total "${TOTAL:-100000}" --real "${REAL:-3000}" \
            --queries "${QUERIES:-200}" --passes "${PASSES:-3}" --reuse-index "${REUSE_INDEX:-0}" \
            --out "$results/rag-latency-$tag.json"
        ;;
    *)
        echo "run.sh: unknown part $part (quality, ingest, latency)" >&2
        exit 2
        ;;
    esac
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
