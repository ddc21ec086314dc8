#!/usr/bin/env bash
# The whole test suite: fetches the test models (cached), prepares the Python test tools in a
# virtual environment and PGlite, a Postgres with pgvector (cached), then runs the Rust tests and
# the Python client tests.
# Needs Rust, python3 with pip and venv, node with npm, and a C compiler. `.ci/run` installs
# those first.
set -euo pipefail
cd "$(dirname "$0")/.."

export MOAT_TEST_MODELS="${MOAT_TEST_MODELS:-$HOME/.cache/moat/test-models}"
VENV="${MOAT_TEST_VENV:-$HOME/.cache/moat/test-venv}"

scripts/fetch-test-models.sh
# The venv is (re)built whenever tests/python/requirements.txt changes (its sha256 is stamped).
want="$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$VENV/.requirements-sha256" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  echo "$want" >"$VENV/.requirements-sha256"
fi

scripts/pglite.sh install
cargo test --release --workspace
"$VENV/bin/python" -m pytest -q tests/python
