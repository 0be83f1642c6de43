# chinese-llama2.c — build the C runners, set up Python, run the demo and the tests.
# `make demo` and `make test` work on a fresh clone: they create .venv themselves.

# PYTHON: the interpreter the venv is made from; VENV, REQUIREMENTS: another venv with other pins,
# e.g. the oldest supported versions: make test PYTHON=/usr/bin/python3 VENV=.venv-min REQUIREMENTS=requirements-min.txt
PYTHON ?= python3
VENV ?= .venv
REQUIREMENTS ?= requirements.txt
PY = $(VENV)/bin/python

# --- C programs (run.c, runq.c and their shared parts in llama2/) ---------------
# `make run` builds both runners tuned for this CPU (-march=native: the AVX2, AVX-512 or NEON
# kernels it has) with OpenMP when the compiler supports it; `make runportable` builds the plain
# loops. Measurements behind these flags: bench/README.md.
CC ?= gcc
# -ffp-contract=off: a*b+c is never fused behind our back, so the kernels' explicit FMAs are the
# only ones and a token's logits are bit-identical in blocks and alone on every ISA
CFLAGS_FP = -ffp-contract=off
C_SOURCES = run.c runq.c $(wildcard llama2/*.h)
OMP := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
NATIVE := $(shell echo 'int main(void){return 0;}' | $(CC) -march=native -x c - -o /dev/null 2>/dev/null && echo -march=native)
# No -Ofast anywhere: it implies -ffinite-math-only, under which the compiler may delete the
# isnan() checks on tokenizer scores and command-line numbers. -funroll-loops: the kernels'
# short fixed-size loops.
FAST = -O3 $(CFLAGS_FP) -funroll-loops $(NATIVE)

.PHONY: run runportable rundebug runfast runomp rungnu runompgnu win64 hooks testc bench
# the runners for this CPU; llama2.c's other names for it build the same (-O3 gets the fast kernels)
run runfast runomp rungnu runompgnu: $(C_SOURCES)
	$(CC) $(FAST) $(OMP) -o run run.c -lm
	$(CC) $(FAST) $(OMP) -o runq runq.c -lm

# the reference loops only (-DLLAMA2_SCALAR), for any CPU
runportable: $(C_SOURCES)
	$(CC) -O3 $(CFLAGS_FP) -DLLAMA2_SCALAR -o run run.c -lm
	$(CC) -O3 $(CFLAGS_FP) -DLLAMA2_SCALAR -o runq runq.c -lm

# for a debugger, with every warning
rundebug: $(C_SOURCES)
	$(CC) -g -O0 $(CFLAGS_FP) -Wall -Wextra $(OMP) -o run run.c -lm
	$(CC) -g -O0 $(CFLAGS_FP) -Wall -Wextra $(OMP) -o runq runq.c -lm

# Windows (platform.h: wide-character paths, UTF-8 console); the target CPU is unknown, so
# x86-64-v3 (AVX2+FMA, every x86-64 CPU since 2015)
win64: $(C_SOURCES)
	x86_64-w64-mingw32-gcc -O3 $(CFLAGS_FP) -march=x86-64-v3 -D__USE_MINGW_ANSI_STDIO=1 -o run.exe run.c -lm
	x86_64-w64-mingw32-gcc -O3 $(CFLAGS_FP) -march=x86-64-v3 -D__USE_MINGW_ANSI_STDIO=1 -o runq.exe runq.c -lm

# the runners with tests/hooks.c's environment variables (logits dump, prefill block, no huge
# pages), built like `make run`, for the tests and bench/
hooks: tests/bin/run tests/bin/runq
tests/bin/%: %.c $(C_SOURCES) tests/hooks.c
	@mkdir -p tests/bin
	$(CC) $(FAST) $(OMP) -I. -DENGINE='"$*.c"' -o $@ tests/hooks.c -lm

# the Debian packages the tests and cross builds use (.ci/packages; as root): build targets never install
.PHONY: deps
deps:
	apt-get install -y --no-install-recommends $$(grep -v '^#' .ci/packages)

# bpe.c: the exact, fast BPE encoder that `tinystories.py pretokenize` loads through ctypes;
# without libbpe.so pretokenize falls back to sentencepiece (same tokens, slower)
.PHONY: bpe
bpe: libbpe.so
libbpe.so: bpe.c llama2/bpe.h
	$(CC) -O3 $(CFLAGS_FP) $(NATIVE) -Wall -shared -fPIC -o libbpe.so bpe.c

# only the C side's tests (unit tests of every kernel, parity with PyTorch, tokenizer, fuzzing)
testc: venv run hooks
	$(PY) -m pytest -q tests/test_c_units.py tests/test_run_c.py tests/test_kernels.py tests/test_fuzz_c.py tests/test_bpe.py

# a long fuzz campaign against run/runq built with ASan/UBSan (`make test` runs 400 cases);
# FUZZ_SEED=n for another sequence, FUZZ_JOBS=n processes at a time
N ?= 5000
.PHONY: fuzz
fuzz: venv
	FUZZ_CASES=$(N) $(PY) -m pytest -q -s tests/test_fuzz_c.py -k campaign

# tok/s table for run/runq on random zh-15M and zh-110M models (takes minutes)
bench: venv
	$(PY) bench/bench_run.py

# the same models in llama.cpp (built once from the llama-cpp-python sdist into bench/out/)
# the GPU check (bench/gpu_check.sh): one table, <= 8 min on a GPU machine
.PHONY: gpu-check
gpu-check:
	bash bench/gpu_check.sh

.PHONY: bench-llamacpp
bench-llamacpp: venv
	$(PY) bench/bench_llamacpp.py

# --- the browser playground -------------------------------------------------
# `make web` builds web/, a static folder any file host can serve: the page (web.html), its
# worker (web_worker.js), run.c and runq.c compiled to WebAssembly around web.c's entry points
# (SIMD128 kernels), and the demo model. `make serve-web` serves it on http://127.0.0.1:8000/.
# NODE_PATH: Debian's emcc needs its acorn from /usr/share/nodejs when node is not Debian's.
EMCC = NODE_PATH=/usr/share/nodejs emcc
EMFLAGS = -O3 $(CFLAGS_FP) -msimd128 -sMODULARIZE=1 -sINVOKE_RUN=0 -sENVIRONMENT=worker \
	-sALLOW_MEMORY_GROWTH=1 -sMAXIMUM_MEMORY=4GB -sEXPORTED_RUNTIME_METHODS=FS,ccall
WEB_PORT ?= 8000

.PHONY: web serve-web emscripten
web: web/index.html web/web_worker.js web/run.js web/runq.js web/stories_demo.bin web/tok_demo.bin

# emcc must be there (make deps installs Debian's, or use emsdk)
emscripten:
	@command -v emcc >/dev/null || { echo "make web needs emcc: make deps (as root), or emsdk"; exit 1; }

# web.c's entry points linked with each runner, its main left out (-DTESTING)
web/run.js: web.c $(C_SOURCES) | emscripten
	@mkdir -p web
	$(EMCC) $(EMFLAGS) -sEXPORT_NAME=createRun -DTESTING -o $@ web.c run.c

web/runq.js: web.c $(C_SOURCES) | emscripten
	@mkdir -p web
	$(EMCC) $(EMFLAGS) -sEXPORT_NAME=createRunq -DTESTING -o $@ web.c runq.c

web/index.html: web.html
	@mkdir -p web
	cp $< $@

web/web_worker.js: web_worker.js
	@mkdir -p web
	cp $< $@

web/%.bin: demo/%.bin
	@mkdir -p web
	cp $< $@

serve-web: web
	@echo "http://127.0.0.1:$(WEB_PORT)/"
	$(PYTHON) -m http.server $(WEB_PORT) --bind 127.0.0.1 --directory web

# --- Python environment, demo, tests ----------------------------------------
$(VENV)/.stamp: $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r $(REQUIREMENTS)
	touch $@

.PHONY: venv test demo demo_publish
venv: $(VENV)/.stamp

# the whole suite, Python and C, offline
test: venv run bpe hooks
	$(PY) -m pytest -q tests

# The main job on the bundled offline data, through the user-facing commands. Each stage
# leaves a file behind, so a second `make demo` reuses the finished stages and only samples;
# an interrupted training run resumes from its last checkpoint.
DEMO_DATA = data/demo
DEMO_OUT = out/demo
DEMO_VOCAB = 2048
DEMO_TOK = $(DEMO_DATA)/tok$(DEMO_VOCAB)
DEMO_PROMPT = 从前，有一只小狗叫豆豆
# the recipe's choices are in config/train_demo.py; the paths and the vocabulary are here
DEMO_TRAIN = config/train_demo.py --vocab_source=custom --vocab_size=$(DEMO_VOCAB) \
	--data_root=$(DEMO_DATA) --out_dir=$(DEMO_OUT)

# a demo stage: print the command, run it, print how long it took
TIMED = @sh -c 'echo "$$*"; t=$$(date +%s); "$$@" || exit; echo "   ($$(( $$(date +%s) - t )) s)"' --

$(DEMO_DATA)/.sample: | venv
	@echo "== [1/6] offline sample corpus"
	$(TIMED) $(PY) tinystories.py download --dataset=sample --data_root=$(DEMO_DATA)
	touch $@

$(DEMO_TOK).model: $(DEMO_DATA)/.sample
	@echo "== [2/6] sentencepiece vocabulary ($(DEMO_VOCAB) pieces)"
	$(TIMED) $(PY) tinystories.py train_vocab --vocab_size=$(DEMO_VOCAB) --data_root=$(DEMO_DATA)

$(DEMO_TOK).bin: $(DEMO_TOK).model
	$(TIMED) $(PY) tokenizer.py --tokenizer-model=$<

$(DEMO_TOK)/.done: $(DEMO_TOK).model | bpe
	@echo "== [3/6] pretokenize"
	$(TIMED) $(PY) tinystories.py pretokenize --vocab_size=$(DEMO_VOCAB) --data_root=$(DEMO_DATA)
	touch $@

$(DEMO_OUT)/.trained: $(DEMO_TOK)/.done
	@echo "== [4/6] train a small Llama on the CPU (2 gloo ranks through torchrun)"
	$(TIMED) $(VENV)/bin/torchrun --standalone --nproc_per_node=2 train.py $(DEMO_TRAIN) \
		$(if $(wildcard $(DEMO_OUT)/ckpt.pt),--init_from=resume,)
	touch $@

$(DEMO_OUT)/stories_demo.bin $(DEMO_OUT)/stories_demo_q80.bin &: $(DEMO_OUT)/.trained
	@echo "== [5/6] export v0 (fp32, for ./run) and v2 (int8, for ./runq)"
	$(TIMED) $(PY) export.py $(DEMO_OUT)/stories_demo.bin --version 0 --checkpoint $(DEMO_OUT)/ckpt.pt
	$(TIMED) $(PY) export.py $(DEMO_OUT)/stories_demo_q80.bin --version 2 --checkpoint $(DEMO_OUT)/ckpt.pt

demo: venv run bpe $(DEMO_TOK).bin $(DEMO_OUT)/stories_demo.bin $(DEMO_OUT)/stories_demo_q80.bin
	@echo "== [6/6] stories"
	@echo "--- ./run (fp32), prompt: $(DEMO_PROMPT)"
	./run $(DEMO_OUT)/stories_demo.bin -z $(DEMO_TOK).bin -t 0.8 -s 42 -n 256 -i '$(DEMO_PROMPT)'
	@echo "--- ./runq (int8)"
	./runq $(DEMO_OUT)/stories_demo_q80.bin -z $(DEMO_TOK).bin -t 0.8 -s 42 -n 256 -i '$(DEMO_PROMPT)'
	@echo
	@echo "Try more:"
	@echo "  ./run $(DEMO_OUT)/stories_demo.bin -z $(DEMO_TOK).bin -i '小明在公园里'"
	@echo "  ./run $(DEMO_OUT)/stories_demo.bin -z $(DEMO_TOK).bin -t 0 -i '从前'"
	@echo "  $(PY) sample.py --checkpoint=$(DEMO_OUT)/ckpt.pt --tokenizer=$(DEMO_TOK).model --start='从前'"

# copy the demo's model and tokenizer into demo/ (the files committed for a quick start)
demo_publish: demo
	mkdir -p demo
	cp $(DEMO_OUT)/stories_demo.bin demo/stories_demo.bin
	cp $(DEMO_TOK).bin demo/tok_demo.bin

.PHONY: clean
clean:
	rm -f run runq run.exe runq.exe libbpe.so
	rm -rf tests/bin
	rm -rf $(DEMO_OUT) web
