# The user's interface. Targets create .venv / node_modules when they are missing.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
CDK := node_modules/.bin/cdk
# Offline, quiet CDK: caches inside the project (ignored), no notices or telemetry, no Node 20 banner.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_RUNTIME_PACKAGE_CACHE_ROOT := $(CURDIR)/.cache/jsii
export CDK_HOME := $(CURDIR)/.cache/cdk
export CDK_DISABLE_VERSION_CHECK := 1
export AWS_EC2_METADATA_DISABLED := true
# cfn-lint: W3005 (redundant DependsOn) comes from CDK's own generated resources; no error rule is ignored.
CFN_LINT_IGNORE := W3005

.PHONY: help setup test test-fast lint synth cfn-lint checkov preflight demo serve verify bench cost clean
help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

.venv/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@# The project itself, editable: every part imports its neighbours as installed modules (pyproject.toml).
	$(PIP) install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: .venv/.installed node_modules/.installed  ## install Python and Node tools (pinned)

lint: setup  ## ruff
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

synth: setup  ## synthesize every stack into cdk.out (fails on unacknowledged cdk-nag errors)
	$(CDK) synth --quiet --no-version-reporting --no-notices

cfn-lint: synth  ## cfn-lint every synthesized template
	.venv/bin/cfn-lint --ignore-checks $(CFN_LINT_IGNORE) -- cdk.out/*.template.json

# checkov pins a boto3 that conflicts with constraints.txt: it lives in its own venv, pinned by requirements-checkov.txt.
CHECKOV_VENV := .cache/checkov-venv
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

checkov: synth $(CHECKOV_VENV)/.installed  ## checkov on every synthesized template (0 failed; skips inline in the template metadata)
	$(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation $$(printf -- '-f %s ' cdk.out/*.template.json)

preflight: setup  ## before the first deploy/run: quotas, dataset bucket, CDK bootstrap (AWS credentials; without: the list)
	$(PY) -m infra.preflight $(ARGS)

test: setup  ## lint, synth + cfn-lint + checkov, and the whole pytest suite
	$(MAKE) --no-print-directory lint cfn-lint checkov
	@# pytest exits 5 when it collected no test: that is a failure, never a pass.
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test-fast: setup  ## pytest without the slow end-to-end tests
	$(PY) -m pytest -m "not slow"

demo: setup  ## the whole pipeline on this machine: prepare, tune, train (torchrun), evaluate, gate, serve, count
	$(PY) -m local_mode.demo $(ARGS)

serve: setup  ## serve a finished run again: make serve RUN=runs/<id>
	$(PY) -m local_mode.local_serving $(if $(RUN),--run $(RUN),) $(ARGS)

verify: setup  ## check inventory records against photos: make verify ARGS="--photos DIR --records FILE.csv" [RUN=runs/<id>]
	$(PY) -m local_mode.verify $(if $(RUN),--run $(RUN),) $(ARGS)

bench: setup  ## CPU benchmarks; results go to bench/results/ (see docs/benchmarks.md)
	$(PY) -m bench.run_all $(ARGS)

cost: setup  ## estimate one pipeline run's AWS cost from cdk.json
	$(PY) -m infra.cost $(ARGS)

clean:  ## remove build outputs (keeps .venv, node_modules and runs/)
	rm -rf cdk.out .cache/cdk .pytest_cache
