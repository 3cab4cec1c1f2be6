# Every target sets up its own virtualenv first, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv run insights test lint pytest bench bench-reference clean infra-test lock lock-upgrade deploy destroy pin-images \
	prereqs-run prereqs-test

# What the machine must have, one line each with how to get it (devstack/prereqs.py), checked
# before anything is installed: Python >= 3.11 for every target; for `make test` also
# Terraform >= 1.10 and a Chromium (CHROMIUM, /usr/bin/chromium or Playwright's own).
PREREQS = command -v $(PYTHON) >/dev/null 2>&1 || { echo "prereqs: $(PYTHON) is not on PATH: \
install Python >= 3.11 (python.org, brew install python@3.12, apt-get install python3) or name it: make \
PYTHON=python3.11" >&2; exit 1; }; $(PYTHON) devstack/prereqs.py

prereqs-run:
	@$(PREREQS) run

prereqs-test:
	@$(PREREQS) test

# The locked set (every file checked against its hash), then the project itself, editable and
# without dependencies: the tests run exactly the versions the images install.
$(STAMP): pyproject.toml requirements-dev.lock
	@$(PREREQS) run
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## run: the local AWS, the topology, the API on :8080 and a worker, in the foreground
run: prereqs-run $(STAMP)
	$(PY) -m devstack

## insights: a Logs Insights query against the running `make run`: Q='<query>' or
## Q=infra/terraform/queries/FILE.logsinsights, optional SINCE=15m GROUP=api|worker|all
# Q reaches the command through the environment, so its quotes need no escaping here.
insights: $(STAMP)
	$(PY) -m devstack.insights "$$Q" --since "$${SINCE:-15m}" --group "$${GROUP:-all}"

## test: lint, type-check, the test suite and the infra checks
test: prereqs-test lint pytest infra-test

lint: $(STAMP)
	$(PY) -m ruff check services localaws devstack bench tests
	$(PY) -m ruff format --check services localaws devstack bench tests
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest

## infra-test: Terraform (fmt, validate, checkov, apply/plan/destroy on the local AWS),
## hadolint, shellcheck, actionlint, the lock files, the images built from the lock and the wheel
## and their CMDs, deploy.sh, the Logs Insights queries and EMF lines; no cloud account needed
## (the image test installs requirements.lock from the package index)
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

## bench-reference: both references (order state on, stateless), three runs each, then the
## README's table from them: the last run's report and charts, every run's JSON in runs/
## (the table shows the headline figures' spread). Exit 1 (a target not met) does not stop it.
REFERENCE := bench/reference
BENCH_RUNS ?= 1 2 3
bench-reference: $(STAMP)
	for i in $(BENCH_RUNS); do \
	  $(PY) -m bench --out $(REFERENCE) --json $(REFERENCE)/runs/$$i.json || test $$? -eq 1 || exit 1; \
	  $(PY) -m bench --stateless --out $(REFERENCE)/stateless \
	    --json $(REFERENCE)/stateless/runs/$$i.json || test $$? -eq 1 || exit 1; \
	  cp $(REFERENCE)/runs/$$i.json $(REFERENCE)/results.json; \
	  cp $(REFERENCE)/stateless/runs/$$i.json $(REFERENCE)/stateless/results.json; \
	done
	$(PY) -m bench readme

## lock: re-pin after a change to pyproject.toml (keeps every pin it can);
## lock-upgrade: move every pin to the newest release pyproject.toml allows
# uv resolves from PyPI only, for Linux and macOS alike (--universal), with every file's hash.
# requirements.lock (the images) is cut from requirements-dev.lock (make, CI), so both agree.
UV_VERSION := 0.13.9
LOCK_VENV  := .venv-lock
UV         := $(LOCK_VENV)/bin/uv
UV_COMPILE  = $(UV) pip compile pyproject.toml --quiet --generate-hashes --universal \
	--python-version 3.11 --custom-compile-command 'make lock'

$(UV):
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'

lock: $(UV)
	$(UV_COMPILE) $(UPGRADE) --extra dev -o requirements-dev.lock
	$(UV_COMPILE) -c requirements-dev.lock -o requirements.lock

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

## deploy: build and push both images tagged with the git SHA, then terraform apply with it;
## destroy: terraform destroy (see infra/README.md)
deploy:
	infra/deploy.sh deploy

destroy:
	infra/deploy.sh destroy

## pin-images: the Dockerfiles' base image tag resolved to its digest and written in, where a
## registry is reachable (else the tag stays, and it says so); commit the result
pin-images:
	$(PYTHON) infra/pin_images.py Dockerfile.api Dockerfile.worker

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(LOCK_VENV) .pytest_cache .mypy_cache .ruff_cache
