# regswitch developer and CI entry points. Every target does its own set-up,
# so each works on a fresh clone: `make run`, `make test`, `make lint`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# development: editable, plain Python, with the test and dev extras
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.regswitch-installed
# `make run` and `make bench`: the compiled wheel and what running needs, nothing else
RUN_VENV := .venv-run
RUN_STAMP := $(RUN_VENV)/.regswitch-installed
# holds the built wheel's path; rebuilt when anything that goes into the wheel changes
WHEEL_STAMP := dist/.built
WHEEL_INPUTS := $(shell find src -type f -not -path '*/__pycache__/*' -not -name '*.so') \
	pyproject.toml hatch_build.py scripts/build-wheel.sh
# `make test-wheel`: a fresh venv with the wheel and the test extras
WHEEL_TEST_VENV := build/wheel-test-venv

# `make run` defaults: the embedded set-up on loopback.
SIP_HOST ?= 127.0.0.1
SIP_PORT ?= 5060
API ?= 127.0.0.1:8080
DB ?= sqlite:///var/regswitch.db
RUN_ARGS ?=

PYTEST_ARGS ?=
BENCH_ARGS ?=
# each benchmark's JSON; bench/results.py makes bench/RESULTS.md of them
BENCH_OUT := build/bench
# Lint only what exists: git does not keep empty directories.
LINT_PATHS := $(wildcard src tests bench) hatch_build.py

.PHONY: help venv system wheel run test test-wheel screenshots lint bench clean

help:
	@echo "make run         build the compiled wheel, install it in $(RUN_VENV), start regswitch on"
	@echo "                 SIP udp+tcp $(SIP_HOST):$(SIP_PORT), API $(API), $(DB)"
	@echo "make test        set up (venv + system tools) and run the whole suite on plain Python"
	@echo "make test-wheel  the whole suite against the compiled wheel, installed in a fresh venv"
	@echo "make lint        ruff, mypy --strict, import-linter"
	@echo "make wheel       build dist/regswitch-*.whl, the hot path compiled with mypyc"
	@echo "make screenshots refresh the console screenshots in docs/"
	@echo "make venv | system | bench | clean"

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/ensure-venv.sh
	@PYTHON=$(PYTHON) VENV=$(VENV) scripts/ensure-venv.sh

system:
	@scripts/setup-system.sh

wheel: $(WHEEL_STAMP)

$(WHEEL_STAMP): $(WHEEL_INPUTS)
	@PYTHON=$(PYTHON) VENV=$(RUN_VENV) scripts/build-wheel.sh

$(RUN_STAMP): $(WHEEL_STAMP) scripts/ensure-venv.sh
	@PYTHON=$(PYTHON) VENV=$(RUN_VENV) EXTRAS= scripts/ensure-venv.sh --wheel "$$(cat $(WHEEL_STAMP))"
	@touch $@

run: $(RUN_STAMP)
	@mkdir -p var
	@$(RUN_VENV)/bin/regswitch --version
	$(RUN_VENV)/bin/regswitch serve \
		--sip udp:$(SIP_HOST):$(SIP_PORT) --sip tcp:$(SIP_HOST):$(SIP_PORT) \
		--api $(API) --db $(DB) $(RUN_ARGS)

test: venv system
	$(BIN)/pytest -q $(PYTEST_ARGS)

# What users install is what is tested: the wheel in a venv of its own, the
# tests from this tree (they import the installed package, never src/).
test-wheel: $(WHEEL_STAMP) system
	@rm -rf $(WHEEL_TEST_VENV)
	@PYTHON=$(PYTHON) VENV=$(WHEEL_TEST_VENV) EXTRAS=test \
		scripts/ensure-venv.sh --wheel "$$(cat $(WHEEL_STAMP))"
	@$(WHEEL_TEST_VENV)/bin/regswitch --version
	REGSWITCH_TEST_BUILD=wheel $(WHEEL_TEST_VENV)/bin/pytest -q $(PYTEST_ARGS)

# The browser tests write their screenshots to build/screenshots; this writes
# the ones the README shows into docs/.
screenshots: venv system
	REGSWITCH_SCREENSHOTS=docs $(BIN)/pytest -q tests/browser/test_console_live.py

# All three run (so one report shows every problem); any failure fails lint.
lint: venv
	@rc=0; \
	echo "ruff check $(LINT_PATHS)"; $(BIN)/ruff check $(LINT_PATHS) || rc=1; \
	echo "mypy --strict"; $(BIN)/mypy --strict || rc=1; \
	echo "lint-imports"; $(BIN)/lint-imports || rc=1; \
	exit $$rc

# Benchmarks, not tests (bench/README.md): the compiled wheel against sippy
# (parse) and Kamailio (the Debian packages kamailio and kamailio-sqlite-modules).
bench: $(RUN_STAMP)
	@scripts/setup-system.sh --bench
	@PYTHON=$(PYTHON) VENV=$(RUN_VENV) EXTRAS=bench scripts/ensure-venv.sh --wheel "$$(cat $(WHEEL_STAMP))"
	@rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT)
	$(RUN_VENV)/bin/python bench/parse.py --json $(BENCH_OUT)/parse.json $(BENCH_ARGS)
	$(RUN_VENV)/bin/python bench/register.py --json $(BENCH_OUT)/register.json
	$(RUN_VENV)/bin/python bench/calls.py --skip-kick --json $(BENCH_OUT)/calls.json
	$(RUN_VENV)/bin/python bench/kick.py --json $(BENCH_OUT)/kick.json
	$(RUN_VENV)/bin/python bench/cpu.py --json $(BENCH_OUT)/cpu.json
	$(RUN_VENV)/bin/python bench/memory.py --rate 1500 --json $(BENCH_OUT)/memory.json
	$(RUN_VENV)/bin/python bench/latency.py --json $(BENCH_OUT)/latency.json
	$(RUN_VENV)/bin/python bench/restart.py --json $(BENCH_OUT)/restart.json
	$(RUN_VENV)/bin/python bench/results.py $(BENCH_OUT) --out bench/RESULTS.md

clean:
	rm -rf $(VENV) $(RUN_VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .hypothesis build dist
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
