#!/usr/bin/env bash
# Builds moat with llama.cpp's CUDA backend on a machine without a system CUDA toolkit (and
# without a GPU): the compiler, runtime and cuBLAS come from NVIDIA's pip wheels, and llama.cpp
# is built as shared libraries (the wheels carry no static cuBLAS). With a system toolkit,
# `cargo build --release --features cuda` is all you need; see docs/gpu.md.
#
#   scripts/build-cuda.sh            # CUDA 13.0, kernels for sm_90 (H100/H200) only
#   CUDA_ARCHS="89-real;90-real" CUDA_VERSION=13.0 scripts/build-cuda.sh
#
# Output: $CARGO_TARGET_DIR/release/moat (default target dir: target-cuda). The shared
# libraries it needs (libllama.so.0, libggml*.so.0) are in
# $CARGO_TARGET_DIR/release/build/llama-cpp-sys-2-*/out/lib/: copy them next to the binary or
# put that folder on LD_LIBRARY_PATH (docs/gpu.md). At run time the machine also needs NVIDIA's
# driver and libcudart.so.13, libcublas.so.13 and libcublasLt.so.13 on the library path.
# Building for one architecture takes about 15 minutes on 2 cores; llama.cpp's default list
# of architectures takes several times longer.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${CUDA_VERSION:-13.0}
archs=${CUDA_ARCHS:-90-real}
toolkit=${MOAT_CUDA_TOOLKIT:-$HOME/.cache/moat/cuda-$version}
major=${version%%.*}
root=$toolkit/nvidia/cu$major

if [ ! -x "$root/bin/nvcc" ]; then
  wheels=$(mktemp -d)
  trap 'rm -rf "$wheels"' EXIT
  echo "fetching the CUDA $version compiler, runtime and cuBLAS (pip wheels)"
  for package in nvidia-cuda-nvcc nvidia-nvvm nvidia-cuda-crt nvidia-cuda-runtime \
    nvidia-cuda-cccl nvidia-cublas; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$wheels" \
      --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2010_x86_64 \
      "$package>=$version,<$major.$((${version#*.} + 1))"
  done
  mkdir -p "$toolkit"
  for wheel in "$wheels"/*.whl; do
    python3 -m zipfile -e "$wheel" "$toolkit"
  done
  chmod +x "$root"/bin/* "$root"/nvvm/bin/*
  # The layout nvcc and CMake's FindCUDAToolkit expect: lib64, targets/<arch>-linux, plain
  # .so names for the linker, and a libcuda stub (the driver comes with the GPU's machine).
  ln -sfn lib "$root/lib64"
  mkdir -p "$root/targets"
  ln -sfn .. "$root/targets/x86_64-linux"
  for lib in cudart cublas cublasLt; do
    ln -sfn "lib$lib.so.$major" "$root/lib/lib$lib.so"
  done
  mkdir -p "$root/lib/stubs"
  grep -oE '\bcu[A-Z][A-Za-z0-9_]*\b' "$root/include/cuda.h" | sort -u \
    | awk '{print "int " $1 "(void) { return 999; }"}' >"$root/lib/stubs/stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$root/lib/stubs/stub.c"
fi

cat >"$toolkit/toolchain.cmake" <<EOF
set(CMAKE_CUDA_ARCHITECTURES "$archs")
set(CMAKE_CUDA_COMPILER "$root/bin/nvcc")
EOF

export PATH="$root/bin:$PATH" CUDAToolkit_ROOT="$root" CUDACXX="$root/bin/nvcc"
export CMAKE_TOOLCHAIN_FILE="$toolkit/toolchain.cmake" LLAMA_BUILD_SHARED_LIBS=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda}
cargo build --release -p moat-cli --features cuda "$@"
echo "built $CARGO_TARGET_DIR/release/moat (CUDA $version, architectures $archs)"
