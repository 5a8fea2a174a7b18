# kling-gateway: `make run` starts the gateway, `make test` installs what it needs and tests it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-fast lint format bench lock clean check-python

# Before any venv exists: an older Python would fail deep inside pip and leave a broken .venv.
# Reads `$(PYTHON) --version` ("Python 3.11.7"), so it needs nothing but a shell.
check-python:
	@v=$$($(PYTHON) --version 2>&1 | sed -n 's/^Python \([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p'); \
	set -- $$v; \
	if [ -z "$$v" ] || [ "$$1" -lt 3 ] || { [ "$$1" -eq 3 ] && [ "$$2" -lt 11 ]; }; then \
		echo "kling-gateway needs Python 3.11 or newer, and PYTHON=$(PYTHON) is:" \
			"$$($(PYTHON) --version 2>&1 || echo 'not runnable')." \
			"Run make with PYTHON=python3.11 (or newer)." >&2; \
		exit 1; \
	fi

$(STAMP): pyproject.toml requirements.lock | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/kling-gateway serve

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q --ignore=tests/e2e

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench

# Re-pin every dependency (runtime and dev) from pyproject.toml into requirements.lock.
# --upgrade: a new venv comes with an old setuptools, and without it the lock would pin that one
# rather than what the build needs ([build-system] in pyproject.toml).
lock: check-python
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet --upgrade ".[dev]" "setuptools>=77" wheel
	.lock-venv/bin/python -m pip freeze --all --exclude pip --exclude kling-gateway > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
