# Bodhi: two commands for a newcomer — `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := run

SWIFT ?= swift
# Tests and the benchmark talk to loopback only; the default model lives in HF_HOME.
VENV = $(shell scripts/bootstrap --print-venv)

.PHONY: run build bootstrap test test-swift test-e2e bench clean

## Install what is missing, build the release binary and start Bodhi on its defaults.
run: bootstrap build
	.build/release/bodhi serve

## Build the release binary at .build/release/bodhi.
build:
	$(SWIFT) build -c release --product bodhi

## Build llama.cpp's server and lay out the default model (idempotent, cached outside the repo).
bootstrap:
	scripts/bootstrap

## The whole suite: one debug build serves both the Swift tests and the end-to-end tests.
# PostgreSQL: BODHI_TEST_POSTGRES_URL if set, else a private server from scripts/test-postgres,
# started here and only here (no other target starts a test server); without PostgreSQL
# installed the database tests run on SQLite only (CI always has both).
test:
	scripts/bootstrap --test
	$(SWIFT) build --build-tests
	@url="$${BODHI_TEST_POSTGRES_URL:-$$(scripts/test-postgres 2>/dev/null || true)}"; \
	if [ -z "$$url" ]; then echo "warning: no PostgreSQL; database tests run on SQLite only" >&2; fi; \
	BODHI_TEST_POSTGRES_URL="$$url" $(MAKE) --no-print-directory test-swift test-e2e

test-swift:
	BODHI_TEST_ENGINE=$$(scripts/bootstrap --print-engine) $(SWIFT) test --skip-build

test-e2e:
	BODHI_BIN=$(CURDIR)/.build/debug/bodhi $(VENV)/bin/python -m pytest tests/e2e -q

## Bodhi (and nginx, as a reference proxy) against llama-server reached directly, each target with an
## engine started alike; the gateway under wrk, fairness and compression; bodhi pull against curl; and
## embeddings while the model generates.
## Results go to bench/results/.
bench: bootstrap build
	scripts/bootstrap --test --bench
	mkdir -p bench/results
	BODHI_BIN=$(CURDIR)/.build/release/bodhi $(VENV)/bin/python bench/bench.py --json bench/results/latest.json
	BODHI_BIN=$(CURDIR)/.build/release/bodhi $(VENV)/bin/python bench/gateway_bench.py --json bench/results/gateway-latest.json
	BODHI_BIN=$(CURDIR)/.build/release/bodhi $(VENV)/bin/python bench/pull_bench.py --json bench/results/pull-latest.json
	BODHI_BIN=$(CURDIR)/.build/release/bodhi $(VENV)/bin/python bench/embed_bench.py --json bench/results/embed-latest.json

clean:
	rm -rf .build
