# chinese-llama2.c — build the C runners, set up Python, run the demo and the tests.
# `make demo` and `make test` work on a fresh clone: they create .venv themselves.

PYTHON ?= python3
VENV = .venv
PY = $(VENV)/bin/python

# --- C programs (run.c, runq.c) -------------------------------------------
CC ?= gcc

.PHONY: run
run: run.c runq.c
	$(CC) -O3 -o run run.c -lm
	$(CC) -O3 -o runq runq.c -lm

# --- Python environment, demo, tests ----------------------------------------
$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

.PHONY: venv test testpy
venv: $(VENV)/.stamp

test: venv run
	$(PY) -m pytest -q tests

.PHONY: clean
clean:
	rm -f run runq run.exe runq.exe
