#!/usr/bin/env bash
# Installs what the test suite runs by itself when it is missing (Debian packages):
# - PostgreSQL (tests/pg_ephemeral.py runs initdb + postgres in a temp dir on a free port);
#   skipped when AGENTGATE_TEST_DATABASE_URL points at a server.
# - promtool, from the `prometheus` package (tests/gateway/test_metrics_exposition.py checks the
#   gateway's /metrics with `promtool check metrics`). No Prometheus server is left running.
# - redis-server (tests/redis_ephemeral.py runs one on a Unix socket in a temp dir).
# - a JRE and Maven, then the Kafka broker jars from Maven Central (scripts/kafka.sh, cached in
#   ~/.cache/agentgate; tests/kafka_ephemeral.py runs a single-node KRaft broker from them).
# Does nothing when everything is present.
set -euo pipefail

have_pg() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_promtool() {
  command -v promtool >/dev/null 2>&1
}
have_redis() {
  command -v redis-server >/dev/null 2>&1
}
have_java() {
  command -v java >/dev/null 2>&1
}
have_mvn() {
  command -v mvn >/dev/null 2>&1
}

missing=()
if [ -z "${AGENTGATE_TEST_DATABASE_URL:-}" ] && ! have_pg; then
  missing+=(postgresql)
fi
if ! have_promtool; then
  missing+=(prometheus)
fi
have_redis || missing+=(redis-server)
have_java || missing+=(default-jre-headless)
have_mvn || missing+=(maven)
# observability: Debian's Alertmanager (tests start their own on a free port) and Chromium with
# its matching driver for the dashboard's browser tests
[ -x /usr/bin/prometheus-alertmanager ] || missing+=(prometheus-alertmanager)
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || missing+=(chromium)
here="$(cd "$(dirname "$0")" && pwd)"
if [ "${#missing[@]}" -eq 0 ]; then
  exec bash "$here/kafka.sh"
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "services: missing ${missing[*]}; install (Debian: apt-get install -y ${missing[*]})" \
       "or, for PostgreSQL, set AGENTGATE_TEST_DATABASE_URL=postgresql://…" >&2
  exit 1
fi
echo "services: installing ${missing[*]} (apt-get)…"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the packages from starting system services (a PostgreSQL cluster, a
# Prometheus server): tests run their own servers and only need promtool. One that was already
# there is left alone.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
for pkg in "${missing[@]}"; do
  case "$pkg" in
    postgresql)
      apt-get install -y -qq postgresql >/dev/null
      have_pg || { echo "services: PostgreSQL install did not provide initdb" >&2; exit 1; }
      ;;
    prometheus)
      # no recommends: prometheus-node-exporter would be one more service
      apt-get install -y -qq --no-install-recommends prometheus >/dev/null
      have_promtool || { echo "services: prometheus install did not provide promtool" >&2; exit 1; }
      # The postinst enables the unit/init script for boot; undo that, and stop a server that a
      # permissive policy-rc.d let it start (the package's own init script, by its pidfile).
      update-rc.d prometheus disable >/dev/null 2>&1 || true
      deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
      if [ -d /run/systemd/system ]; then
        systemctl stop prometheus.service >/dev/null 2>&1 || true
      elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true
      fi
      ;;
    redis-server)
      # the package's own server stays off (policy-rc.d above): tests start their own
      apt-get install -y -qq --no-install-recommends redis-server >/dev/null
      have_redis || { echo "services: redis-server install failed" >&2; exit 1; }
      update-rc.d redis-server disable >/dev/null 2>&1 || true
      deb-systemd-helper disable redis-server.service >/dev/null 2>&1 || true
      ;;
    default-jre-headless | maven)
      apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
      ;;
    prometheus-alertmanager)
      apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
      update-rc.d prometheus-alertmanager disable >/dev/null 2>&1 || true
      deb-systemd-helper disable prometheus-alertmanager.service >/dev/null 2>&1 || true
      if [ -d /run/systemd/system ]; then
        systemctl stop prometheus-alertmanager.service >/dev/null 2>&1 || true
      elif [ -x /etc/init.d/prometheus-alertmanager ]; then
        /etc/init.d/prometheus-alertmanager stop >/dev/null 2>&1 || true
      fi
      ;;
    chromium)
      apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
      ;;
  esac
done
bash "$here/kafka.sh"
