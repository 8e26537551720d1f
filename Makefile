# Every target does its own set-up, so `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MODEL  := .cache/models/efficientnet-lite0
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps model broker demo test bench clean

all: test

# The virtualenv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

deps: $(VENV)/.installed

# The fixture model; the builder hashes its inputs and does nothing when they have not changed.
model: deps
	$(PY) -m fixtures.models.build --out $(MODEL)

# mosquitto from Debian's packages, for the tests that talk to a real broker.
broker:
	@command -v mosquitto >/dev/null && command -v mosquitto_sub >/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null; }

demo: deps model
	$(VENV)/bin/edge-console --sandbox

test: deps model broker
	$(PY) -m pytest

bench: deps model broker
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) .cache .pytest_cache
