# The two commands a newcomer runs on a fresh machine (see README.md): `make demo` and `make test`.
# Each does its own set-up (a .venv with the pinned CPU torch, the package, the data) and is safe to re-run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.blockzoo-installed
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

# Demo budget (2 CPU cores, 6-15 minutes including set-up, depending on the host): override e.g. `make demo DEMO_EPOCHS=5`.
DEMO_VARIANTS ?= none,se,eca,coord,scse
DEMO_SUBSET   ?= 10000
DEMO_EPOCHS   ?= 2
DEMO_SEEDS    ?= 2
DEMO_OUT      ?= runs/demo

.PHONY: all install data demo test test-slow test-scaleout check docs bench clean help
all: help

help:
	@echo "make demo       compare channel-attention blocks in ResNet-20 on Fashion-MNIST (6-15 min on 2 cores)"
	@echo "make test       run the test suite (fast; 'make test-slow' for the slow checks)"
	@echo "make check      lint (ruff, configured in pyproject.toml) and check that docs/catalog.md is up to date"
	@echo "make docs       regenerate docs/catalog.md from the registry"
	@echo "make install    create $(VENV) with the pinned CPU torch and blockzoo (done by demo/test)"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing torch (pinned CPU build, see constraints.txt) and blockzoo into $(VENV) ..."
	$(PIP) torch
	$(PIP) -e '.[test,export,data,log,ray,quant]'
	@# the speed benchmark's oracle, never a runtime dependency: timm without its torchvision dependency (no working
	@# build here; benchmarks/timm_shim stands in), so that the benchmark's smoke test runs in the default suite
	$(PIP) --no-deps timm==1.0.31
	$(PIP) huggingface_hub pyyaml
	@touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(BIN)/python -m blockzoo.data fetch fashion-mnist

demo: install data
	$(BIN)/blockzoo compare resnet20 --vary attn=$(DEMO_VARIANTS) --data fashion-mnist \
		--subset $(DEMO_SUBSET) --epochs $(DEMO_EPOCHS) --eval-every $(DEMO_EPOCHS) --seeds $(DEMO_SEEDS) \
		--out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

test-scaleout: install  # the torchrun (2 processes) and Ray (2 CPUs) end-to-end tests, also part of test-slow
	$(BIN)/python -m pytest -m slow tests/train/test_distributed.py tests/report/test_executors.py

check: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/blockzoo docs --check

docs: install
	$(BIN)/blockzoo docs

clean:
	rm -rf runs/demo .pytest_cache
