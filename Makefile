# regswitch developer and CI entry points. Every target does its own set-up,
# so each works on a fresh clone: `make run`, `make test`, `make lint`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.regswitch-installed

# `make run` defaults: the embedded set-up on loopback.
SIP_HOST ?= 127.0.0.1
SIP_PORT ?= 5060
API ?= 127.0.0.1:8080
DB ?= sqlite:///var/regswitch.db
RUN_ARGS ?=

PYTEST_ARGS ?=
BENCH_ARGS ?=
# Lint only what exists: git does not keep empty directories.
LINT_PATHS := $(wildcard src tests bench)

# The hot path compiled with mypyc (scripts/build-native.sh), rebuilt when a source changes.
NATIVE_SOURCES := $(shell scripts/build-native.sh --list) src/regswitch/__init__.py
NATIVE_STAMP := src/regswitch/.compiled

.PHONY: help venv system build clean-build run test lint bench clean

help:
	@echo "make run     start regswitch on SIP udp+tcp $(SIP_HOST):$(SIP_PORT), API $(API), $(DB)"
	@echo "make test    set up (venv + system tools) and run the whole test suite"
	@echo "make lint    ruff, mypy --strict, import-linter"
	@echo "make build   compile the hot path with mypyc (run, test and bench do it first)"
	@echo "make venv | system | clean-build | bench | clean"

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/ensure-venv.sh
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/ensure-venv.sh

system:
	@scripts/setup-system.sh

build: venv $(NATIVE_STAMP)

$(NATIVE_STAMP): $(NATIVE_SOURCES) scripts/build-native.sh $(STAMP)
	@VENV=$(VENV) scripts/build-native.sh

clean-build:
	@scripts/build-native.sh clean

run: build
	@mkdir -p var
	$(BIN)/regswitch serve \
		--sip udp:$(SIP_HOST):$(SIP_PORT) --sip tcp:$(SIP_HOST):$(SIP_PORT) \
		--api $(API) --db $(DB) $(RUN_ARGS)

test: build system
	$(BIN)/pytest -q $(PYTEST_ARGS)

# All three run (so one report shows every problem); any failure fails lint.
lint: venv
	@rc=0; \
	echo "ruff check $(LINT_PATHS)"; $(BIN)/ruff check $(LINT_PATHS) || rc=1; \
	echo "mypy --strict"; $(BIN)/mypy --strict || rc=1; \
	echo "lint-imports"; $(BIN)/lint-imports || rc=1; \
	exit $$rc

# Benchmarks, not tests: regswitch against sippy (parse) and Kamailio (needs
# the Debian packages kamailio and kamailio-sqlite-modules, and ../shared/bench).
bench: build system
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/parse.py $(BENCH_ARGS)
	$(BIN)/python bench/register.py
	$(BIN)/python bench/calls.py

clean:
	@scripts/build-native.sh clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .hypothesis build dist
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
