/* The host's compute peak, the ceiling of a compute-bound prefill: bench_run.py builds this beside
   memread.c and prints each prefill row as a share of it. Two register-resident loops, each thread
   running its own copy: fp32 fused multiply-adds on the widest vectors the target has (AVX-512,
   AVX2+FMA, NEON; a scalar loop otherwise), and int8 dot products the way runq's kernels do them
   (VNNI vpdpbusd; AVX2 maddubs + madd + add without it; NEON sdot, or widening multiplies without
   it). Enough independent accumulators to cover the latency of every unit, no memory traffic.
   Prints the best of the passes:
     fp32: <GFLOPS> GFLOPS (<isa>)        a fused multiply-add is 2 flops
     int8: <GOPS> GOPS (<isa>)            an int8 multiply-add is 2 ops

   cc -O2 -march=native -fopenmp -o peakflops bench/peakflops.c
   OMP_NUM_THREADS=1 ./peakflops [passes] */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#define ACC 12          // independent chains: latency 4-5 x 2-3 units
#define STEPS 2000000   // per pass and thread
// keeps the compiler from folding constant operands or hoisting the work out of the loop
#define OPAQUE(v) __asm__ volatile("" : "+x"(v))
#if defined(__aarch64__)
#undef OPAQUE
#define OPAQUE(v) __asm__ volatile("" : "+w"(v))
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// --- fp32: returns multiply-adds done by one thread, writes a sum to *sink
#if defined(__AVX512F__)
#define F32_ISA "avx512 fma"
#define F32_LANES 16
typedef __m512 vf;
#define vf_set(x) _mm512_set1_ps(x)
#define vf_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define vf_first(v) _mm512_cvtss_f32(v)
#elif defined(__AVX2__) && defined(__FMA__)
#define F32_ISA "avx2 fma"
#define F32_LANES 8
typedef __m256 vf;
#define vf_set(x) _mm256_set1_ps(x)
#define vf_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vf_first(v) _mm256_cvtss_f32(v)
#elif defined(__aarch64__)
#define F32_ISA "neon fma"
#define F32_LANES 4
typedef float32x4_t vf;
#define vf_set(x) vdupq_n_f32(x)
#define vf_fma(a, b, c) vfmaq_f32(c, a, b)
#define vf_first(v) vgetq_lane_f32(v, 0)
#endif

#ifdef F32_LANES
static double fp32_loop(float *sink) {
    vf acc[ACC], a = vf_set(0.999f), b = vf_set(1e-3f);
    for (int k = 0; k < ACC; k++) acc[k] = vf_set((float)k);
    for (long s = 0; s < STEPS; s++) {
        OPAQUE(a);
        _Pragma("GCC unroll 12") // the accumulators stay in registers
        for (int k = 0; k < ACC; k++) acc[k] = vf_fma(acc[k], a, b);
    }
    float t = 0;
    for (int k = 0; k < ACC; k++) t += vf_first(acc[k]);
    *sink = t;
    return (double)STEPS * ACC * F32_LANES;
}
#else
#define F32_ISA "portable C"
static double fp32_loop(float *sink) {
    float acc[ACC], a = 0.999f, b = 1e-3f;
    for (int k = 0; k < ACC; k++) acc[k] = (float)k;
    for (long s = 0; s < STEPS; s++) {
        __asm__ volatile("" : "+r"(a));
        _Pragma("GCC unroll 12") // the accumulators stay in registers
        for (int k = 0; k < ACC; k++) acc[k] = acc[k] * a + b;
    }
    float t = 0;
    for (int k = 0; k < ACC; k++) t += acc[k];
    *sink = t;
    return (double)STEPS * ACC;
}
#endif

// --- int8: the same 4-products-into-an-int32 step runq's tiles use, on 32 or 64 bytes a step
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define I8_ISA "avx512 vnni"
#define I8_BYTES 64
typedef __m512i vi;
#define vi_set(x) _mm512_set1_epi8(x)
#define vi_dot(acc, a, b) _mm512_dpbusd_epi32(acc, a, b)
#define vi_first(v) _mm_cvtsi128_si32(_mm512_castsi512_si128(v))
#elif defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__))
#define I8_ISA "avx vnni"
#define I8_BYTES 32
typedef __m256i vi;
#define vi_set(x) _mm256_set1_epi8(x)
#if defined(__AVX512VNNI__)
#define vi_dot(acc, a, b) _mm256_dpbusd_epi32(acc, a, b)
#else
#define vi_dot(acc, a, b) _mm256_dpbusd_avx_epi32(acc, a, b)
#endif
#define vi_first(v) _mm_cvtsi128_si32(_mm256_castsi256_si128(v))
#elif defined(__AVX2__)
#define I8_ISA "avx2 maddubs"
#define I8_BYTES 32
typedef __m256i vi;
#define vi_set(x) _mm256_set1_epi8(x)
#define vi_dot(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)))
#define vi_first(v) _mm_cvtsi128_si32(_mm256_castsi256_si128(v))
#elif defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#define I8_ISA "neon sdot"
#define I8_BYTES 16
typedef int8x16_t vi;
#define vi_set(x) vdupq_n_s8(x)
#define I8_ACC int32x4_t
#define vi_zero() vdupq_n_s32(0)
#define vi_dot(acc, a, b) vdotq_s32(acc, a, b)
#define vi_first(v) vgetq_lane_s32(v, 0)
#elif defined(__aarch64__)
#define I8_ISA "neon widening"
#define I8_BYTES 16
typedef int8x16_t vi;
#define vi_set(x) vdupq_n_s8(x)
#define I8_ACC int32x4_t
#define vi_zero() vdupq_n_s32(0)
#define vi_dot(acc, a, b) vpadalq_s16(acc, vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b))
#define vi_first(v) vgetq_lane_s32(v, 0)
#endif

#ifdef I8_BYTES
#ifndef I8_ACC
#define I8_ACC vi
#define vi_zero() vi_set(0)
#endif
static double int8_loop(int *sink) {
    I8_ACC acc[ACC];
    vi a = vi_set(3), b = vi_set(-2);
    for (int k = 0; k < ACC; k++) acc[k] = vi_zero();
    for (long s = 0; s < STEPS; s++) {
        OPAQUE(a);
        _Pragma("GCC unroll 12") // the accumulators stay in registers
        for (int k = 0; k < ACC; k++) acc[k] = vi_dot(acc[k], a, b);
    }
    int t = 0;
    for (int k = 0; k < ACC; k++) t += vi_first(acc[k]);
    *sink = t;
    return (double)STEPS * ACC * I8_BYTES;
}
#else
#define I8_ISA "portable C"
static double int8_loop(int *sink) {
    int32_t acc[ACC] = {0};
    int8_t a = 3, b = -2;
    for (long s = 0; s < STEPS; s++) {
        __asm__ volatile("" : "+r"(a));
        _Pragma("GCC unroll 12")
        for (int k = 0; k < ACC; k++) acc[k] += (int32_t)a * b;
    }
    int t = 0;
    for (int k = 0; k < ACC; k++) t += acc[k];
    *sink = t;
    return (double)STEPS * ACC;
}
#endif

int main(int argc, char **argv) {
    int passes = argc > 1 ? atoi(argv[1]) : 5;
    if (passes < 1) { fprintf(stderr, "usage: peakflops [passes >= 1]\n"); return 1; }
    double best_f = 0, best_i = 0;
    float fsink = 0;
    int isink = 0;
    for (int p = 0; p < passes; p++) {
        double macs = 0, t0 = now();
        #pragma omp parallel reduction(+:macs)
        {
            float s;
            macs += fp32_loop(&s);
            if (s == 42.0f) fsink = s;
        }
        double f = 2 * macs / (now() - t0) / 1e9;
        macs = 0, t0 = now();
        #pragma omp parallel reduction(+:macs)
        {
            int s;
            macs += int8_loop(&s);
            if (s == 42) isink = s;
        }
        double i = 2 * macs / (now() - t0) / 1e9;
        if (f > best_f) best_f = f;
        if (i > best_i) best_i = i;
    }
    printf("fp32: %.1f GFLOPS (%s, %d threads)\n", best_f, F32_ISA, threads());
    printf("int8: %.1f GOPS (%s, %d threads)\n", best_i, I8_ISA, threads());
    return fsink == 42.0f && isink == 42; // keeps the loops' results alive
}
