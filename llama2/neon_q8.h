// neon_q8.h: the int8 matmul tile and the prefill panels' operations for aarch64 NEON, with the dot-product extension (sdot) when the target has it, beside runq.c's loops.
#pragma once
#include "neon.h"

#define Q8_STEP 16 // bytes of a row per step: group sizes must be a multiple
#define Q8_PARTIAL_TILES 1 // the tile takes R < 4 rows too

// 16 int8 products w . x summed into 4 int32 lanes: acc + those sums. sdot adds each 4 products
// into a lane; without it, widening multiplies to int16 (|2 products| <= 2*127*127 fits) and a
// pairwise widening add: the same integers.
static inline int32x4_t dot16_i8(int32x4_t acc, const int8_t *w, int8x16_t x) {
    int8x16_t wv = vld1q_s8(w);
#ifdef __ARM_FEATURE_DOTPROD
    return vdotq_s32(acc, wv, x);
#else
    int16x8_t p = vmull_s8(vget_low_s8(wv), vget_low_s8(x));
    return vpadalq_s16(acc, vmlal_high_s8(p, wv, x));
#endif
}

static inline __attribute__((always_inline)) void matmul_tile_q8(float *xout, const int8_t *xq, const float *xs,
                                                                 const int8_t *wi, const float *wsi, int n, int d, int gs,
                                                                 int i, int t, int R, int C) {
    int ahead = prefetch_ahead(i, d);
    float32x4_t acc[2];
    for (int c = 0; c < C; c++) acc[c] = vdupq_n_f32(0.0f);
    for (int j = 0, g = 0; j < n; j += gs, g++) {
        float32x4_t wscale = vld1q_f32(wsi + 4 * g); // rows i..i+3
        for (int c = 0; c < C; c++) {
            const int8_t *x = xq + (size_t)(t + c) * n;
            int32x4_t sum[4];
            for (int r = 0; r < 4; r++) sum[r] = vdupq_n_s32(0);
            for (int k = j; k < j + gs; k += 16) {
                if (c == 0 && ahead) __builtin_prefetch(wi + PREFETCH_ROWS * (size_t)n + 4 * k); // 4 tiles ahead, 64 bytes a step
                int8x16_t xv = vld1q_s8(x + k);
                for (int r = 0; r < R; r++) sum[r] = dot16_i8(sum[r], wi + (size_t)r * n + k, xv);
            }
            int32x4_t rows = vpaddq_s32(vpaddq_s32(sum[0], sum[1]), vpaddq_s32(sum[2], sum[3])); // row r in lane r
            float32x4_t scale = vmulq_n_f32(wscale, xs[(size_t)(t + c) * (n / gs) + g]);
            acc[c] = vfmaq_f32(acc[c], vcvtq_f32_s32(rows), scale);
        }
    }
    for (int c = 0; c < C; c++) {
        float out[4];
        vst1q_f32(out, acc[c]);
        for (int r = 0; r < R; r++) xout[(size_t)(t + c) * d + i + r] = out[r];
    }
}

// The prefill panels' operations (q8_panels.h): 4 rows a vector, signed times signed (no offset)
#define PR 4
typedef int32x4_t vi;
typedef float32x4_t vp;
#define vi_load(p) vld1q_s32(p)
#define vi_set1(v) vdupq_n_s32(v)
#define vi_sub(a, b) vsubq_s32(a, b)
#define vi_store(p, v) vst1q_s32(p, v)
// lane r: its 4 bytes of w times the 4 bytes of x
static inline int32x4_t vi_dot(int32x4_t acc, int32x4_t x, int32x4_t w) {
#ifdef __ARM_FEATURE_DOTPROD
    return vdotq_s32(acc, vreinterpretq_s8_s32(w), vreinterpretq_s8_s32(x));
#else
    int8x16_t wb = vreinterpretq_s8_s32(w), xb = vreinterpretq_s8_s32(x);
    int16x8_t lo = vmull_s8(vget_low_s8(wb), vget_low_s8(xb)), hi = vmull_high_s8(wb, xb);
    return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
#endif
}
#define vp_zero() vdupq_n_f32(0.0f)
#define vp_load(p) vld1q_f32(p)
#define vp_store(p, v) vst1q_f32(p, v)
#define vp_scale(ws, x) vmulq_n_f32(ws, x)
#define vp_fma(i, s, acc) vfmaq_f32(acc, vcvtq_f32_s32(i), s)
#define Q8_OFFSET 0
#include "q8_panels.h"
