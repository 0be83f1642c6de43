/* Inference for Llama-2 Transformer models in pure C, int8 weights (Q8_0).
   Reads version 2 checkpoints (export.py --version 2): every matmul weight is int8 with one float
   scale per group of group_size values; activations are quantized the same way on the fly, so
   matmuls are int8 x int8 dot products. The norms stay fp32. The tokenizer, sampler, generation
   loop and command line are shared with run.c in llama2.h.

   make run
   ./runq stories15M_q80.bin -z tok5000.bin -i "从前，有一只会飞的狗叫波波"
*/
#include "llama2.h"


// ----------------------------------------------------------------------------
// Transformer weights and state

typedef struct {
    const int8_t *q; // (rows, cols) quantized values, one row per output, in the file
    float *s;        // one scale per group of a row, repacked at load (see scale_at)
} QuantizedTensor;

typedef struct {
    float *token_embedding_table;    // (vocab_size, dim), dequantized once at load
    const float *rms_att_weight;     // (layer, dim) rmsnorm weights
    const float *rms_ffn_weight;     // (layer, dim)
    QuantizedTensor *wq;             // (layer, dim, n_heads * head_size)
    QuantizedTensor *wk;             // (layer, dim, n_kv_heads * head_size)
    QuantizedTensor *wv;             // (layer, dim, n_kv_heads * head_size)
    QuantizedTensor *wo;             // (layer, n_heads * head_size, dim)
    QuantizedTensor *w1;             // (layer, hidden_dim, dim)
    QuantizedTensor *w2;             // (layer, dim, hidden_dim)
    QuantizedTensor *w3;             // (layer, hidden_dim, dim)
    const float *rms_final_weight;   // (dim,)
    QuantizedTensor *wcls;           // (vocab_size, dim)
    QuantizedTensor *all;            // every tensor above, in file order (owns the scales)
    int n_tensors;
} TransformerWeights;

struct Transformer {
    Config config;
    int group_size;
    TransformerWeights weights;
    RunState state;
    int8_t *xq;        // (B, max(dim, hidden_dim)) activations quantized for the int8 matmuls
    float *xs;         // (B, max(dim, hidden_dim) / group_size) their scales
    MappedFile file;
};
TRANSFORMER_CONFIG_FIRST;

// For the floats read at load (norms, scales): the int8 activations would turn a NaN into
// zeros and print nonsense, where run's fp32 NaN reaches the logits and the sampler stops.
static void check_finite(const char *path, const unsigned char *p, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++) {
        float x;
        memcpy(&x, p + 4 * i, 4);
        if (!is_finite_bits(x)) die("%s: the model has a NaN or inf %s (value %zu); a diverged training run?", path, what, i);
    }
}

// The scale of row r, group g among ngroups: the file stores each row's scales in turn; at
// load they are regrouped by 4 rows (the matmul's tile), group by group, so one load gives a
// group's 4 scales.
static size_t scale_at(size_t r, size_t g, size_t ngroups) { return (r / 4 * ngroups + g) * 4 + r % 4; }

// The browser build's tile order (llama2.h tile_order) for the tensors its int8 tile reads (group
// sizes that are a multiple of 16; the others stay in row order for the portable loop).
static void tile_order_q8(const QuantizedTensor *t, size_t rows, size_t cols, int gs) {
#ifdef USE_WASM_SIMD
    if (gs % 16 == 0) tile_order((int8_t *)t->q, rows, cols);
#else
    (void)t; (void)rows; (void)cols; (void)gs;
#endif
}

// Points n tensors of (rows, cols) values each at the file and copies their scales, advancing
// *ptr past both. Values are round(w / (max|w| / 127)), so -128 never occurs in a real file; the
// SIMD kernels rely on it (they negate weights: -(-128) does not fit in an int8).
static QuantizedTensor *init_quantized_tensors(const char *path, QuantizedTensor *out, const unsigned char **ptr,
                                               int n, size_t rows, size_t cols, int gs, int matmul) {
    size_t ngroups = cols / gs;
    for (int i = 0; i < n; i++) {
        out[i].q = (const int8_t *)*ptr;
        int8_t low = 0;
        for (size_t k = 0; k < rows * cols; k++) low = out[i].q[k] < low ? out[i].q[k] : low;
        if (low == -128) die("%s: an int8 weight is -128: not a valid version 2 checkpoint (values are in [-127, 127])", path);
        *ptr += rows * cols;
        check_finite(path, *ptr, rows * ngroups, "int8 scale");
        out[i].s = xcalloc((rows + 3) / 4 * 4 * ngroups, sizeof(float), "scales"); // zeros pad the last tile
        for (size_t r = 0; r < rows; r++)
            for (size_t g = 0; g < ngroups; g++) // memcpy: odd sizes leave the file's scales unaligned
                memcpy(&out[i].s[scale_at(r, g, ngroups)], *ptr + (r * ngroups + g) * sizeof(float), sizeof(float));
        *ptr += rows * ngroups * sizeof(float);
        if (matmul) tile_order_q8(&out[i], rows, cols, gs);
    }
    return out;
}

static void dequantize(const QuantizedTensor *qx, float *x, size_t rows, size_t cols, int gs) {
    for (size_t r = 0; r < rows; r++)
        for (size_t g = 0; g < cols / gs; g++) {
            float scale = qx->s[scale_at(r, g, cols / gs)];
            for (size_t j = g * gs; j < (g + 1) * gs; j++) x[r * cols + j] = qx->q[r * cols + j] * scale;
        }
}

static void memory_map_weights(const char *path, TransformerWeights *w, const Config *p, const unsigned char *ptr,
                               int shared, int gs) {
    size_t hs = p->dim / p->n_heads, L = p->n_layers, dim = p->dim, hid = p->hidden_dim, V = p->vocab_size;
    size_t kv = p->n_kv_heads * hs;
    check_finite(path, ptr, 2 * L * dim + dim, "norm weight");
    const float *fptr = (const float *)ptr; // the header is 256 bytes, so this is aligned
    w->rms_att_weight = fptr; fptr += L * dim;
    w->rms_ffn_weight = fptr; fptr += L * dim;
    w->rms_final_weight = fptr; fptr += dim;
    ptr = (const unsigned char *)fptr;
    w->n_tensors = 1 + 7 * L + !shared;
    w->all = xcalloc(w->n_tensors, sizeof(QuantizedTensor), "the model");
    QuantizedTensor *next = w->all;
    QuantizedTensor *emb = init_quantized_tensors(path, next, &ptr, 1, V, dim, gs, 0); next += 1;
    w->wq = init_quantized_tensors(path, next, &ptr, L, dim, dim, gs, 1); next += L;
    w->wk = init_quantized_tensors(path, next, &ptr, L, kv, dim, gs, 1); next += L;
    w->wv = init_quantized_tensors(path, next, &ptr, L, kv, dim, gs, 1); next += L;
    w->wo = init_quantized_tensors(path, next, &ptr, L, dim, dim, gs, 1); next += L;
    w->w1 = init_quantized_tensors(path, next, &ptr, L, hid, dim, gs, 1); next += L;
    w->w2 = init_quantized_tensors(path, next, &ptr, L, dim, hid, gs, 1); next += L;
    w->w3 = init_quantized_tensors(path, next, &ptr, L, hid, dim, gs, 1); next += L;
    w->wcls = shared ? emb : init_quantized_tensors(path, next, &ptr, 1, V, dim, gs, 1);
    w->token_embedding_table = xcalloc(V * dim, sizeof(float), "the token embedding");
    dequantize(emb, w->token_embedding_table, V, dim, gs); // reads rows: before a shared classifier's tile order
    if (shared) tile_order_q8(emb, V, dim, gs);
}

static Transformer *build_transformer(const char *checkpoint_path) {
    Transformer *t = xcalloc(1, sizeof(Transformer), "the model");
    map_file(&t->file, checkpoint_path);
    Header h;
    read_header(checkpoint_path, t->file.data, t->file.size, &h);
    if (h.version != 2) die("%s is an fp32 (version %d) checkpoint: run it with ./run", checkpoint_path, h.version);
    check_file_size(checkpoint_path, &h, t->file.size);
    t->config = h.config;
    t->group_size = h.group_size;
    memory_map_weights(checkpoint_path, &t->weights, &t->config, t->file.data + h.header_bytes, h.shared_classifier,
                       h.group_size);
    build_state(&t->state, &t->config);
    size_t wide = h.config.dim > h.config.hidden_dim ? h.config.dim : h.config.hidden_dim;
    t->xq = xcalloc(PREFILL_BLOCK * wide, sizeof(int8_t), "activations");
    t->xs = xcalloc(PREFILL_BLOCK * wide / h.group_size, sizeof(float), "activations");
    return t;
}

static void free_transformer(Transformer *t) {
    TransformerWeights *w = &t->weights;
    for (int i = 0; i < w->n_tensors; i++) free(w->all[i].s);
    free(w->all); free(w->token_embedding_table);
    unmap_file(&t->file);
    free_state(&t->state);
    free(t->xq); free(t->xs);
    free(t);
}


// ----------------------------------------------------------------------------
// kernels: activation quantization and the int8 matmul, this file's only SIMD code (attention
// and the other fp32 kernels are in llama2.h). The portable loops come first and are the
// reference; the SIMD tiles after them are compiled for the target's ISA (llama2.h picks it;
// -DLLAMA2_SCALAR or make runportable keeps only the loops) and tested against them.

// Quantizes T rows of n floats per group of gs: scale = max|x| / 127, q = round(x / scale).
static void quantize(int8_t *q, float *s, const float *x, int T, int n, int gs) {
    for (size_t g = 0; g < (size_t)T * n / gs; g++) {
        const float *xg = x + g * gs;
        int8_t *qg = q + g * gs;
        float wmax = 0.0f;
        int i = 0;
#ifdef USE_AVX2
        if (gs % 8 == 0) { // max|x| 8 at a time; like the loop below, max_ps(v, m) skips NaNs
            __m256 m = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
            for (; i < gs; i += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xg + i)), m);
            float lanes[8];
            _mm256_storeu_ps(lanes, m);
            for (int l = 0; l < 8; l++) if (lanes[l] > wmax) wmax = lanes[l];
        }
#elif defined(USE_WASM_SIMD)
        if (gs % 4 == 0) { // pmax(m, v) is m < v ? v : m, so like the loop below it skips NaNs
            v128_t m = wasm_f32x4_splat(0.0f);
            for (; i < gs; i += 4) m = wasm_f32x4_pmax(m, wasm_f32x4_abs(wasm_v128_load(xg + i)));
            float lanes[4];
            wasm_v128_store(lanes, m);
            for (int l = 0; l < 4; l++) if (lanes[l] > wmax) wmax = lanes[l];
        }
#endif
        for (; i < gs; i++) { float v = fabsf(xg[i]); if (v > wmax) wmax = v; }
        float scale = wmax / 127.0f;
        s[g] = scale;
        i = 0;
#ifdef USE_AVX2
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
#elif defined(USE_WASM_SIMD)
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
#endif
        for (; i < gs; i++) {
            float r = scale > 0.0f ? roundf(xg[i] / scale) : 0.0f;
            qg[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r == r ? r : 0); // NaN -> 0
        }
    }
}

// One output of the portable path: int32 sums per group, scaled and summed in float.
static float dot_q8(const int8_t *wq, const float *ws, const int8_t *xq, const float *xs, int n, int gs) {
    float val = 0.0f;
    for (int j = 0, g = 0; j < n; j += gs, g++) {
        int32_t ival = 0;
        for (int k = 0; k < gs; k++) ival += (int32_t)xq[j + k] * (int32_t)wq[j + k];
        val += (float)ival * ws[4 * g] * xs[g]; // a row's scales are 4 floats apart (scale_at)
    }
    return val;
}

// Rows i..i+3 of xout (T,d) = x (T,n) @ W (d,n)^T with x already quantized; T tokens share each W load.
static void matmul_rows_scalar(float *xout, const int8_t *xq, const float *xs, const QuantizedTensor *w, int T, int n,
                               int d, int gs, int i) {
    for (int r = i; r < d && r < i + 4; r++)
        for (int t = 0; t < T; t++)
            xout[(size_t)t * d + r] = dot_q8(w->q + (size_t)r * n, w->s + scale_at(r, 0, n / gs),
                                             xq + (size_t)t * n, xs + (size_t)t * n / gs, n, gs);
}

// The SIMD tiles below: 4 rows i..i+3 of W (R < 4 for the last rows of W) times C tokens (1 or
// 2) of x. A group's int32 sums of the 4 rows are gathered into one vector, converted, scaled by
// the group's 4 row scales at once (one load: see scale_at) and accumulated in float, so the
// work per group is shared by 4 rows. Every output is summed in the same order whatever the
// tile, so a token's logits do not depend on the prefill block or the thread count.

// --- x86-64: AVX2, with VNNI (AVX-512 VNNI or AVX-VNNI) and 512-bit vectors when the CPU has them
#if defined(USE_AVX2)
#define Q8_STEP 32 // bytes of a row per step: group sizes must be a multiple

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

// Per group and token the 4 rows' 8-lane sums are added up into one int32 per row (exact), and
// each row's float sum takes one fused multiply-add per group: acc = I * (ws * xs) + acc, in group
// order. The prefill panels (below) compute exactly this, so blocks and tokens agree to the bit.
static inline __attribute__((always_inline)) void matmul_tile(float *xout, const int8_t *xq, const float *xs,
                                                              const QuantizedTensor *w, int n, int d, int gs,
                                                              int i, int t, int R, int C) {
    const int8_t *wi = w->q + (size_t)i * n;
    int ahead = prefetch_ahead(i, d);
    const float *wsi = w->s + scale_at(i, 0, n / gs);
    __m128 acc[2];
    for (int c = 0; c < C; c++) acc[c] = _mm_setzero_ps();
    for (int j = 0, g = 0; j < n; j += gs, g++) {
        __m128 wscale = _mm_loadu_ps(wsi + 4 * g); // rows i..i+3
        for (int c = 0; c < C; c++) {
            const int8_t *x = xq + (size_t)(t + c) * n;
            __m256i sum[4];
            for (int r = 0; r < 4; r++) sum[r] = _mm256_setzero_si256();
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
                sum[0] = _mm512_castsi512_si256(s01); sum[1] = _mm512_extracti64x4_epi64(s01, 1);
                sum[2] = _mm512_castsi512_si256(s23); sum[3] = _mm512_extracti64x4_epi64(s23, 1);
            } else
#endif
            for (int k = j; k < j + gs; k += 32) {
                // fetch the tile 4 tiles ahead (4*gs bytes per group): short rows defeat the hardware prefetcher
                if (c == 0 && ahead) __builtin_prefetch(wi + PREFETCH_ROWS * (size_t)n + 4 * k), __builtin_prefetch(wi + PREFETCH_ROWS * (size_t)n + 4 * k + 64);
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x + k)), xa = _mm256_abs_epi8(xv);
                for (int r = 0; r < R; r++) sum[r] = dot32_i8(sum[r], wi + (size_t)r * n + k, xv, xa);
            }
            __m256i halves = _mm256_hadd_epi32(_mm256_hadd_epi32(sum[0], sum[1]), _mm256_hadd_epi32(sum[2], sum[3]));
            __m128i rows = _mm_add_epi32(_mm256_castsi256_si128(halves), _mm256_extracti128_si256(halves, 1));
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

// --- the prefill panels: PR rows of W times a block of tokens, one row a lane
// A tile's rows are dot products whose int32 lanes must be summed across the vector for every
// group, which costs more than the products themselves once a block of tokens shares the
// weights. A panel instead copies PR rows into lanes (PR rows' 4 bytes at k..k+3 side by side:
// panel_pack), so one multiply-add of a broadcast 4 bytes of a token gives the PR rows' sums in
// their own lanes, no horizontal sums at all, and the float part is the tile's per row.
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
#define vi_gather(idx, base) _mm256_i32gather_epi32((const int *)(base), idx, 1)
#define vi_index(n) _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(n))
#define vi_sub(a, b) _mm256_sub_epi32(a, b)
#define vi_store(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define vi_dot(acc, x, w) _mm256_dpbusd_epi32(acc, x, w)
#else
#define vi_dot(acc, x, w) _mm256_dpbusd_avx_epi32(acc, x, w)
#endif
#define Q8_OFFSET 1
#else
// without VNNI: |x| times the weights with x's signs, pairs into int16 (no saturation: see
// dot32_i8), pairs of pairs into int32; the same integers as vpdpbusd of the signed bytes
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
#define Q8_PANELS 1

// --- aarch64 NEON, with the dot-product extension (sdot) when the target has it
#elif defined(USE_NEON)
#define Q8_STEP 16

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

static inline __attribute__((always_inline)) void matmul_tile(float *xout, const int8_t *xq, const float *xs,
                                                              const QuantizedTensor *w, int n, int d, int gs,
                                                              int i, int t, int R, int C) {
    const int8_t *wi = w->q + (size_t)i * n;
    int ahead = prefetch_ahead(i, d);
    const float *wsi = w->s + scale_at(i, 0, n / gs);
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

// The prefill panels (see x86's): 4 rows a vector, signed times signed, so no offset
#define PR 4
typedef int32x4_t vi;
typedef float32x4_t vp;
#define vi_load(p) vld1q_s32(p)
#define vi_set1(v) vdupq_n_s32(v)
#define vi_sub(a, b) vsubq_s32(a, b)
#define vi_store(p, v) vst1q_s32(p, v)
// each lane r: its 4 bytes of w times the 4 bytes of x
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
#define Q8_PANELS 1
#endif

// --- WebAssembly SIMD128 (make web)
#ifdef USE_WASM_SIMD
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

// The int8 tile in WebAssembly SIMD128: 4 rows i..i+3 of W (in tile order, llama2.h) times C (1 or
// 2) tokens, group size a multiple of 16. A group's int32 sums are scaled as dot_q8 scales them,
// one row a lane, so the result is the portable path's to the bit.
static inline __attribute__((always_inline)) void matmul_tile_wasm(float *xout, const int8_t *xq, const float *xs,
                                                                   const QuantizedTensor *w, int n, int d, int gs,
                                                                   int i, int t, int C) {
    const int8_t *wi = w->q + (size_t)i * n;
    const float *wsi = w->s + scale_at(i, 0, n / gs);
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
#endif


#ifdef Q8_PANELS
#define PANEL_C 8 // tokens at a time: 2 * PANEL_C vectors of sums in registers

// Rows i..i+PR-1 of a matrix in lanes. pw: (n/4, PR) int32, row r's bytes k..k+3 in lane r;
// base: (groups, PR), what a group's int32 sums start from (with Q8_OFFSET -128 times the row's
// sum of weights in the group, which takes the 128 added to the activations back out); ws:
// (groups, PR) the rows' scales.
typedef struct { int32_t *pw, *base; float *ws; } Panel;

static Panel alloc_panel(int n, int gs) {
    Panel p;
    p.pw = xcalloc((size_t)n / 4 * PR + 2 * (size_t)(n / gs) * PR, sizeof(int32_t), "a weight panel");
    p.base = p.pw + (size_t)n / 4 * PR;
    p.ws = (float *)(p.base + (size_t)(n / gs) * PR);
    return p;
}

static void panel_pack(Panel *p, const QuantizedTensor *w, int n, int gs, int i) {
    int ng = n / gs;
    const int8_t *wi = w->q + (size_t)i * n;
#ifdef vi_gather
    vi idx = vi_index(n);
    for (int k = 0; k < n; k += 4) vi_store(p->pw + (size_t)k / 4 * PR, vi_gather(idx, wi + k));
#else
    for (int k = 0; k < n; k += 4)
        for (int r = 0; r < PR; r++) memcpy(p->pw + (size_t)k / 4 * PR + r, wi + (size_t)r * n + k, 4);
#endif
    for (int g = 0; g < ng; g++) {
        vi b = vi_set1(0);
#if Q8_OFFSET
        for (int k = g * gs; k < (g + 1) * gs; k += 4) b = vi_dot(b, vi_set1((int)0x80808080u), vi_load(p->pw + (size_t)k / 4 * PR));
        b = vi_sub(vi_set1(0), b);
#endif
        vi_store(p->base + (size_t)g * PR, b);
        for (int r = 0; r < PR; r++) p->ws[(size_t)g * PR + r] = w->s[scale_at(i + r, g, ng)];
    }
}

// The panel's rows for C tokens t..t+C-1: each (row, token) is the tile's computation, group by
// group (the int32 sum, exact in any order, then acc = I * (ws * xs) + acc).
static inline __attribute__((always_inline)) void panel_tokens(float *xout, const int8_t *xq, const float *xs, const Panel *p,
                                                               int n, int d, int gs, int i, int t, int C) {
    int ng = n / gs;
    vp acc[PANEL_C];
    for (int c = 0; c < C; c++) acc[c] = vp_zero();
    for (int g = 0; g < ng; g++) {
        vi sum[PANEL_C], b = vi_load(p->base + (size_t)g * PR);
        for (int c = 0; c < C; c++) sum[c] = b;
        for (int k = g * gs; k < (g + 1) * gs; k += 4) {
            vi wv = vi_load(p->pw + (size_t)k / 4 * PR);
            for (int c = 0; c < C; c++) {
                int32_t x4;
                memcpy(&x4, xq + (size_t)(t + c) * n + k, 4);
#if Q8_OFFSET
                x4 ^= (int32_t)0x80808080u; // each byte + 128, as unsigned
#endif
                sum[c] = vi_dot(sum[c], vi_set1(x4), wv);
            }
        }
        vp ws = vp_load(p->ws + (size_t)g * PR);
        for (int c = 0; c < C; c++) acc[c] = vp_fma(sum[c], vp_scale(ws, xs[(size_t)(t + c) * ng + g]), acc[c]);
    }
    for (int c = 0; c < C; c++) vp_store(xout + (size_t)(t + c) * d + i, acc[c]);
}

// Panel k (rows PR * k ..) for all T tokens: packed once, then PANEL_C tokens at a time.
static void panel_rows(float *xout, const int8_t *xq, const float *xs, const QuantizedTensor *w, Panel *p,
                       int T, int n, int d, int gs, int k) {
    int i = PR * k, t = 0;
    panel_pack(p, w, n, gs, i);
    for (; t + PANEL_C <= T; t += PANEL_C) panel_tokens(xout, xq, xs, p, n, d, gs, i, t, PANEL_C);
    switch (T - t) {
        case 7: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 7); break;
        case 6: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 6); break;
        case 5: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 5); break;
        case 4: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 4); break;
        case 3: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 3); break;
        case 2: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 2); break;
        case 1: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 1); break;
    }
}
#endif

// --- dispatch: the SIMD tiles when the target has them and the group size fits
static void matmul_rows(float *xout, const int8_t *xq, const float *xs, const QuantizedTensor *w, int T, int n, int d,
                        int gs, int i) {
#ifdef Q8_STEP
    if (gs % Q8_STEP == 0) {
        int t = 0;
        if (i + 4 > d) {
            for (; t < T; t++) matmul_tile(xout, xq, xs, w, n, d, gs, i, t, d - i, 1);
        } else if (gs == 32) { // the usual group size: a constant lets the compiler unroll the group
            for (; t + 2 <= T; t += 2) matmul_tile(xout, xq, xs, w, n, d, 32, i, t, 4, 2);
            if (t < T) matmul_tile(xout, xq, xs, w, n, d, 32, i, t, 4, 1);
        } else {
            for (; t + 2 <= T; t += 2) matmul_tile(xout, xq, xs, w, n, d, gs, i, t, 4, 2);
            if (t < T) matmul_tile(xout, xq, xs, w, n, d, gs, i, t, 4, 1);
        }
        return;
    }
#elif defined(USE_WASM_SIMD)
    if (gs % 16 == 0 && i + 4 <= d) { // the last rows (fewer than 4) take the portable loop
        int t = 0;
        for (; t + 2 <= T; t += 2) matmul_tile_wasm(xout, xq, xs, w, n, d, gs, i, t, 2);
        if (t < T) matmul_tile_wasm(xout, xq, xs, w, n, d, gs, i, t, 1);
        return;
    }
#endif
    matmul_rows_scalar(xout, xq, xs, w, T, n, d, gs, i);
}

// A block of at least this many tokens takes the panels
#define PANEL_MIN_T 4

// xout (T,d) = x (T,n) @ W (d,n)^T, the threads sharing the rows
static void matmul(float *xout, const int8_t *xq, const float *xs, const QuantizedTensor *w, int T, int n, int d, int gs) {
#ifdef Q8_PANELS
    if (T >= PANEL_MIN_T && gs % Q8_STEP == 0 && d >= PR) { // the rows past the last full panel: the tiles
        int np = d / PR;
#ifdef _OPENMP
        if (use_threads()) {
            share_tiles(np);
            #pragma omp parallel
            {
                Panel p = alloc_panel(n, gs);
                int a, b;
                while (share_next(&a, &b))
                    for (int k = a; k < b; k++) panel_rows(xout, xq, xs, w, &p, T, n, d, gs, k);
                free(p.pw);
            }
        } else
#endif
        {
            Panel p = alloc_panel(n, gs);
            for (int k = 0; k < np; k++) panel_rows(xout, xq, xs, w, &p, T, n, d, gs, k);
            free(p.pw);
        }
        for (int i = np * PR; i < d; i += 4) matmul_rows(xout, xq, xs, w, T, n, d, gs, i);
        return;
    }
#endif
#ifdef _OPENMP
    if (use_threads()) { // each thread its part of the rows, then batches of the others' (llama2.h)
        share_tiles((d + 3) / 4);
        #pragma omp parallel
        {
            int a, b;
            while (share_next(&a, &b))
                for (int k = a; k < b; k++) matmul_rows(xout, xq, xs, w, T, n, d, gs, 4 * k);
        }
        return;
    }
#endif
    for (int i = 0; i < d; i += 4) matmul_rows(xout, xq, xs, w, T, n, d, gs, i);
}

// ----------------------------------------------------------------------------
// the forward pass, for a block of T tokens at positions pos..pos+T-1

static float *forward_rows(Transformer *transformer, const int *tokens, int T, int pos, int all_logits) {
    const Config *p = &transformer->config;
    const TransformerWeights *w = &transformer->weights;
    RunState *s = &transformer->state;
    int dim = p->dim, hidden_dim = p->hidden_dim, gs = transformer->group_size;
    int8_t *xq = transformer->xq;
    float *xs = transformer->xs;
    int kv_dim = (p->dim * p->n_kv_heads) / p->n_heads;

    embed_tokens(s->x, w->token_embedding_table, tokens, T, dim, p->vocab_size);

    for (int l = 0; l < p->n_layers; l++) {
        size_t loff = (size_t)l * p->seq_len * kv_dim; // kv cache layer offset
        rmsnorm_rows(s->xb, s->x, w->rms_att_weight + (size_t)l * dim, T, dim);

        // qkv matmuls
        quantize(xq, xs, s->xb, T, dim, gs);
        matmul(s->q, xq, xs, w->wq + l, T, dim, dim, gs);
        matmul(s->k, xq, xs, w->wk + l, T, dim, kv_dim, gs);
        matmul(s->v, xq, xs, w->wv + l, T, dim, kv_dim, gs);

        // RoPE and multihead causal attention (llama2.h)
        attention(s->xb, s->q, s->k, s->v, s->key_cache + loff, s->value_cache + loff, s->att, s->rope_cos, s->rope_sin, p, T, pos);

        // output projection and residual
        quantize(xq, xs, s->xb, T, dim, gs);
        matmul(s->xb2, xq, xs, w->wo + l, T, dim, dim, gs);
        residual(s->x, s->xb2, (size_t)T * dim);

        // ffn: w2(silu(w1(x)) * w3(x))
        rmsnorm_rows(s->xb, s->x, w->rms_ffn_weight + (size_t)l * dim, T, dim);
        quantize(xq, xs, s->xb, T, dim, gs);
        matmul(s->hb, xq, xs, w->w1 + l, T, dim, hidden_dim, gs);
        matmul(s->hb2, xq, xs, w->w3 + l, T, dim, hidden_dim, gs);
        swiglu(s->hb, s->hb2, (size_t)T * hidden_dim);
        quantize(xq, xs, s->hb, T, hidden_dim, gs);
        matmul(s->xb, xq, xs, w->w2 + l, T, hidden_dim, dim, gs);
        residual(s->x, s->xb, (size_t)T * dim);
    }

    // the logits of the last token (generation), or of all T (scoring)
    int nl = all_logits ? T : 1;
    float *x = s->x + (size_t)(T - nl) * dim;
    rmsnorm_rows(x, x, w->rms_final_weight, nl, dim);
    quantize(xq, xs, x, nl, dim, gs);
    matmul(s->logits, xq, xs, w->wcls, nl, dim, p->vocab_size, gs);
    return s->logits;
}

static float *forward(Transformer *t, const int *tokens, int T, int pos) { return forward_rows(t, tokens, T, pos, 0); }
static float *forward_all(Transformer *t, const int *tokens, int T, int pos) { return forward_rows(t, tokens, T, pos, 1); }

// ----------------------------------------------------------------------------
// the tokenizer, sampler, generation loops and command line live in llama2.h

int main(int argc, char *argv[]) { return llama2_main(argc, argv); }
