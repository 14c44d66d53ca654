# Citadel. `make demo` and `make test` are the two set-up commands (see README).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= cards,targets,provision,test
# Every dependency pinned with its hashes (the app's and the extras the tests use);
# `make lock` refreshes it from pyproject.toml.
LOCK   := requirements.lock
comma  := ,

# `make demo PORT=8080` serves on another port (default: the bind setting, 127.0.0.1:8000).
PORT   ?=

.PHONY: install install-test lock demo test lint verify bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The lock holds the app's dependencies and the extras the tests use, so one install serves
# both. Each install leaves a stamp: nothing is reinstalled until the lock or pyproject.toml changes.
install: $(VENV)/.installed
$(VENV)/.installed: $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

install-test: install

lock: | $(BIN)/python
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links \
		$(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) -o $(LOCK) pyproject.toml

demo: install
	$(BIN)/appliance demo $(if $(PORT),--bind 127.0.0.1:$(PORT))

# Style, the one-way layers (.importlinter, docs/architecture.md) and the types of the
# kernel, the audit log and the key code: any of them failing fails the build.
lint: install-test
	$(BIN)/ruff check appliance crm audit dlp backup provisioning tests
	$(BIN)/lint-imports
	$(BIN)/mypy

# The quick suite (everything but the tests marked slow), on SQLite and, when
# CITADEL_TEST_DATABASE_URL names a PostgreSQL server, on PostgreSQL too.
test: lint
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
