// x86_q8.h: the int8 kernels for x86-64: quantize in AVX2, the matmul tile and the prefill panels' operations in AVX2 (maddubs), AVX-VNNI or AVX-512 VNNI (dpbusd), beside runq.c's loops.
#pragma once
#include "x86.h"

// runq.c's quantize_ref, 8 floats at a time: the same scales and bytes
static inline void quantize_avx2(int8_t *q, float *s, const float *x, int T, int n, int gs) {
    for (size_t g = 0; g < (size_t)T * n / gs; g++) {
        const float *xg = x + g * gs;
        int8_t *qg = q + g * gs;
        float wmax = 0.0f;
        int i = 0;
        if (gs % 8 == 0) { // max|x| 8 at a time; like the loop below, max_ps(v, m) skips NaNs
            __m256 m = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
            for (; i < gs; i += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xg + i)), m);
            float lanes[8];
            _mm256_storeu_ps(lanes, m);
            for (int l = 0; l < 8; l++) if (lanes[l] > wmax) wmax = lanes[l];
        }
        for (; i < gs; i++) { float v = fabsf(xg[i]); if (v > wmax) wmax = v; }
        float scale = wmax / 127.0f;
        s[g] = scale;
        i = 0;
        if (scale > 0.0f) { // 8 at a time; roundf(v) == trunc(v + copysign(0.49999997f, v))
            __m256 sc = _mm256_set1_ps(scale), half = _mm256_set1_ps(0.49999997f), sign = _mm256_set1_ps(-0.0f);
            for (; i + 8 <= gs; i += 8) {
                __m256 v = _mm256_div_ps(_mm256_loadu_ps(xg + i), sc);
                v = _mm256_add_ps(v, _mm256_or_ps(half, _mm256_and_ps(v, sign)));
                __m256i r = _mm256_cvttps_epi32(v); // |v| <= 127.5: fits
                __m128i r16 = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
                _mm_storel_epi64((__m128i *)(qg + i), _mm_packs_epi16(r16, r16));
            }
        }
        for (; i < gs; i++) {
            float r = scale > 0.0f ? roundf(xg[i] / scale) : 0.0f;
            qg[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r == r ? r : 0); // NaN -> 0
        }
    }
}
#define quantize quantize_avx2

static inline int32_t load_i32(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

#define Q8_STEP 32 // bytes of a row per step: group sizes must be a multiple
#define Q8_PARTIAL_TILES 1 // the tile takes R < 4 rows too

// 32 int8 products w . x summed into 8 int32 lanes. maddubs wants one unsigned operand, so x's
// signs move onto the weights: |x| * (w * sign(x)) == w * x, and xa = |x| serves every row.
// Returns acc + those sums. With VNNI one instruction adds each 4 products into acc; without,
// maddubs sums pairs into int16 and madd the pairs of pairs into int32: the same integers.
static inline __m256i dot32_i8(__m256i acc, const int8_t *w, __m256i x, __m256i xa) {
    __m256i ws = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)w), x);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, xa, ws);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(acc, xa, ws);
#else
    __m256i p16 = _mm256_maddubs_epi16(xa, ws); // |pair sums| <= 2*127*127: no saturation
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
#endif
}

#if defined(USE_AVX512) && defined(__AVX512VNNI__)
// The same for two rows at once, w0 in lanes 0..7 and w1 in lanes 8..15 of one 512-bit vector
// (x and xa hold the 32 activations twice): half the instructions, the same integers. AVX-512
// has no sign_epi8, so the weights are negated under the mask of x's negative bytes.
static inline __m512i dot32x2_i8(__m512i acc, const int8_t *w0, const int8_t *w1, __m512i x, __m512i xa) {
    __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w0)),
                                   _mm256_loadu_si256((const __m256i *)w1), 1);
    w = _mm512_mask_sub_epi8(w, _mm512_movepi8_mask(x), _mm512_setzero_si512(), w);
    return _mm512_dpbusd_epi32(acc, xa, w);
}
#endif

#if defined(USE_AVX512) && defined(__AVX512VNNI__)
// The 4 rows' sums of s01 (rows 0 and 1, 8 lanes each) and s23: integers, exact in any order, so
// in the fewest shuffles (two rounds of 128-bit blocks, then within them) rather than hadd's.
static inline __m128i sum_rows4(__m512i s01, __m512i s23) {
    __m512i s = _mm512_add_epi32(_mm512_shuffle_i64x2(s01, s23, 0x88), _mm512_shuffle_i64x2(s01, s23, 0xDD)); // 4 lanes a row
    s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
    s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_CDAB)); // row r's sum in lane 4r
    return _mm512_castsi512_si128(_mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), s));
}
#endif

