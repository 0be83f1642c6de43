// x86.h: the fp32 kernels for x86-64 AVX2+FMA (8 floats a vector) and AVX-512 F/BW/VL (the matmul and dot in 16), each beside ops.h's reference.
#pragma once
#include <immintrin.h>
#define USE_AVX2 1
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define USE_AVX512 1
#endif

static inline float hsum8(__m256 acc) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// the vector operations vf.h's dot and matmul tile are written in. vf_keep: the compiler would
// fold each of a tile's activation loads into the R FMAs that use it (R loads instead of one, and
// then the tile waits on loads, not on FMAs); an empty asm that owns the register stops it.
#define vf_keep(v) __asm__("" : "+v"(v))
#if defined(USE_AVX512)
typedef __m512 vf;
#define VF 16
#define vf_zero() _mm512_setzero_ps()
#define vf_load(p) _mm512_loadu_ps(p)
#define vf_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
static inline float vf_sum(__m512 v) {
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
// vf_sum of 4 vectors, their sums side by side: the same pairs of lanes added in the same order
// (lanes i and i+8, then i and i+4, i and i+2, i and i+1), so the same bits, in a few shuffles
// and one store: a tile's 4 x C sums one by one were scalar chains after a spill of every
// accumulator to the stack, a large part of a tile over rows of a few hundred floats.
static inline void vf_sum4_avx512(float *out, __m512 a, __m512 b, __m512 c, __m512 d) {
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE)); // a's 8, b's 8
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD)); // 4 each
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(2, 3, 0, 1))); // the sums in lanes 0, 4, 8, 12
    s = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), s);
    _mm_storeu_ps(out, _mm512_castps512_ps128(s));
}
#define vf_sum4 vf_sum4_avx512
#else
// vf_sum (hsum8) of 4 vectors side by side, as the AVX-512 one above: lanes i and i+4, i+2, i+1
static inline void vf_sum4_avx2(float *out, __m256 a, __m256 b, __m256 c, __m256 d) {
    __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31)); // a's 4, b's 4
    __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    ab = _mm256_add_ps(ab, _mm256_permute_ps(ab, _MM_SHUFFLE(1, 0, 3, 2)));
    cd = _mm256_add_ps(cd, _mm256_permute_ps(cd, _MM_SHUFFLE(1, 0, 3, 2)));
    ab = _mm256_add_ps(ab, _mm256_permute_ps(ab, _MM_SHUFFLE(2, 3, 0, 1))); // a's sum in lane 0, b's in 4
    cd = _mm256_add_ps(cd, _mm256_permute_ps(cd, _MM_SHUFFLE(2, 3, 0, 1)));
    __m256 s = _mm256_shuffle_ps(ab, cd, 0); // a a c c | b b d d
    _mm_storeu_ps(out, _mm_blend_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1), 0xA));
}
#define vf_sum4 vf_sum4_avx2
typedef __m256 vf;
#define VF 8
#define vf_zero() _mm256_setzero_ps()
#define vf_load(p) _mm256_loadu_ps(p)
#define vf_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vf_sum(v) hsum8(v)
#endif
#include "vf.h"

// How far ahead (in positions) attention prefetches the keys and values of a head: a head's keys
// are a short stream that the hardware prefetcher picks up late.
#define ATTN_PREFETCH 16

// attention_scores_ref, 8 keys at a time, so their 8 horizontal sums share one transpose-and-add
static inline void attention_scores_avx2(float *att, const float *q, const float *k, size_t stride, int npos, int n) {
    float sqrt_n = sqrtf((float)n);
    int j = 0;
    for (; n % 8 == 0 && j + 8 <= npos; j += 8) {
        // the keys ATTN_PREFETCH positions ahead
        if (j + ATTN_PREFETCH + 8 <= npos)
            for (size_t f = 0; f < 8 * stride; f += 16) __builtin_prefetch(k + (j + ATTN_PREFETCH) * stride + f);
        __m256 acc[8];
        for (int p = 0; p < 8; p++) acc[p] = _mm256_setzero_ps();
        for (int c = 0; c < n; c += 8) {
            __m256 qv = _mm256_loadu_ps(q + c);
            for (int p = 0; p < 8; p++) acc[p] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + (j + p) * stride + c), acc[p]);
        }
        __m256 s0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
        __m256 s1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
        __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31));
        _mm256_storeu_ps(att + j, _mm256_div_ps(s, _mm256_set1_ps(sqrt_n)));
    }
    for (; j < npos; j++) att[j] = dot_vf(q, k + j * stride, n) / sqrt_n;
}
#define attention_scores attention_scores_avx2

