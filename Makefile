# kling-gateway: `make run` starts the gateway, `make test` installs what it needs and tests it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install fonts run test test-fast lint format bench lock clean check-python

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

# The hosted service's MCP server, run by tests/api/mcp/test_hosted_stdio.py against the gateway.
# Installed beside the venv (--target, --no-deps; its imports are in the lock through `server`
# and `dev`), not in the lock: it pins redis<7, which would hold back the gateway's own redis,
# and it installs top-level modules named `main`, `core` and `tools`.
HOSTED_MCP := mcp-kling==2026.10.24.0

$(STAMP): pyproject.toml requirements.lock | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip install --quiet --no-deps --upgrade --target $(VENV)/hosted-mcp $(HOSTED_MCP)
	touch $(STAMP)

install: $(STAMP) fonts

# The local provider writes prompts over its videos and needs a font that covers CJK
# (providers/local/caption.py). Debian's is installed where apt-get is present and we are
# root; elsewhere captions fall back to Pillow's font (CJK as boxes) and this says so.
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
fonts:
	@if [ -e $(CJK_FONT) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing fonts-noto-cjk (CJK captions of the local provider)"; \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null 2>&1 || \
		  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null; }; } || \
		echo "note: could not install fonts-noto-cjk; CJK captions will show boxes"; \
	else \
		echo "note: no CJK font at $(CJK_FONT); CJK captions will show boxes (Debian: apt-get install fonts-noto-cjk)"; \
	fi

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

# Re-pin every dependency (the SDK, the server extra and dev) from pyproject.toml into the lock.
# --upgrade: a new venv comes with an old setuptools, and without it the lock would pin that one
# rather than what the build needs ([build-system] in pyproject.toml).
lock: check-python
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet --upgrade ".[server,dev]" "setuptools>=77" wheel
	.lock-venv/bin/python -m pip freeze --all --exclude pip --exclude kling-gateway > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
