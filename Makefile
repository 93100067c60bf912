# Two self-sufficient targets: `make test` and `make reproduce` (each creates .venv if missing).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= quick
# seconds a notebook cell may go without a reply before its notebook is run again (kdfair run --cell-timeout)
CELL_TIMEOUT ?= 3600

.PHONY: test test-fast reproduce readme lab benchmark clean-runs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

reproduce: $(STAMP)
	$(BIN)/kdfair run --profile $(PROFILE) --cell-timeout $(CELL_TIMEOUT)

readme: $(STAMP)
	$(BIN)/kdfair readme runs/$(PROFILE) --readme README.md

lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	$(BIN)/jupyter lab notebooks/

benchmark: $(STAMP)
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_grid.py

clean-runs:
	rm -rf runs/
