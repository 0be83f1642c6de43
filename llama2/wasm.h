// wasm.h: the fp32 kernels for WebAssembly SIMD128 (make web: 4 floats a vector, no FMA), and the weight order the browser's tiles read.
#pragma once
#include <wasm_simd128.h>
#define USE_WASM_SIMD 1

static inline float hsum4(v128_t acc) {
    return wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1) +
           wasm_f32x4_extract_lane(acc, 2) + wasm_f32x4_extract_lane(acc, 3);
}

// The browser build's weight order: each full tile of 4 rows of a matrix is rewritten in place,
// 16 bytes of each row in turn (row i bytes k..k+15, row i+1 bytes k..k+15, i+2, i+3, then
// k+16...), so that a tile reads its weights as one stream instead of 4 a row apart.
// WebAssembly has no prefetch instruction, and the hardware prefetcher follows one stream well
// where it follows four badly (bench/README.md). The last rows (< 4) stay in row order.
// row_bytes is a multiple of 16; the matrix is map_file's private, writable copy.
static void tile_order(void *matrix, size_t rows, size_t row_bytes) {
    unsigned char *m = matrix, *rows4 = xcalloc(4, row_bytes, "the weights");
    for (size_t i = 0; i + 4 <= rows; i += 4, m += 4 * row_bytes) {
        memcpy(rows4, m, 4 * row_bytes);
        for (size_t k = 0; k < row_bytes; k += 16)
            for (int r = 0; r < 4; r++) memcpy(m + 4 * k + 16 * r, rows4 + r * row_bytes + k, 16);
    }
    free(rows4);
}
#define REORDERS_WEIGHTS 1 // map_file gives a writable copy; run.c copies a shared classifier first

// run.c's fp32 matrices whose rows are a multiple of 4 floats (the others stay in row order: VF_ROW reads them so)
static void reorder_f32(const float *w, size_t layers, size_t rows, size_t cols) {
    if (cols % 4 == 0)
        for (size_t l = 0; l < layers; l++) tile_order((float *)w + l * rows * cols, rows, cols * sizeof(float));
}
#define VF_ROW(w, i, r, n, j, R) \
    ((R) == 4 && (n) % 4 == 0 ? (w) + (size_t)(i) * (n) + 4 * (j) + 4 * (r) : (w) + (size_t)((i) + (r)) * (n) + (j))

typedef v128_t vf;
#define VF 4
#define vf_zero() wasm_f32x4_splat(0.0f)
#define vf_load(p) wasm_v128_load(p)
#define vf_fma(a, b, c) wasm_f32x4_add(c, wasm_f32x4_mul(a, b))
#define vf_sum(v) hsum4(v)
#include "vf.h"

// attention_scores_ref, 4 keys at a time sharing each load of q; each key's sum is dot()'s (lanes,
// then ((l0 + l1) + l2) + l3), done for the 4 keys at once after a transpose: the same bits
static inline void attention_scores_wasm(float *att, const float *q, const float *k, size_t stride, int npos, int n) {
    float sqrt_n = sqrtf((float)n);
    int j = 0;
    for (; n % 4 == 0 && j + 4 <= npos; j += 4) {
        v128_t acc[4];
        for (int p = 0; p < 4; p++) acc[p] = wasm_f32x4_splat(0.0f);
        for (int c = 0; c < n; c += 4) {
            v128_t qv = wasm_v128_load(q + c);
            for (int p = 0; p < 4; p++) acc[p] = wasm_f32x4_add(acc[p], wasm_f32x4_mul(qv, wasm_v128_load(k + (j + p) * stride + c)));
        }
        v128_t t01lo = wasm_i32x4_shuffle(acc[0], acc[1], 0, 4, 1, 5), t01hi = wasm_i32x4_shuffle(acc[0], acc[1], 2, 6, 3, 7);
        v128_t t23lo = wasm_i32x4_shuffle(acc[2], acc[3], 0, 4, 1, 5), t23hi = wasm_i32x4_shuffle(acc[2], acc[3], 2, 6, 3, 7);
        v128_t l0 = wasm_i32x4_shuffle(t01lo, t23lo, 0, 1, 4, 5), l1 = wasm_i32x4_shuffle(t01lo, t23lo, 2, 3, 6, 7);
        v128_t l2 = wasm_i32x4_shuffle(t01hi, t23hi, 0, 1, 4, 5), l3 = wasm_i32x4_shuffle(t01hi, t23hi, 2, 3, 6, 7);
        v128_t s = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_add(l0, l1), l2), l3);
        wasm_v128_store(att + j, wasm_f32x4_div(s, wasm_f32x4_splat(sqrt_n)));
    }
    for (; j < npos; j++) att[j] = dot_vf(q, k + j * stride, n) / sqrt_n;
}
#define attention_scores attention_scores_wasm

// mix_values_ref, one column a lane, each summed in the loop's order with a multiply and an add: the loop's bits
static inline void mix_values_wasm(float *out, const float *att, const float *v, size_t stride, int npos, int n) {
    int c = 0;
    for (; c + 16 <= n; c += 16) {
        v128_t acc[4];
        for (int b = 0; b < 4; b++) acc[b] = wasm_f32x4_splat(0.0f);
        for (int j = 0; j < npos; j++) {
            v128_t a = wasm_f32x4_splat(att[j]);
            for (int b = 0; b < 4; b++) acc[b] = wasm_f32x4_add(acc[b], wasm_f32x4_mul(a, wasm_v128_load(v + j * stride + c + 4 * b)));
        }
        for (int b = 0; b < 4; b++) wasm_v128_store(out + c + 4 * b, acc[b]);
    }
    for (; c + 4 <= n; c += 4) {
        v128_t acc = wasm_f32x4_splat(0.0f);
        for (int j = 0; j < npos; j++) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(att[j]), wasm_v128_load(v + j * stride + c)));
        wasm_v128_store(out + c, acc);
    }
    for (; c < n; c++) {
        float val = 0.0f;
        for (int j = 0; j < npos; j++) val += att[j] * v[j * stride + c];
        out[c] = val;
    }
}
#define mix_values mix_values_wasm
