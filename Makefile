# Two commands: `make serve` starts a working server, `make test` runs every test.
# Each creates the virtual environment it needs: serving installs the package alone, testing adds
# the test extra (Playwright, Locust, numpy...). `make bench` uses the test extra too.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080

# What each installed, newer than pyproject.toml while it is current.
SERVE_STAMP := $(VENV)/.installed-serve
TEST_STAMP  := $(VENV)/.installed-test

.PHONY: serve test lint bench venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(SERVE_STAMP): pyproject.toml server/media/_fanout.c | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# The test extra serves as well: both stamps are current after it.
$(TEST_STAMP): pyproject.toml server/media/_fanout.c | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(SERVE_STAMP)

venv: $(SERVE_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/skyclass serve --host $(HOST) --port $(PORT) $(ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Types and style: mypy (strict) and ruff on the server, tsc (strict, JSDoc) on the pages.
lint: $(TEST_STAMP)
	$(BIN)/mypy server
	$(BIN)/ruff check server tests loadtest
	sh client_web/typecheck.sh

# The fan-out benchmark against MediaRelay and Janus (installs Debian's janus when missing).
bench: $(TEST_STAMP)
	SKYCLASS_BENCH_INSTALL=1 $(BIN)/python -m loadtest.fanout $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache build dist
