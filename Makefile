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

.PHONY: help setup demo test lint fmt dev ui docs bench chaos ui-snapshot stop clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(SYSTEM_PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --extra dev
	@touch $@

setup: $(VENV)/.installed ## Create the virtual environment (uv, from uv.lock) with dev tools

demo: setup ## Run the main job on the embedded default (local Postgres + local Stripe API)
	$(BIN)/stripe-sync demo

test: setup lint ## The whole test suite (lint, dbt parse, pytest) — the README's test command
	$(BIN)/pytest

lint: setup ## ruff (lint + format check), sqlfluff, dbt parse with warnings as errors
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint dbt_project --disable-progress-bar --processes 2
	$(DBT) parse $(DBT_FLAGS) --warn-error --quiet

fmt: setup ## Format and fix: ruff, sqlfluff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/sqlfluff fix dbt_project --disable-progress-bar

ui: setup ## The Dagster UI (webserver + daemon) on http://127.0.0.1:3000
	$(BIN)/python -m orchestration.ui

dev: ui ## Same as `make ui` (dagster dev with the project's workspace)

docs: setup ## Generate dbt docs and serve them on http://127.0.0.1:8080
	$(BIN)/python -m orchestration.docs --serve

bench: setup ## Benchmarks: medians and ratios, bench/results/*.json (BENCH_ARGS=--quick: small)
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

chaos: setup ## Kill, fault, Postgres-restart and clock-jump tests at full size
	STRIPE_SYNC_CHAOS_FULL=1 $(BIN)/pytest tests/chaos -v -rA --durations=0

ui-snapshot: setup ## Screenshots of the Dagster UI into docs/ (needs Debian's chromium)
	$(BIN)/python -m orchestration.ui --snapshot docs

stop: ## Stop the embedded Postgres
	$(BIN)/python -m orchestration.embedded.postgres stop

clean: ## Remove build output (keeps the state dir)
	rm -rf target logs .pytest_cache
