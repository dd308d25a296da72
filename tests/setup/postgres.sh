#!/usr/bin/env bash
# Debian's postgresql, for the state store's HA tests (database lease, migrations from two
# replicas). The tests run their own throwaway cluster (tests/support/postgres.py); the
# packaged cluster and service are not used. Idempotent: nothing to do when the server
# binaries are already there (on PATH or under /usr/lib/postgresql/*/bin).
set -euo pipefail
have() {
  command -v "$1" >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}
if have postgres && have initdb; then
  exit 0
fi
echo "postgres.sh: installing postgresql"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d: keep the package's own service from starting; the tests run their own server.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  created_policy=1
fi
status=0
apt-get install -y -qq --no-install-recommends postgresql >/dev/null || status=$?
if [[ "$created_policy" == 1 ]]; then
  rm -f "$policy"
fi
if [[ "$status" == 0 ]] && ! { have postgres && have initdb; }; then
  echo "postgres.sh: postgresql installed but no postgres/initdb binary found" >&2
  exit 1
fi
exit "$status"
