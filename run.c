/* Inference for Llama-2 Transformer models in pure C, fp32 weights.
   Reads llama2.c checkpoints of version 0 (the published Chinese stories15M/42M/110M.bin) and
   version 1 (detected by its magic), memory-mapped. The tokenizer, sampler, generation loop and
   command line are shared with runq.c in llama2.h.

   make run
   ./run stories15M.bin -z tok5000.bin -i "从前，有一只会飞的狗叫波波"
*/
#include "llama2.h"


// ----------------------------------------------------------------------------
// Transformer weights and state

typedef struct {
    const float *token_embedding_table; // (vocab_size, dim)
    const float *rms_att_weight;        // (layer, dim) rmsnorm weights
    const float *rms_ffn_weight;        // (layer, dim)
    const float *wq;                    // (layer, dim, n_heads * head_size)
    const float *wk;                    // (layer, dim, n_kv_heads * head_size)
    const float *wv;                    // (layer, dim, n_kv_heads * head_size)
    const float *wo;                    // (layer, n_heads * head_size, dim)
    const float *w1;                    // (layer, hidden_dim, dim)
    const float *w2;                    // (layer, dim, hidden_dim)
    const float *w3;                    // (layer, hidden_dim, dim)
    const float *rms_final_weight;      // (dim,)
    const float *wcls;                  // (vocab_size, dim), the embedding if shared
} TransformerWeights;

struct Transformer {
    Config config;
    TransformerWeights weights;
    RunState state;
    MappedFile file;
    float *tiled_cls;  // the browser build's copy of a shared classifier, in tile order (llama2.h)
};
TRANSFORMER_CONFIG_FIRST;

static void memory_map_weights(TransformerWeights *w, const Config *p, const float *ptr, int version, int shared) {
    size_t hs = p->dim / p->n_heads, L = p->n_layers, dim = p->dim, hid = p->hidden_dim;
    size_t kv = p->n_kv_heads * hs;
    if (version == 1) { // norms first
        w->rms_att_weight = ptr; ptr += L * dim;
        w->rms_ffn_weight = ptr; ptr += L * dim;
        w->rms_final_weight = ptr; ptr += dim;
    }
    w->token_embedding_table = ptr; ptr += (size_t)p->vocab_size * dim;
    if (version == 0) { w->rms_att_weight = ptr; ptr += L * dim; }
    w->wq = ptr; ptr += L * dim * dim;
    w->wk = ptr; ptr += L * dim * kv;
    w->wv = ptr; ptr += L * dim * kv;
    w->wo = ptr; ptr += L * dim * dim;
    if (version == 0) { w->rms_ffn_weight = ptr; ptr += L * dim; }
    w->w1 = ptr; ptr += L * dim * hid;
    w->w2 = ptr; ptr += L * hid * dim;
    w->w3 = ptr; ptr += L * dim * hid;
    if (version == 0) {
        w->rms_final_weight = ptr; ptr += dim;
        ptr += p->seq_len * hs; // skip the RoPE tables (freq_cis_real and freq_cis_imag)
    }
    w->wcls = shared ? w->token_embedding_table : ptr;
}

#ifdef USE_WASM_SIMD
// The browser build's tile order (llama2.h tile_order) for each layer's matrix whose rows are a
// multiple of 4 floats (the others stay in row order: matmul_tile reads them so).
static void tile_order_layers(const float *w, size_t layers, size_t rows, size_t cols) {
    if (cols % 4 == 0)
        for (size_t l = 0; l < layers; l++) tile_order((float *)w + l * rows * cols, rows, cols * sizeof(float));
}
#endif

static Transformer *build_transformer(const char *checkpoint_path) {
    Transformer *t = xcalloc(1, sizeof(Transformer), "the model");
    map_file(&t->file, checkpoint_path);
    Header h;
    read_header(checkpoint_path, t->file.data, t->file.size, &h);
    if (h.version == 2) die("%s is an int8 (version 2) checkpoint: run it with ./runq", checkpoint_path);
    check_file_size(checkpoint_path, &h, t->file.size);
    t->config = h.config;
    memory_map_weights(&t->weights, &t->config, (const float *)(t->file.data + h.header_bytes), h.version, h.shared_classifier);
#ifdef USE_WASM_SIMD
    TransformerWeights *w = &t->weights;
    const Config *c = &t->config;
    size_t L = c->n_layers, dim = c->dim, hid = c->hidden_dim, kv = dim * c->n_kv_heads / c->n_heads, V = c->vocab_size;
    tile_order_layers(w->wq, L, dim, dim);
    tile_order_layers(w->wk, L, kv, dim);
    tile_order_layers(w->wv, L, kv, dim);
    tile_order_layers(w->wo, L, dim, dim);
    tile_order_layers(w->w1, L, hid, dim);
    tile_order_layers(w->w2, L, dim, hid);
    tile_order_layers(w->w3, L, hid, dim);
    if (w->wcls == w->token_embedding_table) { // the embedding is read by rows: the classifier gets a copy
        t->tiled_cls = xcalloc(V * dim, sizeof(float), "the classifier");
        memcpy(t->tiled_cls, w->wcls, V * dim * sizeof(float));
        w->wcls = t->tiled_cls;
    }
    tile_order_layers(w->wcls, 1, V, dim);
#endif
    build_state(&t->state, &t->config);
    return t;
}

