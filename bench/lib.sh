# Helpers for the benchmark scripts (bench/engine.sh, bench/gpu/*.sh): sourced, not run.

# bench_paths HERE: sets moat, peer (llama-server's folder) and model from MOAT_BIN, PEER_BIN and
# MODEL_FILE, or their defaults (HERE is the bench folder).
bench_paths() {
  moat=${MOAT_BIN:-$1/../target/release/moat}
  peer=${PEER_BIN:-$HOME/.cache/moat-bench/llama.cpp-0.3.36/build-avx2/bin}
  model=${MODEL_FILE:-$HOME/.cache/moat/test-models/smollm2-135m-instruct-q4_1.gguf}
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_up PORT PID: waits up to 120 s for GET /health on 127.0.0.1:PORT to answer 200; fails at
# once when process PID has exited.
wait_up() {
  for _ in $(seq 1 600); do
    kill -0 "$2" 2>/dev/null || return 1
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://127.0.0.1:$1/health" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}
