# Human Protein Atlas course report: `make run` then `make test` on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= quick
ARGS ?=

.DEFAULT_GOAL := help

JUPYTER_CONFIG = jupyter-config/jupyter_server_config.d/hpa-utils.json

$(BIN)/hpa: pyproject.toml $(JUPYTER_CONFIG)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	@# an editable install skips data files: JupyterLab's save hook for the source notebooks (hpa_utils.run.lab)
	@mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d && cp $(JUPYTER_CONFIG) $(VENV)/etc/jupyter/jupyter_server_config.d/
	@touch $(BIN)/hpa

.PHONY: help venv git-filter run test test-fast lint bench scale lab report report-pdf publish clean
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

venv: $(BIN)/hpa ## create .venv and install the project (done by every target that needs it)

# JupyterLab saves the source notebooks without outputs (a server save hook, hpa_utils.run.lab), so exploring
# never dirties git. This git filter (nbstripout, named in .gitattributes) keeps the outputs of a notebook executed
# in place by other means (papermill, nbconvert) out of every commit; what you edit in a cell still shows.
NBSTRIP = "$(abspath $(BIN))/python" -m nbstripout --keep-id
NBSTRIP_KEYS = $(shell "$(abspath $(BIN))/python" -c 'from hpa_utils.run.lab import EXTRA_KEYS; print(*EXTRA_KEYS)')
git-filter: ## strip notebook outputs from what git sees (run by make run, test and lab)
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean '$(NBSTRIP)' && git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.extrakeys '$(strip $(NBSTRIP_KEYS))' && \
	  git config diff.ipynb.textconv '$(NBSTRIP) -t'; fi

run: $(BIN)/hpa git-filter ## the whole pipeline on the synthetic dataset (PRESET=quick; ARGS="-p train.base.epochs=3")
	$(BIN)/hpa run --preset $(PRESET) $(ARGS)

test: $(BIN)/hpa git-filter ## the test suite (what CI runs)
	$(BIN)/python -m pytest -q --durations=15 tests

test-fast: $(BIN)/hpa ## the unit tests alone: no training, notebooks, Ray or browser (the inner loop)
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: $(BIN)/hpa ## ruff on the library, the tests and the notebooks; the layer contracts (import-linter)
	$(BIN)/ruff check hpa_utils tests notebooks
	$(BIN)/lint-imports --no-cache

bench: $(BIN)/hpa ## input-pipeline throughput benchmark (ARGS="--json")
	$(BIN)/hpa bench $(ARGS)

scale: $(BIN)/hpa ## Kaggle-scale rehearsal: 43k synthetic 512-px Ids (~30 GB, ~70 min), every step but training
	$(BIN)/hpa scale $(ARGS)

# prints the URL to open (with its token) and the SSH tunnel for a remote machine, then starts jupyter lab
lab: $(BIN)/hpa git-filter ## JupyterLab on the project; prints its URL (remote: ARGS="--no-browser --port 9999")
	@$(BIN)/python -m hpa_utils.run.lab_start $(ARGS)

# `make report`: the shipped report/report.html from the committed tables (no training);
# `make report PRESET=quick`: the report of runs/quick.
REPORT_RUN = $(if $(filter command line environment,$(origin PRESET)),--preset $(PRESET),)

report: $(BIN)/hpa ## re-render the shipped report (report/report.html), or a run's with PRESET=name
	$(BIN)/hpa report $(REPORT_RUN) $(ARGS)

report-pdf: $(BIN)/hpa ## the report as PDF through headless Chromium (PRESET=name for a run's)
	$(BIN)/hpa report $(REPORT_RUN) --pdf $(ARGS)

publish: $(BIN)/hpa ## ship runs/standard: its tables to report/run/, figures/, report/report.html, README
	$(BIN)/hpa publish --preset $(if $(filter command line environment,$(origin PRESET)),$(PRESET),standard) $(ARGS)

clean: ## remove runs, caches and generated data (keeps .venv)
	rm -rf runs .cache data
