#!/usr/bin/env bash
# Makes a seed corpus for the `parse` fuzz target from the GGUF models in
# $MOAT_TEST_MODELS (or the directory given as $1). For each model it writes
#   <model>.head64k / .head256k  the first 64 KiB / 256 KiB (a cut header), and
#   <model>.mini                 a small valid GGUF with the model's metadata
#                                (arrays cut to 16 elements) and all its tensor
#                                infos shrunk to one block each, data zeroed.
# The corpus lands in fuzz/corpus/parse/, which git ignores: model bytes are
# never committed. Needs bash, head and python3 (standard library only).
set -euo pipefail

models="${1:-${MOAT_TEST_MODELS:-}}"
if [[ -z "$models" || ! -d "$models" ]]; then
    echo "usage: MOAT_TEST_MODELS=/dir/with/ggufs $0   (or: $0 /dir)" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
corpus="$here/corpus/parse"
mkdir -p "$corpus"

shopt -s nullglob
found=0
for model in "$models"/*.gguf; do
    found=1
    base="$(basename "$model" .gguf)"
    head -c 65536 "$model" > "$corpus/$base.head64k"
    head -c 262144 "$model" > "$corpus/$base.head256k"
    python3 - "$model" "$corpus/$base.mini" <<'PY'
import struct, sys

# (elements per block, bytes per block) by ggml type id; unknown ids get F32.
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
          8: (32, 34), 9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144),
          13: (256, 176), 14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74),
          18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
          23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
          29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17)}
SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "B",
          10: "Q", 11: "q", 12: "d"}
KEEP = 16

src = open(sys.argv[1], "rb")
def take(fmt):
    size = struct.calcsize("<" + fmt)
    return struct.unpack("<" + fmt, src.read(size))[0]
def raw_string():
    n = take("Q")
    return struct.pack("<Q", n) + src.read(n)
def value(ty):
    """Reads a value and returns it re-encoded, arrays cut to KEEP elements."""
    if ty in SCALAR:
        return struct.pack("<" + SCALAR[ty], take(SCALAR[ty]))
    if ty == 8:
        return raw_string()
    elem, count = take("I"), take("Q")
    items = [value(elem) for _ in range(count)] if elem == 9 or elem == 8 else None
    if items is None:
        size = struct.calcsize("<" + SCALAR[elem])
        data = src.read(size * count)
        items = [data[i * size:(i + 1) * size] for i in range(min(count, KEEP))]
    items = items[:KEEP]
    return struct.pack("<IQ", elem, len(items)) + b"".join(items)

assert src.read(4) == b"GGUF"
version, n_tensors, n_kv = take("I"), take("Q"), take("Q")
out = bytearray(b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv))
alignment = 32
for _ in range(n_kv):
    key = raw_string()
    ty = take("I")
    encoded = value(ty)
    if key[8:] == b"general.alignment":
        alignment = struct.unpack("<I", encoded)[0]
    out += key + struct.pack("<I", ty) + encoded
offset = 0
for _ in range(n_tensors):
    name = raw_string()
    n_dims = take("I")
    [take("Q") for _ in range(n_dims)]
    ty, _ = take("I"), take("Q")
    block, size = BLOCKS.get(ty, (1, 4))
    ty = ty if ty in BLOCKS else 0
    dims = [block] + [1] * (n_dims - 1) if n_dims else []
    if not n_dims:
        ty, size = 0, 4
    out += name + struct.pack("<I", n_dims) + b"".join(struct.pack("<Q", d) for d in dims)
    out += struct.pack("<IQ", ty, offset)
    offset = (offset + size + alignment - 1) // alignment * alignment
out += bytes(-len(out) % alignment) + bytes(offset)
open(sys.argv[2], "wb").write(out)
PY
    echo "seeded from $model"
done
if [[ $found == 0 ]]; then
    echo "no .gguf files in $models" >&2
    exit 1
fi
ls -l "$corpus"
