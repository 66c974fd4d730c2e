# The two commands a reader needs: `make book` and `make test`. Both set themselves up.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Offline, deterministic, quiet: the same environment for tests, notebooks and the book.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export MMTUTOR_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: setup book test unit notebooks clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

book: setup  ## build the HTML book into _build/html
	$(BIN)/jupyter-book build . -W -n --keep-going

test: setup  ## unit tests, every notebook through nbval, and the warnings-as-errors book build
	$(BIN)/python -m pytest

unit: setup  ## unit tests only (fast)
	$(BIN)/python -m pytest tests

notebooks: setup  ## re-execute every notebook in place, deterministically
	$(BIN)/python tools/run_notebooks.py notebooks/*.ipynb

clean:
	rm -rf _build
