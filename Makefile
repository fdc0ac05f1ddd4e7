# progresscast — two commands on a fresh machine:
#   make run    set up, then serve the live demo on http://127.0.0.1:8000/
#   make test   set up everything the tests need, then lint and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test setup setup-dev system-deps lint format unit screenshots bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamp files: reinstall only when the requirement files change.
$(VENV)/.runtime: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install --quiet -r requirements.txt -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.runtime node_modules/.installed

setup-dev: $(VENV)/.dev node_modules/.installed

run: setup
	@echo ""
	@echo "  progresscast demo: http://$(HOST):$(PORT)/   (API docs: http://$(HOST):$(PORT)/api/docs)"
	@echo ""
	PROGRESSCAST_CONFIG=development PROGRESSCAST_DEMO=1 PROGRESSCAST_BIND=$(HOST):$(PORT) \
		$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Real components the tests run (never mocked): installed with apt when missing.
SYSTEM_PACKAGES := redis-server:redis-server nginx:nginx chromium:chromium
APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		bin=$${pair%%:*}; pkg=$${pair##*:}; \
		command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $$missing; \
	fi

# Test files run in TEST_WORKERS processes (pytest-xdist), each file in one
# of them: its module fixtures (servers, workers) start once. Tests marked
# serial (schemathesis, whose items pytest-xdist cannot tell apart) run after.
TEST_WORKERS ?= 2

test: setup-dev system-deps lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/pytest -m serial

unit: setup-dev
	$(BIN)/pytest tests/unit tests/handlers

# docs/dashboard.png, from a seeded set of jobs in headless chromium.
screenshots: setup-dev system-deps
	SCREENSHOTS=1 $(BIN)/pytest tests/browser/test_screenshots.py -q

# Benchmarks (issue 6): set up, run every comparison side by side (~12 min), then
# write bench/results/full.json, docs/benchmarks.md and its plots.
# Then bench/eta.py --save (~20 s, a fake clock): ETA accuracy (issue 14) into
# bench/results/eta.{json,md} and its section of docs/benchmarks.md.
# `make bench BENCH_ARGS=--quick` takes ~2 minutes.
$(VENV)/.bench: $(VENV)/.runtime bench/requirements.txt
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $@

bench/node_modules/.installed: bench/package.json bench/package-lock.json
	npm ci --prefix bench --no-audit --no-fund --loglevel=error
	touch $@

bench: $(VENV)/.bench bench/node_modules/.installed
	@command -v redis-server >/dev/null 2>&1 || [ -x /usr/sbin/redis-server ] || \
		{ $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq redis-server; } || \
		echo "no redis-server: the worker + Redis path is skipped"
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/eta.py --save

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache instance
