# The two commands a newcomer runs: `make run` (main job) and `make test` (test suite).
# Both create .venv on first use (about 3 minutes and 6 GB: torch, Lava, lava-dl and the peers).
# `make test` also needs a headless Chromium for the report's browser test: `make browser` installs Debian's
# chromium package when it is missing (as root or with passwordless sudo), else stops with the command to run.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/main
PYTEST_ARGS ?=

KERNEL := nasflow/kernels/_build/source.sha256

.PHONY: venv browser kernels run test test-fallback lint bench fuzz faults lock clean

venv: $(STAMP)

# The compiled neuron kernel (nasflow/kernels/*.cpp), built with this machine's compiler against the venv's
# torch (about a minute); without a compiler nasflow still runs, on the slower torch-op loop, and says so.
kernels: $(KERNEL)

$(KERNEL): nasflow/kernels/neurons.cpp nasflow/kernels/adaptive.cpp nasflow/kernels/fixed.cpp nasflow/kernels/common.h nasflow/kernels/build.py \
	  $(STAMP)
	@start=$$(date +%s); \
	  if $(PY) -m nasflow.kernels.build; then echo "kernel build: $$(( $$(date +%s) - start )) s"; \
	  else echo "make kernels: build failed; nasflow runs the torch-op neuron loop" >&2; fi

$(STAMP): pyproject.toml constraints.txt
	@PY310="$$(.ci/find-python310)" || exit 1; \
	  if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$PY310"; $$PY310 -m venv $(VENV) || exit 1; fi
	$(PY) -m pip install --quiet --upgrade "pip<25" wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $(STAMP)

# A Chromium is found as $CHROMIUM (a path), `chromium` or `chromium-browser` on PATH; tests/test_pipeline.py looks
# in the same places and fails (never skips) without one.
browser:
	@if [ -n "$$CHROMIUM" ]; then \
	  if [ -f "$$CHROMIUM" ] && [ -x "$$CHROMIUM" ]; then exit 0; fi; \
	  echo "make browser: CHROMIUM=$$CHROMIUM is not an executable file; unset CHROMIUM or point it at Chromium" >&2; \
	  exit 1; \
	fi; \
	if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else SUDO=none; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make browser: no Chromium found and no apt-get to install it; install Chromium, then run:" >&2; \
	  echo "    make test CHROMIUM=/path/to/chromium" >&2; \
	  exit 1; \
	fi; \
	if [ "$$SUDO" = none ]; then \
	  echo "make browser: no Chromium found, and installing it needs root; run:" >&2; \
	  echo "    sudo apt-get update && sudo apt-get install -y chromium" >&2; \
	  exit 1; \
	fi; \
	echo "make browser: installing Debian's chromium package (apt-get, about 2 minutes)"; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || exit 1; \
	command -v chromium >/dev/null 2>&1 || { echo "make browser: apt-get installed chromium but no chromium is on PATH" >&2; exit 1; }; \
	chromium --version

run: venv kernels
	$(VENV)/bin/nasflow run --out $(RUN_DIR) --resume

test: venv browser kernels
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)
	NASFLOW_KERNELS=torch $(PY) -m pytest -q tests/test_kernels.py

# The suite's kernel equivalence tests on the torch-op loop alone (the fallback a machine without a build runs).
test-fallback: venv
	NASFLOW_KERNELS=torch $(PY) -m pytest -q tests/test_kernels.py

lint: venv
	$(PY) -m ruff check .

# One training step against the peers at T = 8, then the rows for T = 4, 16 and 32 (about 10 minutes).
bench: venv kernels
	$(PY) benchmarks/train_step.py --T 8,4,16,32

# Property-based fuzzing of every file reader (a bounded run is part of `make test`); FUZZ_EXAMPLES per reader.
FUZZ_EXAMPLES ?= 1000
fuzz: venv kernels
	$(PY) tests/fuzz_readers.py --examples $(FUZZ_EXAMPLES) --out runs/fuzz.json

# Fault injection: 21 SIGKILLs (random moments and inside journal/checkpoint/result writes) across a search, a
# training run and the main job, each resumed and compared with an uninterrupted run (about 15 minutes).
faults: venv kernels
	$(PY) tests/fault_harness.py --targets search train run --random 4 --writes 3 --out runs/faults

lock: venv
	$(PY) -m pip freeze --exclude-editable | grep -v '^nasflow' > constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache
