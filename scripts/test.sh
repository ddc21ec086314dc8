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
if ! "$VENV/bin/python" -c 'import huggingface_hub, pytest, openai' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

scripts/pglite.sh install
cargo test --release --workspace
"$VENV/bin/python" -m pytest -q tests/python
