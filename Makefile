# The commands people type. `make test` works on a fresh clone: it makes its own venv,
# builds the extension in release mode, and runs cargo and pytest.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-stamp
export CARGO_TERM_COLOR ?= never

.PHONY: dev deps run services test test-rust test-py lint fmt bench bench-core bench-gateway bench-control wheel clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(STAMP)

deps: $(STAMP)

## dev: venv with all dev deps and the extension built in release mode, editable
dev: $(STAMP)
	$(BIN)/maturin develop --release

## run: build, then start the gateway with the demo config (bundled echo agent behind a route)
run: dev
	@echo "Try:"
	@echo "  curl -H 'Authorization: Bearer demo-key' 'http://127.0.0.1:8000/agents/echo/hello?x=1'"
	@echo "  curl -N http://127.0.0.1:8000/public/echo/stream      # SSE through the gateway"
	@echo "  curl http://127.0.0.1:8001/metrics"
	@echo "  curl http://127.0.0.1:8001/api/health/agents"
	@echo "  curl http://127.0.0.1:8001/api/openapi.json                # control-plane API"
	@echo "  .venv/bin/agentgate admin bootstrap --data-dir .agentgate  # first admin API key (shown once)"
	$(BIN)/python -m agentgate serve --config examples/agentgate.yaml

## services: the servers tests start themselves (PostgreSQL), installed when missing
services:
	bash scripts/services.sh

test: dev services test-rust test-py

test-rust:
	cargo test --workspace --release

test-py: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check python tests loadtests
	$(BIN)/ruff format --check python tests loadtests
	$(BIN)/mypy
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --release -- -D warnings

fmt: $(STAMP)
	$(BIN)/ruff format python tests loadtests
	$(BIN)/ruff check --fix python tests loadtests
	cargo fmt --all

## bench-core: micro benchmarks of the core against the Python libraries people use
bench-core: dev
	$(BIN)/python loadtests/bench_core.py --out loadtests/results/core.json

## bench-gateway: agentgate vs direct, nginx, Starlette+httpx and aiohttp proxies; installs
## wrk, nginx, oha and the Go upstream itself. BENCH_GATEWAY_ARGS="--quick --only direct,nginx"
.PHONY: bench-gateway
bench-gateway: dev
	bash loadtests/gateway/tools.sh
	$(BIN)/python loadtests/gateway/bench.py $(BENCH_GATEWAY_ARGS)

## bench-control: API resolve/create with 10k templates (SQLite, PostgreSQL), deploy-to-routed
## latency through a real gateway, store queries, Rego evaluation latency
bench-control: dev
	$(BIN)/python loadtests/bench_control.py

## bench-security: backup/restore MB/s of a 1 GiB SQLite store vs sqlite3 .backup + zstd, the
## incremental size after 1 % of rows change, encrypt/decrypt µs per secret
.PHONY: bench-security sbom
bench-security: dev
	$(BIN)/python loadtests/bench_security.py $(BENCH_SECURITY_ARGS)

## sbom: CycloneDX SBOMs of the Python runtime dependencies and the Rust crates into sbom/
sbom: $(STAMP)
	BIN=$(BIN) bash scripts/sbom.sh

bench: bench-core bench-gateway bench-control

wheel: $(STAMP)
	$(BIN)/maturin build --release --out dist

clean:
	cargo clean
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
	find python -name '*.so' -delete
