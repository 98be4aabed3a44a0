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
	@echo "  make run-agent                                             # start examples/agents/echo-app from its template"
	$(BIN)/python -m agentgate serve --config examples/agentgate.yaml

## run-agent: on a running `make run`, publish an example template and create its agent
## (AGENT=echo-app or AGENT=counter-command); the runtime starts it on a Unix socket
.PHONY: run-agent
run-agent: dev
	$(BIN)/python examples/agents/start.py $(or $(AGENT),echo-app)

## services: the servers tests start themselves (PostgreSQL), installed when missing
services:
	bash scripts/services.sh

test: dev services test-rust test-py

test-rust:
	cargo test --workspace --release

test-py: $(STAMP)
	$(BIN)/pytest -q --durations=15

# stubtest imports the built extension, so lint builds it first
lint: dev
	$(BIN)/ruff check python tests loadtests
	$(BIN)/ruff format --check python tests loadtests
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest agentgate._core
	$(BIN)/lint-imports
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --release -- -D warnings

fmt: $(STAMP)
	$(BIN)/ruff format python tests loadtests
	$(BIN)/ruff check --fix python tests loadtests
	cargo fmt --all

## bench-core: micro benchmarks of the core against the Python libraries people use
bench-core: dev
	$(BIN)/python loadtests/bench_core.py --out loadtests/results/core.json

## bench-gateway: agentgate vs its previous release, direct, nginx, Caddy, the aiohttp proxy and
## LiteLLM; installs wrk, nginx, perf, oha, Caddy, LiteLLM, the previous release's wheel and the
## Go upstream itself. BENCH_GATEWAY_ARGS="--quick --only direct,nginx,agentgate"
.PHONY: bench-gateway
bench-gateway: dev
	bash loadtests/gateway/tools.sh
	$(BIN)/python loadtests/gateway/bench.py $(BENCH_GATEWAY_ARGS)

## bench-control: API resolve/create with 10k templates (SQLite, PostgreSQL), deploy-to-routed
## latency through a real gateway, store queries, Rego evaluation latency
bench-control: dev
	$(BIN)/python loadtests/bench_control.py

## bench-runtime: create → first 200 (warm, cold, subprocess), memory per idle warm replica,
## 1,000 idle agents, reactive vs predictive scaling on a replayed trace, forecaster choice
.PHONY: bench-runtime
bench-runtime: dev
	$(BIN)/python loadtests/bench_runtime.py --out loadtests/results/runtime.json

## bench-security: backup/restore MB/s of a 1 GiB SQLite store vs sqlite3 .backup + zstd, the
## incremental size after 1 % of rows change, encrypt/decrypt µs per secret
.PHONY: bench-security sbom
bench-security: dev
	$(BIN)/python loadtests/bench_security.py $(BENCH_SECURITY_ARGS)

## sbom: CycloneDX SBOMs of the Python runtime dependencies and the Rust crates into sbom/
sbom: $(STAMP)
	BIN=$(BIN) bash scripts/sbom.sh

## bench-bus: bus latency/throughput (memory, Redis Streams, Kafka) vs raw redis-py/aiokafka,
## change propagation, event store, cluster rate-limit accuracy (starts its own servers)
.PHONY: bench-bus
bench-bus: dev services
	$(BIN)/python loadtests/bench_bus.py $(BENCH_BUS_ARGS)

## bench-cluster: 4 gateways sharing one rate limit through Redis (scope: cluster) against a
## per-gateway limit: accuracy over 30 s and the cost per request, ratios in the same run
.PHONY: bench-cluster
bench-cluster: dev
	@test -x loadtests/gateway/.tools/bin/oha || nice -n 10 cargo install oha --version 1.16.0 \
		--locked --no-default-features --features native-tls --root loadtests/gateway/.tools --quiet
	$(BIN)/python loadtests/bench_cluster.py $(BENCH_CLUSTER_ARGS)

## bench-observe: metrics-store ingest, 30-day queries over 1,000 agents, 1,000 alert rules,
## dashboard payloads (SQLite and PostgreSQL), DDSketch against the Python ddsketch package
.PHONY: bench-observe
bench-observe: dev
	$(BIN)/python loadtests/bench_observe.py $(BENCH_OBSERVE_ARGS)

bench: bench-core bench-gateway bench-control bench-runtime bench-bus bench-cluster bench-observe

wheel: $(STAMP)
	$(BIN)/maturin build --release --out dist

clean:
	cargo clean
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
	find python -name '*.so' -delete
