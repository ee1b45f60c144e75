# The front door: `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
# The system Python (resolved before the venv goes first on PATH) runs uv: a fresh
# `pip install uv` may not be on PATH yet (pyenv shims).
SYSTEM_PYTHON := $(shell command -v python3)
UV := $(SYSTEM_PYTHON) -m uv
DBT := $(BIN)/dbt --no-use-colors
DBT_FLAGS := --project-dir . --profiles-dir profiles
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup demo test lint fmt dev ui docs bench chaos audit-secrets ui-snapshot stop clean
# Chaos at full size (make chaos); CHAOS_FULL=0 runs the small size `make test` runs.
CHAOS_FULL ?= 1
# Where `make audit-secrets` keeps each step's output: a new folder per run in the state dir.
AUDIT_LOGS := $(or $(STRIPE_SYNC_HOME),.stripe-sync)/audit/$(shell date -u +%Y%m%dT%H%M%SZ)

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Bytecode at install: with PYTHONDONTWRITEBYTECODE set (it is on CI) every process would compile
# dbt's and Dagster's sources again, ~1.5 s of CPU per dbt process.
$(VENV)/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(SYSTEM_PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --extra dev --compile-bytecode
	@touch $@

setup: $(VENV)/.installed ## Create the virtual environment (uv, from uv.lock) with dev tools

demo: setup ## Run the main job on the embedded default (local Postgres + local Stripe API)
	$(BIN)/stripe-sync demo

test: setup lint ## The whole test suite (lint, dbt parse, pytest) — the README's test command
	$(BIN)/pytest

lint: setup ## ruff (lint + format check), mypy, the layers contract, sqlfluff, dbt parse
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/sqlfluff lint dbt_project --disable-progress-bar --processes 2
	$(DBT) parse $(DBT_FLAGS) --warn-error --quiet

fmt: setup ## Format and fix: ruff, sqlfluff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/sqlfluff fix dbt_project --disable-progress-bar

ui: setup ## The Dagster UI (webserver + daemon) on http://127.0.0.1:3000
	$(BIN)/stripe-sync ui

dev: ui ## Same as `make ui`

docs: setup ## Generate dbt docs and serve them on http://127.0.0.1:8080
	$(BIN)/stripe-sync docs --serve

bench: setup ## Benchmarks: medians and ratios, bench/results/*.json (BENCH_ARGS=--quick: small)
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

chaos: setup ## Kill, fault, Postgres-restart and clock-jump tests at full size (CHAOS_FULL=0: small)
	STRIPE_SYNC_CHAOS_FULL=$(CHAOS_FULL) $(BIN)/pytest tests/chaos -v -rA --durations=0

# The benches and the chaos tests audit their own databases and output before dropping them; the
# last step audits what is left: the demo's databases, the state dir and the captured output.
audit-secrets: export STRIPE_SYNC_SECRETS_AUDIT = 1
audit-secrets: setup ## Demo, bench, chaos, then no key or webhook secret in any table, log or file
	@mkdir -p $(AUDIT_LOGS) && echo "audit-secrets: each step's output goes to $(AUDIT_LOGS)/"
	set -o pipefail; $(MAKE) --no-print-directory demo 2>&1 | tee $(AUDIT_LOGS)/demo.log
	set -o pipefail; $(MAKE) --no-print-directory bench 2>&1 | tee $(AUDIT_LOGS)/bench.log
	set -o pipefail; $(MAKE) --no-print-directory chaos 2>&1 | tee $(AUDIT_LOGS)/chaos.log
	STRIPE_SYNC_AUDIT_LOGS=$(AUDIT_LOGS) $(BIN)/pytest -rA \
		tests/test_secrets.py::test_no_secret_after_demo_bench_and_chaos

ui-snapshot: setup ## Screenshots of the Dagster UI into docs/ (needs Debian's chromium)
	$(BIN)/stripe-sync ui --snapshot docs

.PHONY: ui-test
ui-test: setup ## Real-browser smoke test of the Dagster UI on the demo instance (apt-get install -y chromium)
	$(BIN)/stripe-sync ui --smoke

stop: ## Stop the embedded Postgres
	$(BIN)/python -m orchestration.embedded.postgres stop

clean: ## Remove build output (keeps the state dir)
	rm -rf target logs .pytest_cache
