#!/usr/bin/env bash
# Local pull throughput: `moat pull FILE` (copy + sha256 + GGUF validation + atomic commit)
# against its peer, `cp FILE DIR && sha256sum` of the copy, on the same file in the same run.
#   bench/pull.sh [MODEL_FILE] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-${MOAT_TEST_MODELS:-$HOME/.cache/moat/test-models}/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}"
RUNS="${2:-5}"
cargo build --release -q
BIN="${CARGO_TARGET_DIR:-target}/release/moat"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
size=$(stat -c %s "$MODEL")
best() { sort -n | head -1; }
moat_times=(); peer_times=()
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/home" "$WORK/copy"; mkdir -p "$WORK/copy"
  s=$(date +%s.%N); MOAT_HOME="$WORK/home" "$BIN" pull -q "$MODEL" --name bench >/dev/null; e=$(date +%s.%N)
  moat_times+=("$(echo "$e - $s" | bc)")
  s=$(date +%s.%N); cp "$MODEL" "$WORK/copy/" && sha256sum "$WORK/copy/"* >/dev/null; e=$(date +%s.%N)
  peer_times+=("$(echo "$e - $s" | bc)")
done
m=$(printf '%s\n' "${moat_times[@]}" | best); p=$(printf '%s\n' "${peer_times[@]}" | best)
echo "file: $(basename "$MODEL") ($size bytes), best of $RUNS"
printf 'moat pull:       %.3f s  %.0f MiB/s\n' "$m" "$(echo "$size / 1048576 / $m" | bc -l)"
printf 'cp + sha256sum:  %.3f s  %.0f MiB/s\n' "$p" "$(echo "$size / 1048576 / $p" | bc -l)"
printf 'ratio (peer time / moat time): %.2f\n' "$(echo "$p / $m" | bc -l)"
