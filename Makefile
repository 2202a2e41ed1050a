# Two commands for a new user: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
STORE_PORT ?= 8079
# Development defaults for `make run` only; settings themselves default to production-safe values.
RUN_ENV := DEBUG=1 SECRET_KEY=$${SECRET_KEY:-memoryadmin-dev-only-secret}

.PHONY: run test venv test-deps system-deps clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

venv: $(VENV)/.installed

test-deps: $(VENV)/.installed-test

test: test-deps
	$(PY) -m pytest

# Starts the local store when no Upstash credentials are set, seeds it once,
# creates the demo login and serves the dashboard.
run: venv
	@bash scripts/run.sh

clean:
	rm -rf $(VENV) var