static void free_transformer(Transformer *t) {
    unmap_file(&t->file);
    free_state(&t->state);
    free(t->tiled_cls);
    free(t);
}


// ----------------------------------------------------------------------------
// kernels: the fp32 matmul, this file's only SIMD code (attention and the other fp32 kernels
// are in llama2.h, with the vector operations vf_* of each ISA the tile below is written in).

// Rows i..i+3 of xout (T,d) = x (T,n) @ W (d,n)^T: T tokens at once, so W streams from memory once per block.
static inline void matmul_rows_scalar(float *xout, const float *x, const float *w, int T, int n, int d, int i) {
    for (int r = i; r < d && r < i + 4; r++)
        for (int t = 0; t < T; t++) xout[(size_t)t * d + r] = dot(w + (size_t)r * n, x + (size_t)t * n, n);
}

#ifdef VF
// Tokens per tile: the R*C accumulators, C activation vectors and a weight vector fit the
// registers (32 vectors with AVX-512 and NEON, 16 with AVX2 and, once compiled, SIMD128).
#if VF == 16 || defined(USE_NEON)
#define TILE_C 6
#else
#define TILE_C 3
#endif

// R rows of W times C rows of x, R*C vector accumulators in registers; each W load serves C
// tokens and each x load R rows. Every output is the same chain of vector FMAs over its row (one
// accumulator, VF partial sums), the same vf_sum and the same scalar tail whatever the tile, so a
// token's logits do not depend on the prefill block or the thread count. fetch: this tile brings
// the rows PREFETCH_ROWS ahead into the cache (the first tile of a row panel does it for the rest).
static inline __attribute__((always_inline)) void matmul_tile(float *xout, const float *x, const float *w,
                                                              int n, int d, int i, int t, int R, int C, int fetch) {
    vf acc[4][TILE_C];
    for (int r = 0; r < R; r++) for (int c = 0; c < C; c++) acc[r][c] = vf_zero();
    int ahead = fetch && prefetch_ahead(i, d);
#ifdef USE_WASM_SIMD
    int tiled = R == 4 && n % 4 == 0; // the browser build's tile order (tile_order_layers)
#endif
    int j = 0;
    for (; j + VF <= n; j += VF) {
        // fetch the rows of the tile 4 tiles ahead, 4 * VF floats of it per step (64-byte lines)
        if (ahead) for (int f = 0; f < 4 * VF; f += 16) __builtin_prefetch(w + (size_t)(i + PREFETCH_ROWS) * n + 4 * j + f);
        vf xv[TILE_C];
        for (int c = 0; c < C; c++) xv[c] = vf_load(x + (size_t)(t + c) * n + j);
        for (int r = 0; r < R; r++) {
#ifdef USE_WASM_SIMD
            vf wv = vf_load(tiled ? w + (size_t)i * n + 4 * j + 4 * r : w + (size_t)(i + r) * n + j);
#else
            vf wv = vf_load(w + (size_t)(i + r) * n + j);
#endif
            for (int c = 0; c < C; c++) acc[r][c] = vf_fma(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < C; c++) {
            float val = vf_sum(acc[r][c]);
            for (int k = j; k < n; k++) val += w[(size_t)(i + r) * n + k] * x[(size_t)(t + c) * n + k];
            xout[(size_t)(t + c) * d + i + r] = val;
        }
    }
}

// Rows i..i+3 for the T tokens, TILE_C tokens a tile: the 4 rows stay in the L1 cache while the
// tokens go by. The constant C of each call lets the compiler keep the tile in registers. A block
// reads its rows many times and computes long enough for the hardware prefetcher to bring the
// next ones: only a generated token fetches ahead (prefetching in blocks too slowed prefill).
static void matmul_rows_simd(float *xout, const float *x, const float *w, int T, int n, int d, int i) {
    int fetch = T == 1;
    if (i + 4 <= d) {
        int t = 0;
        for (; t + TILE_C <= T; t += TILE_C) matmul_tile(xout, x, w, n, d, i, t, 4, TILE_C, fetch && t == 0);
        switch (T - t) {
#if TILE_C > 5
            case 5: matmul_tile(xout, x, w, n, d, i, t, 4, 5, fetch && t == 0); break;
            case 4: matmul_tile(xout, x, w, n, d, i, t, 4, 4, fetch && t == 0); break;
            case 3: matmul_tile(xout, x, w, n, d, i, t, 4, 3, fetch && t == 0); break;
#endif
            case 2: matmul_tile(xout, x, w, n, d, i, t, 4, 2, fetch && t == 0); break;
            case 1: matmul_tile(xout, x, w, n, d, i, t, 4, 1, fetch && t == 0); break;
        }
    } else {
        for (int r = i; r < d; r++)
            for (int t = 0; t < T; t++) matmul_tile(xout, x, w, n, d, r, t, 1, 1, 0);
    }
}
#endif

static void matmul_rows(float *xout, const float *x, const float *w, int T, int n, int d, int i) {
#ifdef VF
    matmul_rows_simd(xout, x, w, T, n, d, i);
#else
    matmul_rows_scalar(xout, x, w, T, n, d, i);
#endif
}

// xout (T,d) = x (T,n) @ W (d,n)^T, the threads sharing the rows
static void matmul(float *xout, const float *x, const float *w, int T, int n, int d) {
#ifdef _OPENMP
    if (use_threads()) { // each thread its part of the rows, then batches of the others' (llama2.h)
        share_tiles((d + 3) / 4);
        #pragma omp parallel
        {
            int a, b;
            while (share_next(&a, &b))
                for (int k = a; k < b; k++) matmul_rows(xout, x, w, T, n, d, 4 * k);
        }
        return;
    }
#endif
    for (int i = 0; i < d; i += 4) matmul_rows(xout, x, w, T, n, d, i);
}

// ----------------------------------------------------------------------------
// the forward pass, for a block of T tokens at positions pos..pos+T-1

static float *forward_rows(Transformer *transformer, const int *tokens, int T, int pos, int all_logits) {
    const Config *p = &transformer->config;
    const TransformerWeights *w = &transformer->weights;
    RunState *s = &transformer->state;
    int dim = p->dim, hidden_dim = p->hidden_dim;
    int kv_dim = (p->dim * p->n_kv_heads) / p->n_heads;

    embed_tokens(s->x, w->token_embedding_table, tokens, T, dim, p->vocab_size);

    for (int l = 0; l < p->n_layers; l++) {
        size_t loff = (size_t)l * p->seq_len * kv_dim; // kv cache layer offset
        rmsnorm_rows(s->xb, s->x, w->rms_att_weight + (size_t)l * dim, T, dim);

        // qkv matmuls
        matmul(s->q, s->xb, w->wq + (size_t)l * dim * dim, T, dim, dim);
        matmul(s->k, s->xb, w->wk + (size_t)l * dim * kv_dim, T, dim, kv_dim);
        matmul(s->v, s->xb, w->wv + (size_t)l * dim * kv_dim, T, dim, kv_dim);

        // RoPE and multihead causal attention (llama2.h)
        attention(s->xb, s->q, s->k, s->v, s->key_cache + loff, s->value_cache + loff, s->att, s->rope_cos, s->rope_sin, p, T, pos);

        // output projection and residual
        matmul(s->xb2, s->xb, w->wo + (size_t)l * dim * dim, T, dim, dim);
        residual(s->x, s->xb2, (size_t)T * dim);

        // ffn: w2(silu(w1(x)) * w3(x))
        rmsnorm_rows(s->xb, s->x, w->rms_ffn_weight + (size_t)l * dim, T, dim);
        matmul(s->hb, s->xb, w->w1 + (size_t)l * dim * hidden_dim, T, dim, hidden_dim);
        matmul(s->hb2, s->xb, w->w3 + (size_t)l * dim * hidden_dim, T, dim, hidden_dim);
        swiglu(s->hb, s->hb2, (size_t)T * hidden_dim);
        matmul(s->xb, s->hb, w->w2 + (size_t)l * dim * hidden_dim, T, hidden_dim, dim);
        residual(s->x, s->xb, (size_t)T * dim);
    }

    // the logits of the last token (generation), or of all T (scoring)
    int nl = all_logits ? T : 1;
    float *x = s->x + (size_t)(T - nl) * dim;
    rmsnorm_rows(x, x, w->rms_final_weight, nl, dim);
    matmul(s->logits, x, w->wcls, nl, dim, p->vocab_size);
    return s->logits;
}

static float *forward(Transformer *t, const int *tokens, int T, int pos) { return forward_rows(t, tokens, T, pos, 0); }
static float *forward_all(Transformer *t, const int *tokens, int T, int pos) { return forward_rows(t, tokens, T, pos, 1); }

// ----------------------------------------------------------------------------
// the tokenizer, sampler, generation loops and command line live in llama2.h

int main(int argc, char *argv[]) { return llama2_main(argc, argv); }
