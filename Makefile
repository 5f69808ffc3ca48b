# The two commands a newcomer needs:  `make demo` (run)  and  `make test` (test).
# Each sets up what it needs by itself, idempotently (a pinned .venv, the data cache).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha256sum requirements.txt requirements-python.txt constraints.txt setup.py | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)
DATASET := data/mocap_h36m17.npz
# The training set: the registry sources + Bandai Namco (../shared or BANDAI_NAMCO=DIR); the tests use DATASET only.
FULL_DATASET := data/mocap_h36m17_full.npz
BANDAI_NAMCO ?= ../shared/datasets/bandai-namco
export ROS_LOG_DIR ?= $(CURDIR)/.cache/ros_log
export OMP_NUM_THREADS ?= 2

.PHONY: venv data data-full demo test clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-python.txt constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==26.3
	$(PY) -m pip install -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

data: $(DATASET)

$(DATASET): $(STAMP)
	$(PY) training/prepare_data.py --registry-only --out $(DATASET)

data-full: $(FULL_DATASET)

$(FULL_DATASET): $(STAMP)
	$(PY) training/prepare_data.py --bandai-namco $(BANDAI_NAMCO) --out $(FULL_DATASET)

demo: $(STAMP)
	$(PY) -m diffhpe_ros.demo --offline --out docs/demo

test: $(STAMP) $(DATASET)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) .cache data build install log
