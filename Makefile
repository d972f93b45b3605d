# Every target sets up what it needs first (scripts/setup.sh is a no-op when already done).
VENV ?= .venv
PY := $(VENV)/bin/python
export KAIROS_VENV := $(abspath $(VENV))

.PHONY: setup demo test test-fast bench-memory recall train-tiny distill-tiny clean

setup:
	@bash scripts/setup.sh

# The main job: the act node drives the simulated robot over ROS 2 topics (config/sim_act.yaml,
# the committed one-step student artifacts/tiny_button_press_student), 5 held-out episodes, report in runs/sim_act.
demo: setup
	$(VENV)/bin/kairos demo

# Rebuild the default artifact from scratch: the tiny curriculum (stages I-III), then package it.
train-tiny: setup
	$(VENV)/bin/kairos train training/recipes/tiny.yaml
	$(VENV)/bin/kairos package-artifact runs/tiny/artifact --out artifacts/tiny_button_press --half \
	    --rebuild "make train-tiny (kairos train training/recipes/tiny.yaml; kairos package-artifact runs/tiny/artifact --out artifacts/tiny_button_press --half)"

# Rebuild the student the main job runs: artifacts/tiny_button_press distilled for one sampler step.
distill-tiny: setup
	$(VENV)/bin/kairos distill training/recipes/distill_tiny_1step.yaml
	$(VENV)/bin/kairos package-artifact runs/distill_tiny_1step/artifact --out artifacts/tiny_button_press_student --half \
	    --rebuild "make distill-tiny (kairos distill training/recipes/distill_tiny_1step.yaml; kairos package-artifact runs/distill_tiny_1step/artifact --out artifacts/tiny_button_press_student --half)"

# The test suite, as CI runs it (slow tests included).
test: setup
	$(PY) -m pytest -n 2 --durations=30

test-fast: setup
	$(PY) -m pytest -n 2 -m "not slow"

bench-memory: setup
	$(PY) bench/memory_scaling.py --out runs/memory_scaling.json

recall: setup
	$(VENV)/bin/kairos experiment recall

clean:
	rm -rf build runs
