#!/usr/bin/env bash
# CycloneDX SBOMs into sbom/: the Python runtime dependency closure (cyclonedx-py) and the Rust
# workspace (cargo-cyclonedx, installed from crates.io when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
mkdir -p sbom
"$BIN/python" scripts/runtime_requirements.py agentgate > sbom/python-requirements.txt
"$BIN/cyclonedx-py" requirements --pyproject pyproject.toml --output-format JSON \
  --output-file sbom/python.cdx.json sbom/python-requirements.txt
if ! cargo cyclonedx --version >/dev/null 2>&1; then
  echo "sbom: installing cargo-cyclonedx (cargo install)…"
  cargo install cargo-cyclonedx --locked --quiet
fi
cargo cyclonedx --format json --all-features --spec-version 1.5 --override-filename rust.cdx
for crate in rust bindings; do
  mv "$crate/rust.cdx.json" "sbom/rust-${crate/#rust/core}.cdx.json"
done
echo "sbom: $(ls sbom/*.cdx.json | tr '\n' ' ')"
