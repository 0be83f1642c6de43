/* Inference for Llama-2 Transformer models in pure C, int8 weights (Q8_0).
   Reads version 2 checkpoints (export.py --version 2): every matmul weight is int8 with one float
   scale per group of group_size values; activations are quantized the same way on the fly, so
   matmuls are int8 x int8 dot products. The norms stay fp32. This file holds the weights, the
   int8 kernels and the forward pass; the parts shared with run.c are the includes.

   make run
   ./runq stories15M_q80.bin -z tok5000.bin -i "从前，有一只会飞的狗叫波波"
*/
#include "llama2/platform.h"   // errors, the model file in memory
#include "llama2/checkpoint.h" // the header: Config, version, group size
#include "llama2/ops.h"        // rmsnorm, attention, swiglu, the activations (RunState); simd.h picks the ISA's kernels
#include "llama2/threads.h"    // for_each_tile: a matmul's rows shared by the threads
#include "llama2/cli.h"        // tokenizer, sampler, generation and chat loops, the command line
// the int8 kernels' variants for the target, when it has them (each replaces a loop of this file)
#if defined(USE_AVX2)
#include "llama2/x86_q8.h"
#elif defined(USE_NEON)
#include "llama2/neon_q8.h"
#elif defined(USE_WASM_SIMD)
#include "llama2/wasm_q8.h"
#endif

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

#ifndef reorder_q8 // the tiles read the file's order (wasm_q8.h reorders)
static inline void reorder_q8(const int8_t *q, size_t rows, size_t cols, int gs) { (void)q, (void)rows, (void)cols, (void)gs; }
#endif

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
        if (matmul) reorder_q8(out[i].q, rows, cols, gs);
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
    if (shared) reorder_q8(emb->q, V, dim, gs);
}

