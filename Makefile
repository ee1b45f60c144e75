# The front door: `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
DBT := $(BIN)/dbt --no-use-colors
DBT_FLAGS := --project-dir . --profiles-dir profiles
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup demo test lint fmt dev ui docs bench chaos ui-snapshot stop clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	uv sync --frozen --extra dev
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

dev ui: setup ## The Dagster UI (webserver + daemon) on http://127.0.0.1:3000
	$(BIN)/python -m orchestration.ui

docs: setup ## Generate dbt docs and serve them on http://127.0.0.1:8080
	$(BIN)/python -m orchestration.docs --serve

bench: setup ## Benchmarks: print medians and ratios, write bench/results/*.json
	$(BIN)/python -m bench.run_all

chaos: setup ## Kill, fault and clock-jump tests at full size
	STRIPE_SYNC_CHAOS_FULL=1 $(BIN)/pytest tests/chaos -v

ui-snapshot: setup ## Screenshots of the Dagster UI into docs/ (needs Debian's chromium)
	$(BIN)/python -m orchestration.ui --snapshot docs

stop: ## Stop the embedded Postgres
	$(BIN)/python -m orchestration.embedded.postgres stop

clean: ## Remove build output (keeps the state dir)
	rm -rf target logs .pytest_cache
