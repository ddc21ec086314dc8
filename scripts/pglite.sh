#!/usr/bin/env bash
# PGlite: a real Postgres (compiled to WebAssembly, run by Node) with pgvector, speaking the wire
# protocol on 127.0.0.1. moat-vector-pg's tests run their conformance suite against it.
#
#   scripts/pglite.sh install        installs the pinned packages into the cache (idempotent)
#   scripts/pglite.sh serve [PORT]   runs a server in the foreground (default port 5432)
#   scripts/pglite.sh path           prints the server script's path (what the tests start)
#
# The cache folder is $MOAT_PGLITE_DIR (default ~/.cache/moat/pglite). Needs node and npm.
set -euo pipefail

DIR="${MOAT_PGLITE_DIR:-$HOME/.cache/moat/pglite}"
# Pinned together: pglite-socket names the exact pglite and pgvector versions it works with.
PACKAGES=(
  "@electric-sql/pglite@0.5.14"
  "@electric-sql/pglite-socket@0.2.17"
  "@electric-sql/pglite-pgvector@0.0.15"
)
SERVER="$DIR/node_modules/.bin/pglite-server"
STAMP="$DIR/.installed"
say() { echo "[pglite] $*" >&2; }

install() {
  command -v node >/dev/null || { say "node is not installed"; exit 1; }
  command -v npm >/dev/null || { say "npm is not installed"; exit 1; }
  if [[ -x "$SERVER" && -f "$STAMP" && "$(cat "$STAMP")" == "${PACKAGES[*]}" ]]; then
    say "already installed in $DIR"
    return
  fi
  mkdir -p "$DIR"
  [[ -f "$DIR/package.json" ]] || echo '{"name":"moat-pglite","private":true}' >"$DIR/package.json"
  (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error "${PACKAGES[@]}")
  echo "${PACKAGES[*]}" >"$STAMP"
  say "installed in $DIR"
}

serve() {
  [[ -x "$SERVER" ]] || { say "not installed: run scripts/pglite.sh install"; exit 1; }
  exec "$SERVER" --host 127.0.0.1 --port "${1:-5432}" \
    --extensions @electric-sql/pglite-pgvector:vector
}

case "${1:-}" in
  install) install ;;
  serve) shift; serve "$@" ;;
  path) echo "$SERVER" ;;
  *) echo "usage: $0 install | serve [PORT] | path" >&2; exit 2 ;;
esac
