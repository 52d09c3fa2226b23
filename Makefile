# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: setup build node-deps node-images run test unit lint crds schema clean mutate

# What the local node needs from Debian (containerd + runc, the CNI plugins, buildah for the
# image, mmdebstrap for its base, iptables for kube-proxy), and the browser the onboarding
# page's test drives (chromium, with the fonts its recommends would bring); installed once,
# idempotently.
NODE_PACKAGES := containerd runc containernetworking-plugins buildah mmdebstrap iptables conntrack chromium fonts-liberation

# Prints how long each step took, so CI logs show where the time goes.
TIMED = @start=$$(date +%s); $(1); rc=$$?; echo "== $(2): $$(( $$(date +%s) - start ))s"; exit $$rc

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The control-plane binaries (etcd, kube-apiserver, kube-controller-manager, helm) and promtool
# (the chart's alert rules, tests/monitoring), cached per pin.
build: setup
	$(call TIMED,$(BIN)/localkube build,control-plane build)

node-deps:
	$(call TIMED,dpkg -s $(NODE_PACKAGES) >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(NODE_PACKAGES); },node packages)

# The node's images: the Dockerfile's base (mmdebstrap), the project image (buildah), pause.
node-images: build node-deps
	$(call TIMED,$(BIN)/localkube build --node,node images)

# The product on the local control plane: cluster, CRD, operator, facade, receiver.
run: build
	$(BIN)/whatsapp-dev

# Regenerate the CRD from the contract module, and the chart's copy of it (tests check both).
crds: setup
	$(BIN)/python -m whatsapp_channel.crd > crds/whatsappchannels.yaml
	cp crds/whatsappchannels.yaml charts/whatsapp-channels/files/crds/whatsappchannels.yaml

# Regenerate the chart's values.schema.json from its annotated values.yaml (a test checks it).
schema: setup
	$(BIN)/python charts/values_schema.py --write

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: node-images lint
	$(call TIMED,$(BIN)/pytest,tests)

# The tests that need no control plane (not marked `cluster`, see tests/conftest.py): no build.
unit: setup
	$(call TIMED,$(BIN)/pytest -m 'not cluster',unit tests)

# Mutation testing of the security modules against the unit tests (minutes; not part of
# `make test`). Modules and tests: [tool.mutation-gate] in pyproject.toml.
mutate: setup
	$(BIN)/python tests/mutation/run.py

clean:
	rm -rf $(VENV) .localkube .whatsapp-dev.env .mutation tests/peers/node/node_modules
