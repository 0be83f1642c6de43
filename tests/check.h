// tests/check.h: what tests/test_run.c and tests/test_runq.c share: random arrays, checks that count failures, the ISA built for.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int checks, failures;

#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; if (failures <= 20) { \
    fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } } } while (0)

static unsigned long long test_rng = 42;
static float urand(void) { // uniform in [-1, 1)
    test_rng ^= test_rng >> 12; test_rng ^= test_rng << 25; test_rng ^= test_rng >> 27;
    return (float)((test_rng * 0x2545F4914F6CDD1Dull) >> 40) / 8388608.0f - 1.0f;
}

static float *random_floats(size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = scale * urand();
    return p;
}

// |got - want| within rel * scale + abs for each of n values; scale: the size of the terms summed
static int close_to(const float *got, const float *want, size_t n, float rel, float scale, float abs_tol) {
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= rel * scale + abs_tol)) {
            fprintf(stderr, "  [%zu]: %.9g vs %.9g\n", i, got[i], want[i]);
            return 0;
        }
    return 1;
}

static int same_bits(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) == 0; }

static const char *isa(void) {
#if defined(USE_AVX512)
    return "avx512";
#elif defined(USE_AVX2)
    return "avx2";
#elif defined(USE_NEON) && defined(__ARM_FEATURE_DOTPROD)
    return "neon+dotprod";
#elif defined(USE_NEON)
    return "neon";
#elif defined(USE_WASM_SIMD)
    return "wasm-simd128";
#else
    return "scalar";
#endif
}

static int report(const char *what) {
    printf("%s (%s): %d checks, %d failed\n", what, isa(), checks, failures);
    return failures ? 1 : 0;
}