// e^x, 8 at a time, with x clamped to [-87, 88] (e^-87 is 0 next to the 1 of a softmax's max,
// e^88 is near FLT_MAX): x = n ln2 + r with |r| <= ln2/2, e^r by Cephes' expf polynomial, 2^n
// through the exponent bits.
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); // ln2 in two parts, for precision
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// The first k (0..8) of 8 lanes, for the masked loads and stores of a row's last partial block:
// every element of a row then goes through the same exp8.
static inline __m256i first_lanes(int k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// softmax with 8 exponentials at a time
static inline void attention_softmax_avx2(float *x, int size) {
    __m256 mv = _mm256_set1_ps(x[0]); // the max, 8 lanes at a time (a max is exact in any order)
    int i = 0;
    for (; i + 8 <= size; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mv), _mm256_extractf128_ps(mv, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    float max_val = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    for (; i < size; i++) if (x[i] > max_val) max_val = x[i];
    __m256 sum = _mm256_setzero_ps();
    mv = _mm256_set1_ps(max_val);
    i = 0;
    for (; i + 8 <= size; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m256i m = first_lanes(size - i); // the last partial block (masked stores are slow: only here)
    if (i < size) {
        __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), mv)), _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(x + i, m, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m256 s = _mm256_set1_ps(hsum8(sum));
    for (i = 0; i + 8 <= size; i += 8) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), s));
    if (i < size) _mm256_maskstore_ps(x + i, m, _mm256_div_ps(_mm256_maskload_ps(x + i, m), s));
}
#define attention_softmax attention_softmax_avx2

// NB blocks of 8 output columns of mix_values, in registers over one pass of the positions.
static inline __attribute__((always_inline)) void mix_columns(float *out, const float *att, const float *v,
                                                              size_t stride, int npos, int NB) {
    __m256 acc[8];
    for (int b = 0; b < NB; b++) acc[b] = _mm256_setzero_ps();
    for (int j = 0; j < npos; j++) {
        if (j + ATTN_PREFETCH < npos) // the values ahead, as attention_scores does the keys
            for (int f = 0; f < 8 * NB; f += 16) __builtin_prefetch(v + (j + ATTN_PREFETCH) * stride + f);
        __m256 a = _mm256_set1_ps(att[j]);
        for (int b = 0; b < NB; b++) acc[b] = _mm256_fmadd_ps(a, _mm256_loadu_ps(v + j * stride + 8 * b), acc[b]);
    }
    for (int b = 0; b < NB; b++) _mm256_storeu_ps(out + 8 * b, acc[b]);
}

// mix_values_ref, NB blocks of 8 columns per pass over the positions
static inline void mix_values_avx2(float *out, const float *att, const float *v, size_t stride, int npos, int n) {
    int c = 0;
    for (; c + 64 <= n; c += 64) mix_columns(out + c, att, v + c, stride, npos, 8);
    switch ((n - c) / 8) { // the rest of a head (6 blocks of a 48-float head) in one pass too
        case 7: mix_columns(out + c, att, v + c, stride, npos, 7); break;
        case 6: mix_columns(out + c, att, v + c, stride, npos, 6); break;
        case 5: mix_columns(out + c, att, v + c, stride, npos, 5); break;
        case 4: mix_columns(out + c, att, v + c, stride, npos, 4); break;
        case 3: mix_columns(out + c, att, v + c, stride, npos, 3); break;
        case 2: mix_columns(out + c, att, v + c, stride, npos, 2); break;
        case 1: mix_columns(out + c, att, v + c, stride, npos, 1); break;
    }
    c += (n - c) / 8 * 8;
    for (; c < n; c++) {
        float val = 0.0f;
        for (int j = 0; j < npos; j++) val += att[j] * v[j * stride + c];
        out[c] = val;
    }
}
#define mix_values mix_values_avx2

// Prefill's attention, 4 queries of a head at consecutive positions at once (query i sees npos + i
// keys): a block of tokens otherwise reads a head's keys and values once per token. Each output
// is computed as attention_scores_avx2 / mix_values_avx2 compute it for that query alone, so a
// token's logits stay those of token-by-token decoding.

