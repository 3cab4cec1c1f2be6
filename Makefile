# Every target sets up its own virtualenv first, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv run test lint pytest bench clean infra-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## run: the local AWS, the topology, the API on :8080 and a worker, in the foreground
run: $(STAMP)
	$(PY) -m localaws.stack

## test: lint, type-check, the test suite and the infra checks
test: lint pytest infra-test

lint: $(STAMP)
	$(PY) -m ruff check services localaws bench tests
	$(PY) -m ruff format --check services localaws bench tests
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest

## infra-test: Terraform (fmt, validate, checkov, apply/plan/destroy on the local AWS),
## hadolint, the images' CMDs, the Logs Insights queries and EMF lines; offline
# checkov lives in its own virtualenv: it pins a boto3 that would break aiobotocore in .venv.
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	touch $(CHECKOV_STAMP)

infra-test: $(STAMP) $(CHECKOV_STAMP)
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest -m infra tests/infra

## bench: the quick benchmark suite (see bench/README.md)
bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
