#!/usr/bin/env bash
# Installs the servers the test suite starts by itself when they are missing (Debian packages):
# PostgreSQL (tests/pg_ephemeral.py runs initdb + postgres in a temp dir on a free port).
# Does nothing when they are present, or when AGENTGATE_TEST_DATABASE_URL points at a server.
set -euo pipefail

have_pg() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if [ -n "${AGENTGATE_TEST_DATABASE_URL:-}" ] || have_pg; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "services: PostgreSQL is missing; install it (Debian: apt-get install -y postgresql)" \
       "or set AGENTGATE_TEST_DATABASE_URL=postgresql://…" >&2
  exit 1
fi
echo "services: installing PostgreSQL (apt-get)…"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the package from starting a system cluster (tests run their own); one that
# was already there is left alone.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq postgresql >/dev/null
have_pg || { echo "services: PostgreSQL install did not provide initdb" >&2; exit 1; }
