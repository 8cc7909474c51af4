# Two commands: `make serve` starts a working server, `make test` runs every test.
# Each creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: serve test bench venv clean

$(BIN)/skyclass: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/skyclass

serve: venv
	$(BIN)/skyclass serve --host $(HOST) --port $(PORT) $(ARGS)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fan-out benchmark against MediaRelay and Janus (installs Debian's janus when missing).
bench: venv
	SKYCLASS_BENCH_INSTALL=1 $(BIN)/python -m loadtest.fanout $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
