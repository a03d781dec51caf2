# Closeloop make verbs. `make` alone prints help.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
TOOLS := .tools
# The Lambda architecture to build for (template parameter Architecture; packaging/Makefile picks wheels by it).
ARCH ?= arm64
# sam build needs the Lambda runtime's interpreter (3.12) first on PATH; pyenv's shim is not enough.
PY312 := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python3) $(shell command -v python3.12 2>/dev/null))
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help venv tools lint typecheck unit tests-all test test-all demo bench build deploy validate scan readme clean

help: ## this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## create .venv with the package and its dev tools

$(TOOLS)/sam/.installed:
	$(if $(PY312),,$(error python3.12 is needed for sam build: install it, e.g. pyenv install 3.12))
	$(PY312) -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/pip install -q --upgrade pip
	$(TOOLS)/sam/bin/pip install -q 'aws-sam-cli>=1.120'
	touch $@

$(TOOLS)/checkov/.installed:
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install -q --upgrade pip
	$(TOOLS)/checkov/bin/pip install -q 'checkov>=3.2'
	touch $@

tools: $(TOOLS)/sam/.installed $(TOOLS)/checkov/.installed ## install sam-cli and checkov in their own venvs

lint: venv ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

validate: tools ## sam validate (plain and --lint) and cfn-lint on template.yaml
	$(TOOLS)/sam/bin/sam validate --lint -t template.yaml
	$(TOOLS)/sam/bin/sam validate -t template.yaml
	$(BIN)/cfn-lint template.yaml

scan: tools ## checkov on template.yaml (skips carry their reason in the template)
	$(TOOLS)/checkov/bin/checkov -f template.yaml --framework cloudformation --skip-download --quiet --compact

unit: venv ## the fast tier: tests/unit, no sockets (no stack, no sandbox, no moto server), under a minute
	$(BIN)/pytest tests/unit

#: pytest workers: one more than the cores (the stack tiers wait on queues and sandboxes much of the time: on 2
#: cores, 3 workers ran the suite in 8 min 18 s where 2 took 10 min 23 s).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

#: The pairs the quote-to-cash pair scenario runs on (tests/pairs/test_quote_to_cash_pairs.py, CLOSELOOP_PAIRS):
#: covering (every CRM and every accounting system in a pair at least: about 15 s a pair) or all (the 9 pairs).
PAIRS ?= covering

tests-all: venv ## every test tier, cores + 1 workers (a module stays on one worker: its local stack is per process)
	CLOSELOOP_PAIRS=$(PAIRS) $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

test: ## everything CI runs: ruff, mypy, every test tier, sam validate, checkov
	@# The venv and the tools' venvs install side by side (mostly downloads); then lint, the tests, validate and
	@# scan run side by side too: the stack tiers spend much of their time waiting on queues and sandboxes.
	$(MAKE) -j4 lint tests-all validate scan

test-all: ## make test with quote to cash on every CRM x accounting pair (make test runs it on a covering set)
	$(MAKE) test PAIRS=all

demo: venv ## run the whole loop offline on the local stack and show the result (CRM=hubspot ACCOUNTING=xero)
	$(BIN)/closeloop demo --crm $(or $(CRM),hubspot) --accounting $(or $(ACCOUNTING),xero)

bench: venv $(TOOLS)/sam/.installed ## benchmarks (one table; see README); cold init runs sam build output for this machine
	PY312=$(PY312) SAM=$(TOOLS)/sam/bin/sam $(BIN)/python -m bench.run

build: tools ## sam build (python3.12, arm64; ARCH=x86_64 for Intel), bytecode included (packaging/Makefile)
	PATH=$(dir $(PY312)):$$PATH LAMBDA_ARCHITECTURE=$(ARCH) \
		$(TOOLS)/sam/bin/sam build --parallel --cached --parameter-overrides Architecture=$(ARCH)

deploy: build ## sam deploy --guided (same ARCH as the build)
	$(TOOLS)/sam/bin/sam deploy --guided --parameter-overrides Architecture=$(ARCH)

readme: venv ## rewrite README.md's generated blocks (the Supported systems tables) from the vendors' specs
	$(BIN)/python -m closeloop_local.readme README.md

clean: ## remove venvs and build output
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache
