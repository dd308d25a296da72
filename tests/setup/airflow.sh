#!/usr/bin/env bash
# Side venvs with real Airflow servers for the Airflow target's integration tests:
#   .cache/venvs/airflow3  apache-airflow 3.x (/api/v2), same version as the product's client
#   .cache/venvs/airflow2  apache-airflow 2.10.x (/api/v1)
# The two cannot share a venv (nor the product's, whose apache-airflow-client is 3.x).
# Locks are compiled with `uv pip compile` (see the header of each .lock) because
# Airflow's own constraints files live on GitHub, which is not reachable here.
# Idempotent: a venv whose marker matches its lock's hash is left alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV="${UV:-.cache/uv/bin/uv}"
PYTHON="${PYTHON:-python3.11}"

for name in airflow3 airflow2; do
  lock="tests/setup/${name}.lock"
  venv=".cache/venvs/${name}"
  want="$(sha256sum "$lock" | cut -d' ' -f1)"
  if [[ -f "$venv/.installed" && "$(cat "$venv/.installed")" == "$want" ]]; then
    continue
  fi
  echo "airflow.sh: installing $venv from $lock"
  "$UV" venv --quiet --allow-existing -p "$PYTHON" "$venv"
  "$UV" pip sync --quiet -p "$venv" "$lock"
  "$venv/bin/airflow" version >/dev/null
  echo "$want" > "$venv/.installed"
done
