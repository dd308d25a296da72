#!/usr/bin/env bash
# Debian's mariadb-server, for the ZenML SQL registry's MySQL-path tests. The tests start
# their own throwaway mariadbd (tests/support/mariadb.py); the packaged service is not used.
# Idempotent: nothing to do when mariadbd and mariadb-install-db are already there.
set -euo pipefail
if command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; then
  if command -v mariadb-install-db >/dev/null 2>&1 || [[ -x /usr/bin/mariadb-install-db ]]; then
    exit 0
  fi
fi
echo "mariadb.sh: installing mariadb-server"
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
apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null || status=$?
if [[ "$created_policy" == 1 ]]; then
  rm -f "$policy"
fi
exit "$status"
