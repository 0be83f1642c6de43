// simd.h: picks each kernel's variant for the compile target: an ISA file's (x86.h, neon.h, wasm.h) where it has one, else the reference loop.
#pragma once
#include "platform.h"

// The matmul tiles (4 rows each) prefetch the tile PREFETCH_ROWS rows ahead while they work, but
// not past the end of the matrix: the thread that ends one would read those rows for nothing.
#define PREFETCH_ROWS 16
static inline int prefetch_ahead(int i, int d) { return i + PREFETCH_ROWS + 4 <= d; }

// make run compiles for the CPU it runs on (-march=native); -DLLAMA2_SCALAR (make runportable) keeps the loops.
#if !defined(LLAMA2_SCALAR) && defined(__AVX2__) && defined(__FMA__)
#include "x86.h"
#elif !defined(LLAMA2_SCALAR) && defined(__aarch64__) && defined(__ARM_NEON)
#include "neon.h"
#elif !defined(LLAMA2_SCALAR) && defined(__wasm_simd128__)
#include "wasm.h"
#endif

// Each kernel the ISA file did not replace is its reference (ops.h; matmul_rows_ref in run.c).
#ifndef dot
#define dot dot_ref
#endif
#ifndef attention_scores
#define attention_scores attention_scores_ref
#endif
#ifndef attention_softmax
#define attention_softmax softmax
#endif
#ifndef mix_values
#define mix_values mix_values_ref
#endif
#ifndef swiglu
#define swiglu swiglu_ref
#endif
#ifndef matmul_rows
#define matmul_rows matmul_rows_ref
#endif
#ifndef REORDERS_WEIGHTS // the kernels read the weights in the file's order
#define REORDERS_WEIGHTS 0
static inline void reorder_f32(const float *w, size_t layers, size_t rows, size_t cols) { (void)w, (void)layers, (void)rows, (void)cols; }
#endif
