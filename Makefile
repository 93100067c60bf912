# Two self-sufficient targets: `make test` and `make reproduce` (each creates .venv if missing).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BASE_STAMP := $(VENV)/.installed-base
PROFILE ?= quick
# seconds a notebook cell may go without a reply before its notebook is run again (kdfair run --cell-timeout)
CELL_TIMEOUT ?= 3600

.PHONY: test test-fast reproduce readme lab benchmark clean-runs course classroom

# the package and what the notebooks need (enough for `make reproduce`) ...
$(BASE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(BASE_STAMP)

# ... and the test references (fairlearn, statsmodels, hypothesis, submitit) and the text extra on top
$(STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,text]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

reproduce: $(BASE_STAMP)
	$(BIN)/kdfair run --profile $(PROFILE) --cell-timeout $(CELL_TIMEOUT)

readme: $(BASE_STAMP)
	$(BIN)/kdfair readme runs/$(PROFILE) --readme README.md

# course mode: rebuild the student notebooks (course/) from the instructor ones (notebooks/) ...
course: $(BASE_STAMP)
	$(BIN)/kdfair course build

# ... and prepare the classroom profile's models once (then share runs/ with the students)
classroom: $(BASE_STAMP)
	$(BIN)/kdfair grid --profile classroom --experiment main
	$(BIN)/kdfair grid --profile classroom --experiment class_bias

# LAB_DIR=course opens the student notebooks instead of the instructor ones
LAB_DIR ?= notebooks
lab: $(BASE_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	$(BIN)/jupyter lab $(LAB_DIR)/

benchmark: $(STAMP)
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_grid.py

clean-runs:
	rm -rf runs/
