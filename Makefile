# Two commands for a new user: `make run` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint format venv test-deps system-deps nodejs screenshots clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

# LangChain JS's own code, which the redaction tests run on redacted elements (with the machine's node).
tests/writers/node_modules/.package-lock.json: tests/writers/package.json tests/writers/package-lock.json | nodejs
	cd tests/writers && npm ci --no-audit --no-fund --silent

venv: $(VENV)/.installed

test-deps: $(VENV)/.installed-test tests/writers/node_modules/.package-lock.json

# The browser tests drive Debian's Chromium: Playwright's own browser download is not used.
# The PostgreSQL run starts a throwaway server of its own from Debian's postgresql (any version).
system-deps: nodejs
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }

nodejs:
	@command -v node >/dev/null && command -v npm >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm; }

# The whole suite twice: on SQLite, then on PostgreSQL (tests/postgres.py), as deployments run on either.
test: test-deps system-deps lint
	$(PY) -m pytest
	MEMORYADMIN_TEST_DATABASE=postgres $(PY) -m pytest

# Style is checked, not argued: ruff's lint rules and formatter (pyproject.toml).
lint: test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: test-deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The README's screenshots, taken by the browser suite from the demo data (docs/screenshots/, committed).
screenshots: test-deps system-deps
	MEMORYADMIN_README_SCREENSHOTS=1 $(PY) -m pytest -q tests/browser/test_readme_screenshots.py

# Starts the local store when no Upstash credentials are set, seeds it once,
# creates the demo login and serves the dashboard.
run: venv
	@bash scripts/run.sh

clean:
	rm -rf $(VENV) var

# Benchmarks: the app through gunicorn against the floor and the naive way; prints the table and
# writes bench/results/latest.{md,json} (README, "Benchmarks"). Flags: make bench BENCH_ARGS="--million".
.PHONY: bench
$(VENV)/.installed-bench: $(VENV)/.installed requirements-bench.txt
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

bench: $(VENV)/.installed-bench
	$(PY) -m bench $(BENCH_ARGS)

# Mutation testing of the modules that guard data (README, "Mutation testing"); not part of `make test`.
# MUTANTS picks mutants by mutmut's names (default: every mutant of the modules in pyproject.toml but
# upstash.py's, which make mutation-upstash runs), e.g. make mutation MUTANTS='memoryadmin.services.audit.*'.
# Results stay in mutants/ between runs.
MUTATION_MODULES := sessions bulk audit jobs secrets summaries content_search redaction holds erasure retention
MUTANTS ?= $(foreach module,$(MUTATION_MODULES),'memoryadmin.services.$(module).*')
MUTATION_JOBS ?= 2
# MUTATION_TESTS narrows the tests (a pytest -k expression) for a module every test reaches. mutmut
# does not see it when it reuses what it learnt of the tests in mutants/, so another one starts afresh.
MUTATION_TESTS ?=
# upstash.py: the tests of the client itself, its transport, errors, replies, limits, bill and tokens.
UPSTASH_TESTS := test_upstash.py or test_store_errors.py or test_store_replies.py or test_request_limit.py \
	or test_read_your_writes.py or test_bill.py or test_connections.py or test_read_only_token.py \
	or test_localstore_limits.py or test_store_transport.py
.PHONY: mutation mutation-upstash
$(VENV)/.installed-mutation: $(VENV)/.installed-test requirements-mutation.txt
	$(PY) -m pip install --quiet -r requirements-mutation.txt
	touch $@

mutation: test-deps $(VENV)/.installed-mutation
	@if [ "$$(cat mutants/.tests 2>/dev/null)" != "$(MUTATION_TESTS)" ]; then \
		echo "Other tests than the last run's: starting afresh"; rm -rf mutants; fi
	@mkdir -p mutants && echo "$(MUTATION_TESTS)" > mutants/.tests
	PYTEST_ADDOPTS="$(if $(MUTATION_TESTS),-k '$(MUTATION_TESTS)')" \
		$(PY) -m mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(PY) scripts/mutation_report.py

mutation-upstash:
	$(MAKE) mutation MUTANTS="'memoryadmin.services.upstash.*'" MUTATION_TESTS='$(UPSTASH_TESTS)'
