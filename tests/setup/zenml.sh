#!/usr/bin/env bash
# Side venv .cache/venvs/zenml: zenml[server]==0.98.0 + pymysql, from tests/setup/zenml.lock.
# Used to populate ZenML stores (SQLite files, MariaDB) with ZenML's own code and to
# run a real ZenML server for the REST registry tests.
# Re-lock: $UV pip compile tests/setup/zenml.in -p 3.11 -o tests/setup/zenml.lock
# Idempotent: a venv whose marker matches the lock's hash is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV="${UV:-.cache/uv/bin/uv}"
PYTHON="${PYTHON:-python3.11}"

lock="tests/setup/zenml.lock"
venv=".cache/venvs/zenml"
want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ -f "$venv/.installed" && "$(cat "$venv/.installed")" == "$want" ]]; then
  exit 0
fi
echo "zenml.sh: installing $venv from $lock"
"$UV" venv --quiet --allow-existing -p "$PYTHON" "$venv"
"$UV" pip sync --quiet -p "$venv" "$lock"
"$venv/bin/python" -c "import zenml, pymysql, zenml.zen_server" >/dev/null
echo "$want" > "$venv/.installed"