static Transformer *build_transformer(const char *checkpoint_path) {
    Transformer *t = xcalloc(1, sizeof(Transformer), "the model");
    map_file(&t->file, checkpoint_path, REORDERS_WEIGHTS, tensors_at);
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
// the int8 kernels: the reference loops; the ISA files' variants replace them where they fit

// Quantizes T rows of n floats per group of gs: scale = max|x| / 127, q = round(x / scale).
static inline void quantize_ref(int8_t *q, float *s, const float *x, int T, int n, int gs) {
    for (size_t g = 0; g < (size_t)T * n / gs; g++) {
        const float *xg = x + g * gs;
        int8_t *qg = q + g * gs;
        float wmax = 0.0f;
        for (int i = 0; i < gs; i++) { float v = fabsf(xg[i]); if (v > wmax) wmax = v; }
        float scale = wmax / 127.0f;
        s[g] = scale;
        for (int i = 0; i < gs; i++) {
            float r = scale > 0.0f ? roundf(xg[i] / scale) : 0.0f;
            qg[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r == r ? r : 0); // NaN -> 0
        }
    }
}
#ifndef quantize
#define quantize quantize_ref
#endif

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
static inline void matmul_rows_q8_ref(float *xout, const int8_t *xq, const float *xs, const QuantizedTensor *w, int T, int n,
                                      int d, int gs, int i) {
    for (int r = i; r < d && r < i + 4; r++)
        for (int t = 0; t < T; t++)
            xout[(size_t)t * d + r] = dot_q8(w->q + (size_t)r * n, w->s + scale_at(r, 0, n / gs),
                                             xq + (size_t)t * n, xs + (size_t)t * n / gs, n, gs);
}

// The ISA files' tiles (matmul_tile_q8): 4 rows i..i+3 of W (R < 4 for the last rows of W) times C tokens (1 or
// 2) of x. A group's int32 sums of the 4 rows are gathered into one vector, converted, scaled by
// the group's 4 row scales at once (one load: see scale_at) and accumulated in float, so the
// work per group is shared by 4 rows. Every output is summed in the same order whatever the
// tile, so a token's logits do not depend on the prefill block or the thread count.
static void matmul_rows_q8(float *xout, const int8_t *xq, const float *xs, const QuantizedTensor *w, int T, int n,
                           int d, int gs, int i) {
#ifdef Q8_STEP // the tile, where the group size is a multiple of its step
    const int8_t *wi = w->q + (size_t)i * n;
    const float *wsi = w->s + scale_at(i, 0, n / gs);
    if (gs % Q8_STEP == 0 && (Q8_PARTIAL_TILES || i + 4 <= d)) {
        int t = 0;
        if (i + 4 > d) {
            for (; t < T; t++) matmul_tile_q8(xout, xq, xs, wi, wsi, n, d, gs, i, t, d - i, 1);
        } else if (gs == 32) { // the usual group size: a constant lets the compiler unroll the group
            for (; t + 2 <= T; t += 2) matmul_tile_q8(xout, xq, xs, wi, wsi, n, d, 32, i, t, 4, 2);
            if (t < T) matmul_tile_q8(xout, xq, xs, wi, wsi, n, d, 32, i, t, 4, 1);
        } else {
            for (; t + 2 <= T; t += 2) matmul_tile_q8(xout, xq, xs, wi, wsi, n, d, gs, i, t, 4, 2);
            if (t < T) matmul_tile_q8(xout, xq, xs, wi, wsi, n, d, gs, i, t, 4, 1);
        }
        return;
    }
#endif
    matmul_rows_q8_ref(xout, xq, xs, w, T, n, d, gs, i);
}

typedef struct { float *xout; const int8_t *xq; const float *xs; const QuantizedTensor *w; int T, n, d, gs; } Matmul;

static void matmul_tile4(void *ctx, int k) {
    const Matmul *m = ctx;
    matmul_rows_q8(m->xout, m->xq, m->xs, m->w, m->T, m->n, m->d, m->gs, 4 * k);
}

#ifdef Q8_PANELS
#define PANEL_MIN_T 4 // a block of at least this many tokens takes the panels

static void matmul_panel(void *ctx, int k) {
    const Matmul *m = ctx;
    int i = PR * k;
    Panel p = alloc_panel(m->n, m->gs);
    panel_rows(m->xout, m->xq, m->xs, m->w->q + (size_t)i * m->n, m->w->s + scale_at(i, 0, m->n / m->gs), &p,
               m->T, m->n, m->d, m->gs, i);
    free(p.pw);
}
#endif

// xout (T,d) = x (T,n) @ W (d,n)^T with x quantized in xq, xs; 4 rows at a time, the threads sharing them
static void matmul(float *xout, const int8_t *xq, const float *xs, const QuantizedTensor *w, int T, int n, int d, int gs) {
    Matmul m = {xout, xq, xs, w, T, n, d, gs};
#ifdef Q8_PANELS
    // a block of tokens: PR rows at a time in the panels (q8_panels.h) where the tile would take
    // them, the same numbers; the rows past the last full panel in tiles
    if (T >= PANEL_MIN_T && gs % Q8_STEP == 0 && d >= PR) {
        for_each_tile(d / PR, matmul_panel, &m);
        for (int i = d / PR * PR; i < d; i += 4) matmul_rows_q8(xout, xq, xs, w, T, n, d, gs, i);
        return;
    }
#endif
    for_each_tile((d + 3) / 4, matmul_tile4, &m);
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

        // RoPE and multihead causal attention
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
// the model as the generation loops see it (generate.h), and main

void open_model(Model *m, const char *checkpoint_path) {
    Transformer *t = build_transformer(checkpoint_path);
    *m = (Model){t, &t->config, PREFILL_BLOCK, forward, forward_all, free_transformer};
}

#ifndef TESTING // tests/ and the browser build (web.c) bring their own entry points
int main(int argc, char *argv[]) { return llama2_main(argc, argv, open_model); }
#endif
