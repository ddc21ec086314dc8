#!/usr/bin/env bash
# Builds the GPU peer: llama.cpp's llama-server and llama-bench with the CUDA backend, from the
# llama.cpp inside llama-cpp-python's source package (the same sources as the CPU peer,
# bench/llamacpp/build.sh), with the compiler and cuBLAS that scripts/build-cuda.sh takes from
# NVIDIA's pip wheels, kernels for sm_90 (H100, H200) only. CPU flags as the CPU peer's avx2
# build (bench/llamacpp/greedy_reference.sh), which are llama-cpp-sys-2's defaults; one static
# binary each (ggml linked in), needing libcudart.so.13, libcublas.so.13 and libcublasLt.so.13
# and the driver at run time, like moat's CUDA build.
#
#   bench/gpu/build-peer.sh        # prints the bin folder as its last line
#
# Run scripts/build-cuda.sh first (it fetches the toolkit). About 50 minutes on 2 cores (measured
# while a CUDA build of moat ran beside it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
cache=${MOAT_BENCH_CACHE:-$HOME/.cache/moat-bench}
cuda=${CUDA_VERSION:-13.0}
archs=${CUDA_ARCHS:-90-real}
toolkit=${MOAT_CUDA_TOOLKIT:-$HOME/.cache/moat/cuda-$cuda}
root=$toolkit/nvidia/cu${cuda%%.*}
src=$cache/src/llama_cpp_python-$version/vendor/llama.cpp
build=$cache/llama.cpp-$version/build-cuda

[ -x "$root/bin/nvcc" ] || { echo "no nvcc in $root: run scripts/build-cuda.sh first" >&2; exit 1; }
[ -f "$src/CMakeLists.txt" ] || "$here/../llamacpp/build.sh" >/dev/null
commit=$(cat "$cache/llama.cpp-$version/llama-commit.txt")

export PATH="$root/bin:$PATH" CUDAToolkit_ROOT="$root" CUDACXX="$root/bin/nvcc"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$src" -B "$build" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_C_FLAGS=-ffunction-sections -fdata-sections -fPIC -m64 -march=x86-64" \
    "-DCMAKE_CXX_FLAGS=-ffunction-sections -fdata-sections -fPIC -m64 -march=x86-64" \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DGGML_SSE42=ON -DGGML_AVX512=OFF -DGGML_OPENMP=ON -DGGML_CCACHE=OFF \
    -DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$archs" "-DCMAKE_CUDA_COMPILER=$root/bin/nvcc" \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_LLGUIDANCE=OFF "-DLLAMA_BUILD_COMMIT=$commit" >&2
fi
cmake --build "$build" -j "${JOBS:-2}" --target llama-server llama-bench >&2
echo "$build/bin"
