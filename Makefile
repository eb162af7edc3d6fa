# modelfn — every target bootstraps what it needs on a fresh machine; a second run is fast.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.modelfn-installed
# `make up` needs only what serving and the sample build use; test tools come with `make test`
UP_STAMP := $(VENV)/.modelfn-up-installed
# On a terminal pip draws its own progress bars; off one (CI logs) timestamped stage lines
PIP_QUIET := $(shell test -t 1 || echo -q)
STAGE = echo "$$(date +%T) $(1)"
NODE_STAMP := node_modules/.modelfn-installed
SAMPLES_STAMP := samples/generated/.stamp
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PYTEST_ARGS ?=

.PHONY: up test synth bench lint fmt samples build clean help lock image container-tools sam-invoke

help:
	@echo "make up     build the sample catalog and serve it locally (127.0.0.1:3000, S3 :4566)"
	@echo "make test   install what is needed and run the whole test suite"
	@echo "make synth  cdk synth through the pinned CDK CLI (offline), cdk-nag on"
	@echo "make bench  run bench/ and write bench/results/*.md and plots"
	@echo "make lint   ruff"
	@echo "make lock   regenerate layers/requirements*.lock (runtime, GPU, generation layers) from layers/requirements*.txt"
	@echo "make image  build the sample catalog's images (modelfn image)"

# The venv is (re)installed only when the files that define it change. The full install
# (make test) is a superset of what make up needs, so it satisfies both stamps.
$(STAMP): pyproject.toml layers/requirements.txt layers/requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(call STAGE,installing the build and test tools into $(VENV) (pip))
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(PY) -m pip install $(PIP_QUIET) -r layers/requirements.txt -e '.[dev,torch]'
	$(PY) -m pip install $(PIP_QUIET) --no-deps -r layers/requirements-nodeps.txt
	@$(call STAGE,installed)
	@touch $@ $(UP_STAMP)

$(UP_STAMP): pyproject.toml layers/requirements.txt layers/requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(call STAGE,installing what serving and the sample build need into $(VENV) (pip; test tools come with make test))
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip
	$(PY) -m pip install $(PIP_QUIET) -r layers/requirements.txt -e '.[local,torch]'
	$(PY) -m pip install $(PIP_QUIET) --no-deps -r layers/requirements-nodeps.txt
	@$(call STAGE,installed)
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(SAMPLES_STAMP): $(UP_STAMP) scripts/make_samples.py $(wildcard samples/*.py)
	@$(call STAGE,making the sample models and data (scripts/make_samples.py))
	$(PY) scripts/make_samples.py
	@touch $@

samples: $(SAMPLES_STAMP)

build: $(SAMPLES_STAMP)
	$(VENV)/bin/modelfn build

up: $(SAMPLES_STAMP)
	$(VENV)/bin/modelfn up

test: $(STAMP) $(NODE_STAMP) container-tools
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

synth: $(STAMP) $(NODE_STAMP) $(SAMPLES_STAMP)
	$(VENV)/bin/modelfn build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx --no-install cdk synth --quiet

bench: $(STAMP) $(SAMPLES_STAMP)
	$(PY) -c "import transformers" 2>/dev/null || $(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The image lane's tools (podman, runc, debootstrap), installed when missing.
container-tools:
	@scripts/container_tools.sh

# The image's locked closure for cp313 manylinux_2_34 x86_64 + aarch64 (infra/image/lock.py).
lock: $(STAMP)
	$(PY) -m infra.image.lock

image: $(SAMPLES_STAMP)
	$(VENV)/bin/modelfn build
	$(VENV)/bin/modelfn image

# One SAM CLI invocation of MODEL's API function (KIND=batch: its batch function) from the
# synthesized template, through Docker or podman (infra/image/sam.py). BASE=<image> replaces
# the AWS base image (offline: the stand-in, python -m infra.image.standin).
sam-invoke: $(STAMP) $(NODE_STAMP) $(SAMPLES_STAMP) container-tools
	@test -n "$(MODEL)" -a -n "$(EVENT)" || { echo "usage: make sam-invoke MODEL=<name> EVENT=<event.json> [KIND=batch] [BASE=<image>]"; exit 2; }
	$(VENV)/bin/modelfn build
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx --no-install cdk synth --quiet $(if $(BASE),-c modelfn:python_base=$(BASE))
	$(PY) -m infra.image.sam --model $(MODEL) --event $(EVENT) --kind $(or $(KIND),api)

clean:
	rm -rf build cdk.out samples/generated .pytest_cache
