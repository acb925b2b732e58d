# Klinestream — the usual targets. `make install` once, then `make test`; `make up` / `make down` for the stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv: the one of $(PYTHON) when it has one, else a private copy in var/uv (Debian's python3 refuses
# `pip install` outside a virtualenv, PEP 668)
UV_VENV := var/uv
UV := $(shell $(PYTHON) -m uv --version >/dev/null 2>&1 && echo "$(PYTHON) -m uv" || echo "$(UV_VENV)/bin/uv")
STAMP := $(VENV)/.klinestream-installed
# Kline files used when Binance is unreachable: KLINESTREAM_DATA_DIR, else ../shared's real klines when present
SHARED_KLINES := $(wildcard ../shared/data/binance_spot_1h)
ifeq ($(origin KLINESTREAM_DATA_DIR),undefined)
ifneq ($(SHARED_KLINES),)
export KLINESTREAM_DATA_DIR := $(abspath $(SHARED_KLINES))
endif
endif

.PHONY: help demo dashboard tune install system-deps lock bench-long lint format typecheck test test-unit test-integration up down status bench compose-check compose-test clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

demo: install ## The main job end to end: stack, backfill, validate, retrain, promote, live replay, summary
	$(BIN)/klinestream demo

dashboard: install ## Serve the live dashboard (http://127.0.0.1:8050)
	$(BIN)/klinestream dashboard

tune: install ## Hyperparameter study on the klines of KLINESTREAM_DATA_DIR (TUNE_ARGS="--variant lstm --trials 40"; docs/tuning.md)
	$(BIN)/klinestream tune $(TUNE_ARGS)

install: $(STAMP) ## Install Python (locked, every extra) and JVM dependencies, and the dashboard's chart library (npm ci); a second run does nothing
	@$(BIN)/klinestream stack install
	@$(BIN)/python -m klinestream.dashboard.assets

system-deps: ## System packages the tests need (headless Chromium for the dashboard test), with apt when missing
	@.ci/apt-install.sh chromium:chromium

$(STAMP): requirements.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || { $(PYTHON) -m venv $(UV_VENV) && $(UV_VENV)/bin/pip install -q "uv>=0.5"; }
	@test -x $(BIN)/python || $(UV) venv -q --python 3.11 $(VENV)
	$(UV) pip sync -q --python $(BIN)/python requirements.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

lock: ## Re-resolve requirements.lock from pyproject.toml (every extra: the one lock every image constrains by)
	$(UV) pip compile -q pyproject.toml --all-extras --python-version 3.11 -o requirements.lock

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy models adapters pipelines streaming simulator klinestream

format: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pytest exits 5 when it collects nothing; make would only say "Error 5": name it
PYTEST_NONE_COLLECTED = { rc=$$?; [ $$rc -ne 5 ] || echo "error: pytest collected no tests ($@)" >&2; exit $$rc; }

test: install system-deps ## All tests: test-unit, then test-integration (together exactly every test, each once)
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-integration

test-unit: $(STAMP) ## Fast tests that need no service
	$(BIN)/pytest -m "not integration" --durations=10 || $(PYTEST_NONE_COLLECTED)

test-integration: install system-deps ## Tests against the real local services (they bring the local stack up, and stop what they started)
	$(BIN)/pytest -m integration --durations=15 || $(PYTEST_NONE_COLLECTED)

up: install ## Start Kafka, Cassandra, MLflow and Airflow as local processes
	$(BIN)/klinestream stack up

down: ## Stop the local services started by `make up`
	@test -x $(BIN)/klinestream && $(BIN)/klinestream stack down || true

status: ## Ports, pids, memory and health of the local services
	$(BIN)/klinestream stack status

BENCH := bench/training.py bench/backfill.py bench/streaming.py bench/stack_startup.py
BENCH_LONG := bench/reference_protocol.py bench/retrain.py bench/walkforward.py bench/tune.py

bench: install ## Benchmarks that print their figures (minutes; see bench/)
	@for script in $(BENCH); do echo "== $$script"; $(BIN)/python $$script || exit 1; done

bench-long: install ## The reference protocol over 5 seeds, a full retrain DAG run and the walk-forward (hours on 2 cores)
	@for script in $(BENCH_LONG); do echo "== $$script"; $(BIN)/python $$script || exit 1; done

compose-check: ## Validate docker-compose.yml (needs the docker client with the compose plugin)
	docker compose --env-file .env.example config -q

compose-test: ## docker-compose.yml for real in a private Docker engine: build, up, retrain, replay, down (root; long, so NOT part of CI's .ci/run: run it by hand)
	.ci/compose-test

clean: down ## Remove the virtualenv and all local state (var/)
	rm -rf $(VENV) var
