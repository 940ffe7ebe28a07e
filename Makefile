# Two commands on a fresh machine:  `make demo` (the main job)  and  `make test`.
# Both create/reuse a local virtual environment with pinned versions (requirements.txt).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(CURDIR)/$(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt setup.py | sha1sum | cut -c1-12)
ROS_ENV := AMENT_PREFIX_PATH=$(CURDIR)/$(VENV) ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
	ROS_LOG_DIR=$${ROS_LOG_DIR:-/tmp/seg_perception_roslog} PYTHONUNBUFFERED=1

.PHONY: venv demo test bench soak colcon clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-* && touch $@

## the main job: node + shipped model + sample bag over real ROS 2 topics -> demo_out/
demo: venv
	$(ROS_ENV) $(PY) -m seg_perception.cli demo $(DEMO_ARGS)

## the whole test suite (what CI runs)
test: venv
	$(ROS_ENV) $(PY) -m pytest $(or $(PYTEST_ARGS),-q)

bench: venv
	$(ROS_ENV) $(PY) -m seg_perception.cli bench --model deeplabv3plus_mobilenetv2 --weights none --resolution 512x1024 --backends torch,onnxruntime --json bench_out/bench.json $(BENCH_ARGS)

soak: venv
	$(ROS_ENV) $(PY) -m seg_perception.cli soak $(SOAK_ARGS)

clean:
	rm -rf build install log demo_out bench_out .pytest_cache
