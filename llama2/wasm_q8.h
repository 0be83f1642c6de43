// wasm_q8.h: the int8 kernels for WebAssembly SIMD128 (make web): quantize, the matmul tile over weights in tile order (wasm.h), beside runq.c's loops.
#pragma once
#include "wasm.h"

// runq.c's quantize_ref, 16 floats at a time, rounding as x86_q8.h does (roundf is a libc call here): the same scales and bytes
static inline void quantize_wasm(int8_t *q, float *s, const float *x, int T, int n, int gs) {
    for (size_t g = 0; g < (size_t)T * n / gs; g++) {
        const float *xg = x + g * gs;
        int8_t *qg = q + g * gs;
        float wmax = 0.0f;
        int i = 0;
        if (gs % 4 == 0) { // pmax(m, v) is m < v ? v : m, so like the loop below it skips NaNs
            v128_t m = wasm_f32x4_splat(0.0f);
            for (; i < gs; i += 4) m = wasm_f32x4_pmax(m, wasm_f32x4_abs(wasm_v128_load(xg + i)));
            float lanes[4];
            wasm_v128_store(lanes, m);
            for (int l = 0; l < 4; l++) if (lanes[l] > wmax) wmax = lanes[l];
        }
        for (; i < gs; i++) { float v = fabsf(xg[i]); if (v > wmax) wmax = v; }
        float scale = wmax / 127.0f;
        s[g] = scale;
        i = 0;
        if (scale > 0.0f) { // 16 at a time, rounding as the AVX2 path does (roundf is a libc call here)
            v128_t sc = wasm_f32x4_splat(scale), half = wasm_f32x4_splat(0.49999997f), sign = wasm_f32x4_splat(-0.0f);
            for (; i + 16 <= gs; i += 16) {
                v128_t r[4];
                for (int b = 0; b < 4; b++) {
                    v128_t v = wasm_f32x4_div(wasm_v128_load(xg + i + 4 * b), sc);
                    // trunc_sat: |v| <= 127.5 fits, and a NaN becomes 0 as in the loop
                    r[b] = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_add(v, wasm_v128_or(half, wasm_v128_and(v, sign))));
                }
                // the saturating narrows clamp to [-128, 127]; |v| <= 127.5 never reaches -128
                wasm_v128_store(qg + i, wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(r[0], r[1]), wasm_i16x8_narrow_i32x4(r[2], r[3])));
            }
        }
        for (; i < gs; i++) {
            float r = scale > 0.0f ? roundf(xg[i] / scale) : 0.0f;
            qg[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r == r ? r : 0); // NaN -> 0
        }
    }
}
#define quantize quantize_wasm

// runq.c's matrices in tile order, for the group sizes the tile reads (multiples of 16; the
// others stay in row order for the loops)
static void reorder_q8_wasm(const int8_t *q, size_t rows, size_t cols, int gs) {
    if (gs % 16 == 0) tile_order((int8_t *)q, rows, cols);
}
#define reorder_q8 reorder_q8_wasm

#define Q8_STEP 16 // bytes of a row per step: group sizes must be a multiple
#define Q8_PARTIAL_TILES 0 // the last rows (< 4, in row order) take the loops

// 16 int8 products w . x summed into 4 int32 lanes. Values are in [-127, 127] (weights checked at
// load, activations clamped), so a product fits an int16 and so does the sum of two (2 * 127 * 127
// < 32767): the low and high halves' products are added as int16 before one widening add.
static inline v128_t dot16_i8(v128_t acc, v128_t w, v128_t x) {
    v128_t p = wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(w, x), wasm_i16x8_extmul_high_i8x16(w, x));
    return wasm_i32x4_add(acc, wasm_i32x4_extadd_pairwise_i16x8(p));
}

// The 4 rows' int32 sums, one row a lane: exact, so the order of the adds does not matter.
static inline v128_t hsum_rows(const v128_t s[4]) {
    v128_t a = wasm_i32x4_add(wasm_i32x4_shuffle(s[0], s[1], 0, 4, 1, 5), wasm_i32x4_shuffle(s[0], s[1], 2, 6, 3, 7));
    v128_t b = wasm_i32x4_add(wasm_i32x4_shuffle(s[2], s[3], 0, 4, 1, 5), wasm_i32x4_shuffle(s[2], s[3], 2, 6, 3, 7));
    return wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 1, 4, 5), wasm_i32x4_shuffle(a, b, 2, 3, 6, 7));
}

// The tile: 4 rows i..i+3 of W (in tile order) times C (1 or 2) tokens. A group's int32 sums are
// scaled as dot_q8 scales them, one row a lane, so the result is the loops' to the bit.
static inline __attribute__((always_inline)) void matmul_tile_q8(float *xout, const int8_t *xq, const float *xs,
                                                                 const int8_t *wi, const float *wsi, int n, int d, int gs,
                                                                 int i, int t, int R, int C) {
    (void)R; // always 4
    v128_t acc[2];
    for (int c = 0; c < C; c++) acc[c] = wasm_f32x4_splat(0.0f);
    for (int j = 0, g = 0; j < n; j += gs, g++) {
        v128_t sum[2][4];
        for (int c = 0; c < C; c++) for (int r = 0; r < 4; r++) sum[c][r] = wasm_i32x4_splat(0);
        for (int k = j; k < j + gs; k += 16) {
            v128_t xv[2];
            for (int c = 0; c < C; c++) xv[c] = wasm_v128_load(xq + (size_t)(t + c) * n + k);
            for (int r = 0; r < 4; r++) {
                v128_t wv = wasm_v128_load(wi + 4 * (size_t)k + 16 * r); // tile order
                for (int c = 0; c < C; c++) sum[c][r] = dot16_i8(sum[c][r], wv, xv[c]);
            }
        }
        v128_t wscale = wasm_v128_load(wsi + 4 * g);
        for (int c = 0; c < C; c++) {
            v128_t prod = wasm_f32x4_mul(wasm_f32x4_convert_i32x4(hsum_rows(sum[c])), wscale);
            acc[c] = wasm_f32x4_add(acc[c], wasm_f32x4_mul(prod, wasm_f32x4_splat(xs[(size_t)(t + c) * (n / gs) + g])));
        }
    }
    for (int c = 0; c < C; c++) wasm_v128_store(xout + (size_t)(t + c) * d + i, acc[c]);
}
