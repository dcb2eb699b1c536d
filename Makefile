# cellseg: `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: help install train test bench lint clean

help: ## Show this help
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

install: $(VENV)/.installed ## Create .venv and install requirements.txt

train: install ## Set up, then train on the built-in synthetic data (ARGS="..." adds overrides)
	$(PY) train.py $(ARGS)

test: install ## Set up, then run the test suite
	$(PY) -m pytest $(ARGS)

bench: install ## Set up, then run the speed benchmark (writes bench.json, replacing the last one)
	$(PY) -m cellseg.bench --overwrite $(ARGS)

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean: ## Remove generated data, run outputs and caches (keeps .venv)
	rm -rf data logs outputs multirun bench.json .pytest_cache .ruff_cache
