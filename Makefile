# pactmesh — `make run` starts the mesh, `make test` proves it. `make` alone lists targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv comes from PyPI when the machine does not have it yet.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
KAFKA := infra/kafka/kafka.sh
PYTEST_ARGS ?=

.PHONY: help install browser redis run test test-unit test-integration test-scale bench bench-compare bench-profile lint typecheck fmt schemas clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

install: ## install Python deps (uv, from uv.lock) and the Kafka broker jars (Maven Central)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked --all-packages
	$(KAFKA) install

browser: ## Debian's Chromium for the reviewer-page test (apt-get, only when missing)
	infra/browser/chromium.sh install

redis: ## Debian's redis-server for the shared rate-limit test (apt-get, only when missing)
	infra/redis/redis.sh install

run: install ## start the broker and all six services in the foreground (Ctrl-C stops everything)
	infra/run.sh

test: install browser redis ## unit + integration tests against a real Kafka broker (started and stopped here)
	$(UV) run --no-sync pytest $(PYTEST_ARGS)

test-unit: install ## unit tests only (no broker)
	$(UV) run --no-sync pytest -m "not integration" $(PYTEST_ARGS)

test-integration: install browser redis ## integration tests only
	$(UV) run --no-sync pytest -m integration $(PYTEST_ARGS)

test-scale: install redis ## issue 10's scale test: 3 brokers, Postgres, two instances of each service, kills (PACTMESH_SCALE_WORKFLOWS, default 60)
	PACTMESH_SCALE_TEST=1 $(UV) run --no-sync pytest -m integration tests-integration/test_scale_under_faults.py -s $(PYTEST_ARGS)

bench: install ## workflows end to end on a real broker (bounded); figures to bench-results/ and docs/benchmarks.md
	$(UV) run --no-sync python bench/workflows.py

bench-compare: install ## the LangGraph Agent Server (../shared/peers/run.sh) then pactmesh, same workloads, one table of ratios (bounded)
	$(UV) run --no-sync python bench/compare.py

bench-profile: install ## py-spy on every service during a zero-latency phase: CPU per workflow by process and component (bounded)
	$(UV) run --no-sync python bench/profile.py

lint: ## ruff
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .

typecheck: ## mypy (strict, pydantic plugin)
	$(UV) run --no-sync mypy shared-contracts/src workflows/src reasoning/src services/*/src clients/python/src infra/sandbox/src infra/model-sim/src infra/harness/src bench

fmt: ## format and fix imports
	$(UV) run --no-sync ruff format .
	$(UV) run --no-sync ruff check --fix .

schemas: ## re-export the JSON Schema snapshots of every event
	$(UV) run --no-sync pactmesh-schemas

clean: ## stop the local broker and delete caches and local state
	-$(KAFKA) stop-all
	rm -rf .cache .pytest_cache .ruff_cache .mypy_cache
