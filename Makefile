# Everything starts from a fresh clone with Python 3.11: `make train` and `make test` set up
# .venv (the package with its dev extra) the first time, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test test-fast lint tensorboard benchmark screenshots clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)  ## the journal's make_regression lesson, logged to lightning_logs/
	$(BIN)/python scripts/train.py model=linear $(ARGS)

test: $(STAMP)  ## the full test suite, slow end-to-end tests included (what CI runs), on every core
	$(BIN)/pytest -m "" -n auto --dist worksteal --durations=10 $(ARGS)

test-fast: $(STAMP)  ## the quick suite only
	$(BIN)/pytest -n auto --dist worksteal $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src scripts tests

tensorboard: $(STAMP)  ## every run; one experiment or sweep: make tensorboard NAME=default/sweep-1820
	$(BIN)/tensorboard --logdir lightning_logs/$(NAME)

benchmark: $(STAMP)
	$(BIN)/python scripts/benchmark.py $(ARGS)

screenshots: $(STAMP)  ## re-make docs/screens/*.png (needs: apt-get install chromium)
	$(BIN)/pip install --quiet -e '.[docs]'
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf lightning_logs .pytest_cache
