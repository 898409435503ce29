# Two commands set everything up: `make run` and `make test`.
# orderdesk installs into its own virtual environment (.venv): its top-level packages
# (web, supervision, store, ...) share names with unrelated PyPI projects.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean browser

# The browser tests drive Debian's chromium through Playwright (no browser download).
CHROMIUM := /usr/bin/chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/orderdesk serve

browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		 >/dev/null) ; } || echo "chromium not installed: browser tests will skip (fail on CI)"

# Two workers (pytest-xdist): most tests wait on sockets, subprocesses and Postgres, so two at a
# time nearly halve the wall time on a 2-core machine. TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

bench: $(STAMP)
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) var
