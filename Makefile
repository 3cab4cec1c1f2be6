# Every target sets up its own virtualenv first, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv run test lint pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: the local AWS, the topology, the API on :8080 and a worker, in the foreground
run: $(STAMP)
	$(PY) -m localaws.stack

## test: lint, type-check and the whole test suite
test: lint pytest

lint: $(STAMP)
	$(PY) -m ruff check services localaws bench tests
	$(PY) -m ruff format --check services localaws bench tests
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest

## bench: the quick benchmark suite (see bench/README.md)
bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
