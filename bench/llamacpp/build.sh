#!/usr/bin/env bash
# Build llama.cpp's own tools (llama-server, llama-cli, llama-completion,
# llama-bench, llama-fit-params) as a reference peer for `moat show`.
#
# The llama.cpp sources come from the llama.cpp copy vendored inside the PyPI
# *source* distribution of llama-cpp-python (vendor/llama.cpp), so only the
# package registry is needed. Nothing fetched here is ever placed in the repo:
# everything lives under ~/.cache/moat-bench (override with MOAT_BENCH_CACHE).
#
# Idempotent: re-running skips the download, the unpack, the configure step
# when the build dir is already configured, and make only rebuilds what changed.
#
# Env knobs:
#   LLAMA_CPP_PYTHON_VERSION  (default 0.3.36 -> llama.cpp ggml-org@0c1e57098)
#   MOAT_BENCH_CACHE          (default ~/.cache/moat-bench)
#   JOBS                      (default 2; the dev machines have 2 cores)
#
# Prints the bin folder as its last line of stdout.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${MOAT_BENCH_CACHE:-$HOME/.cache/moat-bench}"
JOBS="${JOBS:-2}"
SDIST_DIR="$CACHE/sdist"
SRC_ROOT="$CACHE/src"
PKG_DIR="$SRC_ROOT/llama_cpp_python-$VERSION"
LLAMA_SRC="$PKG_DIR/vendor/llama.cpp"
BUILD_DIR="$CACHE/llama.cpp-$VERSION/build"
TARGETS=(llama-server llama-cli llama-completion llama-bench llama-fit-params)

log() { echo "[build.sh] $*" >&2; }

# --- 1. system packages (cmake, a C++ compiler) -----------------------------
need_pkgs=()
command -v cmake >/dev/null 2>&1 || need_pkgs+=(cmake)
command -v g++   >/dev/null 2>&1 || need_pkgs+=(g++)
command -v make  >/dev/null 2>&1 || need_pkgs+=(make)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    log "installing ${need_pkgs[*]} via apt-get"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

# --- 2. the llama-cpp-python sdist -------------------------------------------
mkdir -p "$SDIST_DIR" "$SRC_ROOT"
SDIST="$SDIST_DIR/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    log "downloading llama-cpp-python==$VERSION sdist from PyPI"
    # --no-binary is limited to this one package on purpose: with ':all:' pip
    # would also build the *build* dependencies (cmake, ninja) from source
    # just to prepare metadata, which takes ~15 minutes on 2 cores.
    python3 -m pip download --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$VERSION" -d "$SDIST_DIR" >&2
fi
[ -f "$SDIST" ] || { log "sdist not found at $SDIST"; exit 1; }

if [ ! -f "$LLAMA_SRC/CMakeLists.txt" ]; then
    log "unpacking $SDIST"
    tar -xzf "$SDIST" -C "$SRC_ROOT"
fi

# The sdist carries no .git, so derive the upstream llama.cpp commit from the
# package's CHANGELOG ("update llama.cpp to ggml-org/llama.cpp@<sha>").
LLAMA_COMMIT="$(awk -v v="## [$VERSION]" '
    index($0, v) == 1 { on = 1; next }
    on && /^## \[/ { exit }
    on && match($0, /llama\.cpp@[0-9a-f]+/) { print substr($0, RSTART + 10, RLENGTH - 10); exit }
' "$PKG_DIR/CHANGELOG.md" 2>/dev/null || true)"
LLAMA_COMMIT="${LLAMA_COMMIT:-unknown}"
log "llama-cpp-python $VERSION vendors llama.cpp commit $LLAMA_COMMIT"

# --- 3. configure -------------------------------------------------------------
# Everything that could reach the network at configure/build time is off:
# the prebuilt web UI (HF bucket download), the UI build (npm), curl/openssl.
CMAKE_FLAGS=(
    -DCMAKE_BUILD_TYPE=Release
    -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_BUILD_UI=OFF
    -DLLAMA_CURL=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_SERVER=ON
    -DLLAMA_LLGUIDANCE=OFF
    -DGGML_NATIVE=ON
    -DGGML_CCACHE=OFF
    -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT"
)
mkdir -p "$BUILD_DIR"
printf '%s\n' "${CMAKE_FLAGS[@]}" > "$BUILD_DIR/../cmake-flags.txt"
echo "$LLAMA_COMMIT" > "$BUILD_DIR/../llama-commit.txt"
echo "$VERSION" > "$BUILD_DIR/../llama-cpp-python-version.txt"

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    log "configuring in $BUILD_DIR"
    cmake -S "$LLAMA_SRC" -B "$BUILD_DIR" "${CMAKE_FLAGS[@]}" >&2
fi

# --- 4. build -----------------------------------------------------------------
log "building ${TARGETS[*]} with -j$JOBS"
start=$(date +%s)
cmake --build "$BUILD_DIR" --config Release -j "$JOBS" --target "${TARGETS[@]}" >&2
log "build step took $(( $(date +%s) - start )) s"

BIN="$BUILD_DIR/bin"
for t in "${TARGETS[@]}"; do
    [ -x "$BIN/$t" ] || { log "missing $BIN/$t"; exit 1; }
done
echo "$BIN"
