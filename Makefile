# Entry points for a fresh machine: `make app` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup app test test-fast lint chromium screenshot bench

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

app: $(STAMP)
	$(BIN)/python app.py

# The browser test drives Debian's Chromium (Playwright cannot download its own browser here); CI runs as root.
chromium:
	test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# The style (ruff: lint and import order, configured in pyproject.toml).
lint: $(STAMP)
	$(BIN)/python -m ruff check .

# The style, then the whole suite, as CI runs it (.ci/run): the library, the commands, the demo, the served app, the
# browser, the wheel.
test: lint chromium
	$(BIN)/python -m pytest -q

# Everything but the browser tests (no Chromium needed).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not browser"

# Refreshes docs/screenshot.png (the README's picture of the demo) from the browser test's view of an edit.
screenshot: $(STAMP) chromium
	$(BIN)/python -m pytest -q tests/app/test_browser.py -k test_edit_in_the_browser --update-screenshot

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_edit.py
	$(BIN)/python benchmarks/bench_quickfix.py
