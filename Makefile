# Citadel. `make demo` and `make test` are the two set-up commands (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= cards,targets,provision,test

# `make demo PORT=8080` serves on another port (default: the bind setting, 127.0.0.1:8000).
PORT   ?=

.PHONY: install install-test demo test lint verify bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Each install leaves a stamp: nothing is reinstalled until pyproject.toml changes.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

install-test: $(VENV)/.installed-test
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@ $(VENV)/.installed

demo: install
	$(BIN)/appliance demo $(if $(PORT),--bind 127.0.0.1:$(PORT))

lint: install-test
	$(BIN)/ruff check appliance crm audit dlp backup provisioning tests

# The quick suite (everything but the tests marked slow), on SQLite and, when
# CITADEL_TEST_DATABASE_URL names a PostgreSQL server, on PostgreSQL too.
test: install-test
	$(BIN)/python -m pytest -m "not slow" --durations=25 --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

# The long suite: the slow tests (provisioning applied for real, 100 crashes, ...), then
# load, crashes and faults with one summary table.
verify: install-test
	$(BIN)/python -m pytest -m slow --durations=25 $(PYTEST_ARGS)
	$(BIN)/python -m tests.verify.run $(VERIFY_ARGS)

# The benchmarks, one after the other; each prints its figures and ratios.
bench: install-test
	for b in web audit crypto cards backup dlp; do $(BIN)/python -m tests.bench.bench_$$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .coverage
