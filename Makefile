# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench lint

TEST_STAMP := $(VENV)/.installed-test

# The demo needs only the core; the tests add pytest, hypothesis and the optional
# backbones' libraries (so `make demo` does not spend its minutes installing them).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/patchvad demo --out runs/demo

test: $(TEST_STAMP)
	$(PY) -m ruff check src && $(PY) -m mypy src
	$(PY) -m pytest -q --durations=15 tests

# ruff and mypy as configured in pyproject.toml.
lint: $(TEST_STAMP)
	$(PY) -m ruff check src && $(PY) -m mypy src

bench: $(TEST_STAMP)
	$(PY) benchmarks/extract.py

clean:
	rm -rf $(VENV) runs
