# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: setup build run test lint crds clean mutate

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The control-plane binaries (etcd, kube-apiserver, kube-controller-manager, helm), cached per pin.
build: setup
	$(BIN)/localkube build

# The product on the local control plane: cluster, CRD, operator, facade, receiver.
run: build
	$(BIN)/whatsapp-dev

# Regenerate the CRD from the contract module, and the chart's copy of it (tests check both).
crds: setup
	$(BIN)/python -m whatsapp_channel.crd > crds/whatsappchannels.yaml
	cp crds/whatsappchannels.yaml charts/whatsapp-channels/files/crds/whatsappchannels.yaml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: build lint
	$(BIN)/pytest

# Mutation testing of the security modules against the unit tests (minutes; not part of
# `make test`). Modules and tests: [tool.mutation-gate] in pyproject.toml.
mutate: setup
	$(BIN)/python tests/mutation/run.py

clean:
	rm -rf $(VENV) .localkube .whatsapp-dev.env .mutation tests/peers/node/node_modules
