# The two commands a newcomer runs: `make run` (main job) and `make test` (test suite).
# Both create .venv on first use (about 3 minutes and 6 GB: torch, Lava, lava-dl and the peers).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/main
PYTEST_ARGS ?=

.PHONY: venv run test lint bench lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@PY310="$$(.ci/find-python310)" || exit 1; \
	  if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$PY310"; $$PY310 -m venv $(VENV) || exit 1; fi
	$(PY) -m pip install --quiet --upgrade "pip<25" wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $(STAMP)

run: venv
	$(VENV)/bin/nasflow run --out $(RUN_DIR) --resume

test: venv
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check .

bench: venv
	$(PY) benchmarks/train_step.py

lock: venv
	$(PY) -m pip freeze --exclude-editable | grep -v '^nasflow' > constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache
