/* tests/test_runq.c: runq.c's int8 kernels on plain arrays (built like tests/test_run.c, by
   tests/test_c_units.py): the target's quantize and int8 matmul tile against the reference loops,
   for group sizes each tile takes and the ones it leaves to the loops, odd row counts, and the
   matmul's independence of the block and the thread count. */
#define TESTING
#include "runq.c"
#include "tests/check.h"

static void test_quantize(void) {
    static const int gss[] = {1, 3, 4, 8, 16, 30, 32, 64};
    for (size_t a = 0; a < sizeof gss / sizeof *gss; a++)
        for (int T = 1; T <= 3; T++) {
            int gs = gss[a], n = gs * (1 + (int)a % 3);
            size_t len = (size_t)T * n;
            float *x = random_floats(len, 5), *s = random_floats(len / gs, 1), *s_ref = random_floats(len / gs, 1);
            for (size_t i = 0; i < len; i += 7) x[i] = roundf(x[i] * 2) / 2; // halves: rounding's edge
            for (int i = 0; i < gs; i++) x[i] = 0;                             // a zero group: scale 0
            int8_t *q = malloc(len), *q_ref = malloc(len);
            quantize(q, s, x, T, n, gs);
            quantize_ref(q_ref, s_ref, x, T, n, gs);
            CHECK(same_bits(q, q_ref, len) && same_bits(s, s_ref, len / gs * sizeof(float)),
                  "quantize gs=%d T=%d: not the loop's bytes", gs, T);
            free(x); free(s); free(s_ref); free(q); free(q_ref);
        }
}

// A (rows, cols) tensor as init_quantized_tensors makes it: values in [-127, 127], scales by scale_at.
static QuantizedTensor random_tensor(int rows, int cols, int gs, int kernel_order) {
    int8_t *q = malloc((size_t)rows * cols);
    test_rng = 1000 + rows * 31 + cols; // the same values for both orders
    for (size_t i = 0; i < (size_t)rows * cols; i++) q[i] = (int8_t)(127 * urand());
    size_t ng = cols / gs;
    float *s = calloc((rows + 3) / 4 * 4 * ng, sizeof(float));
    for (int r = 0; r < rows; r++)
        for (size_t g = 0; g < ng; g++) s[scale_at(r, g, ng)] = (urand() + 1.5f) / 127;
    if (kernel_order) reorder_q8(q, rows, cols, gs);
    return (QuantizedTensor){q, s};
}

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

static void test_matmul(void) {
    static const int gss[] = {16, 30, 32, 64}, ds[] = {1, 3, 4, 5, 7, 8, 12, 13};
    for (size_t a = 0; a < sizeof gss / sizeof *gss; a++)
        for (size_t b = 0; b < sizeof ds / sizeof *ds; b++) {
            int gs = gss[a], d = ds[b], n = gs * (1 + (int)b % 3), T = 1 + (int)(a + b) % 3;
            QuantizedTensor w = random_tensor(d, n, gs, 1), w_ref = random_tensor(d, n, gs, 0);
            float *x = random_floats((size_t)T * n, 3), *xs = malloc((size_t)T * n / gs * sizeof(float));
            int8_t *xq = malloc((size_t)T * n);
            quantize_ref(xq, xs, x, T, n, gs);
            float *got = random_floats((size_t)T * d, 1), *want = random_floats((size_t)T * d, 1), *one = random_floats(d, 1);
            for (int i = 0; i < d; i += 4) {
                matmul_rows_q8(got, xq, xs, &w, T, n, d, gs, i);
                matmul_rows_q8_ref(want, xq, xs, &w_ref, T, n, d, gs, i);
            }
            float scale = 0; // the largest sum of |terms| of an output
            for (int t = 0; t < T; t++) for (int r = 0; r < d; r++) {
                float sum = 0;
                for (int j = 0; j < n; j++) sum += fabsf(xq[(size_t)t * n + j] * w_ref.s[scale_at(r, j / gs, n / gs)] * xs[(size_t)t * n / gs + j / gs] * 127);
                scale = sum > scale ? sum : scale;
            }
#ifdef USE_WASM_SIMD // its lanes scale each group's sum as dot_q8 does: the same bits
            CHECK(same_bits(got, want, (size_t)T * d * sizeof(float)), "matmul_rows_q8 (wasm) gs=%d d=%d T=%d: not the loop's bits", gs, d, T);
#endif
            CHECK(close_to(got, want, (size_t)T * d, 1e-6f * (n / gs + 1), scale, 1e-6f), "matmul_rows_q8 gs=%d d=%d T=%d", gs, d, T);
            // the whole matmul, T tokens at once, equals each token alone, with any number of threads
            for (int threads = 1; threads <= 3; threads += 2) {
                set_threads(threads);
                matmul(got, xq, xs, &w, T, n, d, gs);
                for (int t = 0; t < T; t++) {
                    matmul(one, xq + (size_t)t * n, xs + (size_t)t * n / gs, &w, 1, n, d, gs);
                    CHECK(same_bits(one, got + (size_t)t * d, d * sizeof(float)), "matmul gs=%d d=%d: token %d of %d differs alone (%d threads)", gs, d, t, T, threads);
                }
            }
            set_threads(1);
            free((void *)w.q); free(w.s); free((void *)w_ref.q); free(w_ref.s);
            free(x); free(xs); free(xq); free(got); free(want); free(one);
        }
}

// dequantize reads what init_quantized_tensors wrote: each row's scales back in place
static void test_scales_layout(void) {
    for (int rows = 1; rows <= 9; rows++) {
        int gs = 4, cols = 12;
        QuantizedTensor w = random_tensor(rows, cols, gs, 0);
        float *x = malloc((size_t)rows * cols * sizeof(float));
        dequantize(&w, x, rows, cols, gs);
        int bad = 0;
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) bad += x[r * cols + j] != w.q[r * cols + j] * w.s[scale_at(r, j / gs, cols / gs)];
        CHECK(bad == 0, "dequantize rows=%d: %d values", rows, bad);
        int seen[64] = {0}, dup = 0; // scale_at: one slot per (row, group), within the padded tiles
        for (int r = 0; r < rows; r++) for (int g = 0; g < cols / gs; g++) dup += seen[scale_at(r, g, cols / gs)]++ > 0;
        CHECK(dup == 0 && scale_at(rows - 1, cols / gs - 1, cols / gs) < (size_t)(rows + 3) / 4 * 4 * (cols / gs), "scale_at rows=%d", rows);
        free((void *)w.q); free(w.s); free(x);
    }
}

int main(void) {
    test_quantize();
    test_matmul();
    test_scales_layout();
    return report("test_runq");
}