// Per group and token the 4 rows' 8-lane sums are added up into one int32 per row (exact), and
// each row's float sum takes one fused multiply-add per group: acc = I * (ws * xs) + acc, in group
// order. The prefill panels (q8_panels.h) compute exactly this, so blocks and tokens agree to the bit.
static inline __attribute__((always_inline)) void matmul_tile_q8(float *xout, const int8_t *xq, const float *xs,
                                                                 const int8_t *wi, const float *wsi, int n, int d, int gs,
                                                                 int i, int t, int R, int C) {
    int ahead = prefetch_ahead(i, d);
    __m128 acc[2];
    for (int c = 0; c < C; c++) acc[c] = _mm_setzero_ps();
    for (int j = 0, g = 0; j < n; j += gs, g++) {
        __m128 wscale = _mm_loadu_ps(wsi + 4 * g); // rows i..i+3
        for (int c = 0; c < C; c++) {
            const int8_t *x = xq + (size_t)(t + c) * n;
            __m128i rows; // the group's 4 integer sums, one per row
#if defined(USE_AVX512) && defined(__AVX512VNNI__)
            if (R == 4) { // rows 0 and 1 in one vector, 2 and 3 in another
                __m512i s01 = _mm512_setzero_si512(), s23 = _mm512_setzero_si512();
                for (int k = j; k < j + gs; k += 32) {
                    if (c == 0 && ahead) __builtin_prefetch(wi + PREFETCH_ROWS * (size_t)n + 4 * k), __builtin_prefetch(wi + PREFETCH_ROWS * (size_t)n + 4 * k + 64);
                    __m512i xv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x + k)));
                    __m512i xa = _mm512_abs_epi8(xv);
                    s01 = dot32x2_i8(s01, wi + k, wi + n + k, xv, xa);
                    s23 = dot32x2_i8(s23, wi + 2 * (size_t)n + k, wi + 3 * (size_t)n + k, xv, xa);
                }
                rows = sum_rows4(s01, s23);
            } else
#endif
            {
                __m256i sum[4];
                for (int r = 0; r < 4; r++) sum[r] = _mm256_setzero_si256();
                for (int k = j; k < j + gs; k += 32) {
                    // fetch the tile 4 tiles ahead (4*gs bytes per group): short rows defeat the hardware prefetcher
                    if (c == 0 && ahead) __builtin_prefetch(wi + PREFETCH_ROWS * (size_t)n + 4 * k), __builtin_prefetch(wi + PREFETCH_ROWS * (size_t)n + 4 * k + 64);
                    __m256i xv = _mm256_loadu_si256((const __m256i *)(x + k)), xa = _mm256_abs_epi8(xv);
                    for (int r = 0; r < R; r++) sum[r] = dot32_i8(sum[r], wi + (size_t)r * n + k, xv, xa);
                }
                __m256i halves = _mm256_hadd_epi32(_mm256_hadd_epi32(sum[0], sum[1]), _mm256_hadd_epi32(sum[2], sum[3]));
                rows = _mm_add_epi32(_mm256_castsi256_si128(halves), _mm256_extracti128_si256(halves, 1));
            }
            __m128 scale = _mm_mul_ps(wscale, _mm_set1_ps(xs[(size_t)(t + c) * (n / gs) + g]));
            acc[c] = _mm_fmadd_ps(_mm_cvtepi32_ps(rows), scale, acc[c]);
        }
    }
    for (int c = 0; c < C; c++) {
        float out[4];
        _mm_storeu_ps(out, acc[c]);
        for (int r = 0; r < R; r++) xout[(size_t)(t + c) * d + i + r] = out[r];
    }
}

// The prefill panels' operations (q8_panels.h): PR rows a vector of int32 lanes (vi) and of floats (vp)
#if defined(USE_AVX512) && defined(__AVX512VNNI__)
#define PR 16
typedef __m512i vi;
typedef __m512 vp;
#define vi_load(p) _mm512_loadu_si512(p)
#define vi_set1(v) _mm512_set1_epi32(v)
#define vi_gather(idx, base) _mm512_i32gather_epi32(idx, base, 1)
#define vi_index(n) _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(n))
#define vi_sub(a, b) _mm512_sub_epi32(a, b)
#define vi_dot(acc, x, w) _mm512_dpbusd_epi32(acc, x, w)
// a broadcast load and a vector xor: the scalar xor would take each 4 bytes through a general register
#define vi_bcast4(p) _mm512_xor_si512(_mm512_set1_epi32(load_i32(p)), _mm512_set1_epi32((int)0x80808080u))
#define vi_store(p, v) _mm512_storeu_si512(p, v)
#define vp_zero() _mm512_setzero_ps()
#define vp_load(p) _mm512_loadu_ps(p)
#define vp_store(p, v) _mm512_storeu_ps(p, v)
#define vp_scale(ws, x) _mm512_mul_ps(ws, _mm512_set1_ps(x))
#define vp_fma(i, s, acc) _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc)
#define Q8_OFFSET 1 // vpdpbusd wants unsigned activations: x + 128, minus 128 * sum(w) after
#else
#define PR 8
typedef __m256i vi;
typedef __m256 vp;
#define vi_load(p) _mm256_loadu_si256((const __m256i *)(p))
#define vi_set1(v) _mm256_set1_epi32(v)
#define vi_gather(idx, base) _mm256_i32gather_epi32((const int *)(const void *)(base), idx, 1)
#define vi_index(n) _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(n))
#define vi_sub(a, b) _mm256_sub_epi32(a, b)
#define vi_store(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define vi_dot(acc, x, w) _mm256_dpbusd_epi32(acc, x, w)
#define Q8_OFFSET 1
#elif defined(__AVXVNNI__)
#define vi_dot(acc, x, w) _mm256_dpbusd_avx_epi32(acc, x, w)
#define Q8_OFFSET 1
#else
// without VNNI: |x| times the weights with x's signs, pairs into int16 (no saturation: see
// dot32_i8), pairs of pairs into int32; the same integers as a dot product of the signed bytes
static inline __m256i vi_dot(__m256i acc, __m256i x, __m256i w) {
    __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(w, x));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}
#define Q8_OFFSET 0
#endif
#define vp_zero() _mm256_setzero_ps()
#define vp_load(p) _mm256_loadu_ps(p)
#define vp_store(p, v) _mm256_storeu_ps(p, v)
#define vp_scale(ws, x) _mm256_mul_ps(ws, _mm256_set1_ps(x))
#define vp_fma(i, s, acc) _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), s, acc)
#endif
#include "q8_panels.h"
