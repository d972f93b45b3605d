# Every target sets up what it needs first (scripts/setup.sh is a no-op when already done).
VENV ?= .venv
PY := $(VENV)/bin/python
export KAIROS_VENV := $(abspath $(VENV))

.PHONY: setup demo test test-fast bench-memory recall clean

setup:
	@bash scripts/setup.sh

# The main job. Until the simulated robot lands (issue 6), it is the streaming memory benchmark.
demo: setup
	$(PY) bench/memory_scaling.py

# The test suite, as CI runs it (slow tests included).
test: setup
	$(PY) -m pytest -n 2

test-fast: setup
	$(PY) -m pytest -n 2 -m "not slow"

bench-memory: setup
	$(PY) bench/memory_scaling.py --out runs/memory_scaling.json

recall: setup
	$(VENV)/bin/kairos experiment recall

clean:
	rm -rf build runs
