# chinese-llama2.c — build the C runners, set up Python, run the demo and the tests.
# `make demo` and `make test` work on a fresh clone: they create .venv themselves.

PYTHON ?= python3
VENV = .venv
PY = $(VENV)/bin/python

# --- C programs (run.c, runq.c) -------------------------------------------
# `make run` builds both runners tuned for this CPU (AVX2/FMA kernels when it has them) with
# OpenMP when the compiler supports it; `make runportable` builds the plain scalar kernels.
CC ?= gcc
C_SOURCES = run.c runq.c llama2.h
OMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
NATIVE := $(shell echo 'int main(void){return 0;}' | $(CC) -march=native -x c - -o /dev/null 2>/dev/null && echo -march=native)

.PHONY: run runportable rundebug runfast runomp rungnu runompgnu win64 testc bench
run: $(C_SOURCES)
	$(CC) -O3 $(NATIVE) $(OMP) -o run run.c -lm
	$(CC) -O3 $(NATIVE) $(OMP) -o runq runq.c -lm

runportable: $(C_SOURCES)
	$(CC) -O3 -o run run.c -lm
	$(CC) -O3 -o runq runq.c -lm

rundebug: $(C_SOURCES)
	$(CC) -g -O0 -Wall -Wextra -o run run.c -lm
	$(CC) -g -O0 -Wall -Wextra -o runq runq.c -lm

runfast: $(C_SOURCES)
	$(CC) -Ofast -o run run.c -lm
	$(CC) -Ofast -o runq runq.c -lm

runomp: $(C_SOURCES)
	$(CC) -Ofast -fopenmp -march=native -o run run.c -lm
	$(CC) -Ofast -fopenmp -march=native -o runq runq.c -lm

rungnu: $(C_SOURCES)
	$(CC) -Ofast -std=gnu11 -o run run.c -lm
	$(CC) -Ofast -std=gnu11 -o runq runq.c -lm

runompgnu: $(C_SOURCES)
	$(CC) -Ofast -fopenmp -std=gnu11 -o run run.c -lm
	$(CC) -Ofast -fopenmp -std=gnu11 -o runq runq.c -lm

# Windows: llama2.h maps files with MapViewOfFile and sets the console to UTF-8.
win64: $(C_SOURCES)
	x86_64-w64-mingw32-gcc -Ofast -D__USE_MINGW_ANSI_STDIO=1 -o run.exe run.c -lm
	x86_64-w64-mingw32-gcc -Ofast -D__USE_MINGW_ANSI_STDIO=1 -o runq.exe runq.c -lm

# only the C runners' tests (parity with PyTorch, tokenizer, fuzzing)
testc: venv run
	$(PY) -m pytest -q tests/test_run_c.py tests/test_fuzz_c.py

# tok/s table for run/runq on random zh-15M and zh-110M models (takes minutes)
bench: venv
	$(PY) bench/bench_run.py

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
