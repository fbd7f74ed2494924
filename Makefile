# Shortcuts for the README's commands; `make help` lists them. Each target calls the tools of the
# virtualenv in $(VENV) (made by `make setup`), so nothing needs to be activated first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROMPT ?= Open a vegan butcher shop in Copenhagen
MODEL ?= offline
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup run test typecheck lint bench

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## /  \1\t/'

setup: ## virtualenv with the locked dependencies and the dev tools; migrate the database
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	$(BIN)/planexe db upgrade

run: ## one plan: make run PROMPT="..." MODEL=offline (or auto, or a model id of llm_config.json)
	$(BIN)/planexe plan "$(PROMPT)" --model $(MODEL)

test: ## the test suite, as in the README (.ci/run adds PostgreSQL, Chromium and the real model)
	$(BIN)/python -m pytest -q

typecheck: ## mypy on the plain layers ([tool.mypy] in pyproject.toml)
	$(BIN)/mypy

lint: ## ruff lint and format check, the import-layer contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: ## the benchmark, writing bench/RESULTS.md (about 45 minutes): make bench BENCH_ARGS="--sections plan"
	$(BIN)/python -m bench $(BENCH_ARGS)
