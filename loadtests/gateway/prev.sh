#!/usr/bin/env bash
# Builds the previous release of agentgate (a wheel from PREV_COMMIT, the last commit before the
# data-plane redesign) and installs it into a venv of its own, so `bench.py` can run it side by
# side with the checkout as the peer `agentgate-prev`. Cached under ~/.cache/agentgate, keyed by
# the full commit id: a second run does nothing. Prints the venv's path on stdout.
#
#     PREV_COMMIT=77f1305 bash loadtests/gateway/prev.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
PREV_COMMIT="${PREV_COMMIT:-77f1305}"

log() { printf '[prev] %s\n' "$*" >&2; }

commit="$(git -C "$ROOT" rev-parse --verify "$PREV_COMMIT^{commit}")"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/agentgate/prev-$commit"
venv="$cache/venv"
if [ -x "$venv/bin/agentgate" ] && [ -f "$venv/.installed" ]; then
    echo "$venv"
    exit 0
fi
mkdir -p "$cache/wheels"
if ! ls "$cache"/wheels/agentgate-*.whl >/dev/null 2>&1; then
    src="$(mktemp -d "${TMPDIR:-/tmp}/agentgate-prev-src.XXXXXX")"
    trap 'rm -rf "$src"' EXIT
    log "building a wheel of $commit (maturin build --release; a few minutes, once)"
    git -C "$ROOT" archive "$commit" | tar -x -C "$src"
    # Its own target dir: the shared one holds the checkout's build of the same crates.
    (cd "$src" && nice -n 10 env CARGO_TARGET_DIR="$cache/target" \
        "$(dirname "$PY")/maturin" build --release --quiet --out "$cache/wheels" >&2)
    rm -rf "$cache/target"
fi
log "installing it into $venv"
rm -rf "$venv"
"$PY" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip >&2
# The dependencies both versions share (granian, uvloop, pydantic, ...) at the checkout's
# versions, so the comparison is of agentgate's code, not of its libraries.
constraints="$cache/constraints.txt"
"$PY" -m pip freeze --exclude-editable | grep -v '^agentgate' >"$constraints" || true
"$venv/bin/pip" install -q -c "$constraints" "$cache"/wheels/agentgate-*.whl >&2
touch "$venv/.installed"
echo "$venv"