// attention_scores_avx2 for the 4: the keys all four sum in blocks of 8 (below npos / 8 * 8),
// 2 keys x 4 queries at a time through the same transpose-and-add (the same tree for every
// sum); the other keys query by query.
static inline void attention_scores4_avx2(float *const att[4], const float *const q[4], const float *k, size_t stride,
                                          int npos, int n) {
    float sqrt_n = sqrtf((float)n);
    int shared = n % 8 == 0 ? npos / 8 * 8 : 0;
    for (int j = 0; j < shared; j += 2) {
        if (j + ATTN_PREFETCH + 2 <= npos)
            for (size_t f = 0; f < 2 * stride; f += 16) __builtin_prefetch(k + (j + ATTN_PREFETCH) * stride + f);
        __m256 acc[8]; // query i's sums for keys j and j + 1 in acc[2i], acc[2i + 1]
        for (int a = 0; a < 8; a++) acc[a] = _mm256_setzero_ps();
        for (int c = 0; c < n; c += 8) {
            __m256 k0 = _mm256_loadu_ps(k + j * stride + c), k1 = _mm256_loadu_ps(k + (j + 1) * stride + c);
            for (int i = 0; i < 4; i++) {
                __m256 qv = _mm256_loadu_ps(q[i] + c);
                acc[2 * i] = _mm256_fmadd_ps(qv, k0, acc[2 * i]);
                acc[2 * i + 1] = _mm256_fmadd_ps(qv, k1, acc[2 * i + 1]);
            }
        }
        __m256 s0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
        __m256 s1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
        __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31));
        float sums[8];
        _mm256_storeu_ps(sums, _mm256_div_ps(s, _mm256_set1_ps(sqrt_n)));
        for (int i = 0; i < 4; i++) att[i][j] = sums[2 * i], att[i][j + 1] = sums[2 * i + 1];
    }
    for (int i = 0; i < 4; i++) attention_scores_avx2(att[i] + shared, q[i], k + shared * stride, stride, npos + i - shared, n);
}
#define attention_scores4 attention_scores4_avx2

// mix_values_avx2 for the 4: 16 columns of each in registers over the npos positions all four
// mix, then each query's own last positions, every column one chain of FMAs in position order.
static inline void mix_values4_avx2(float *const out[4], float *const att[4], const float *v, size_t stride,
                                    int npos, int n) {
    if (n % 16 != 0) {
        for (int i = 0; i < 4; i++) mix_values_avx2(out[i], att[i], v, stride, npos + i, n);
        return;
    }
    for (int c = 0; c < n; c += 16) {
        __m256 acc[4][2];
        for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        for (int j = 0; j < npos; j++) {
            if (j + ATTN_PREFETCH < npos) __builtin_prefetch(v + (j + ATTN_PREFETCH) * stride + c);
            __m256 v0 = _mm256_loadu_ps(v + j * stride + c), v1 = _mm256_loadu_ps(v + j * stride + c + 8);
            for (int i = 0; i < 4; i++) {
                __m256 a = _mm256_set1_ps(att[i][j]);
                acc[i][0] = _mm256_fmadd_ps(a, v0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(a, v1, acc[i][1]);
            }
        }
        for (int i = 1; i < 4; i++)
            for (int j = npos; j < npos + i; j++) {
                __m256 a = _mm256_set1_ps(att[i][j]);
                acc[i][0] = _mm256_fmadd_ps(a, _mm256_loadu_ps(v + j * stride + c), acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(a, _mm256_loadu_ps(v + j * stride + c + 8), acc[i][1]);
            }
        for (int i = 0; i < 4; i++) {
            _mm256_storeu_ps(out[i] + c, acc[i][0]);
            _mm256_storeu_ps(out[i] + c + 8, acc[i][1]);
        }
    }
}
#define mix_values4 mix_values4_avx2

// silu(val) * val2 for 8 values
static inline __m256 swiglu8(__m256 val, __m256 val2) {
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 sigmoid = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), val))));
    return _mm256_mul_ps(_mm256_mul_ps(val, sigmoid), val2);
}

// swiglu_ref, 8 at a time
static inline void swiglu_avx2(float *hb, const float *hb2, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(hb + i, swiglu8(_mm256_loadu_ps(hb + i), _mm256_loadu_ps(hb2 + i)));
    if (i < n) { // the last partial block, masked
        __m256i m = first_lanes((int)(n - i));
        _mm256_maskstore_ps(hb + i, m, swiglu8(_mm256_maskload_ps(hb + i, m), _mm256_maskload_ps(hb2 + i, m)));
    }
}
#define swiglu swiglu_avx2
