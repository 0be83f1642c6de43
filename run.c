/* Inference for Llama-2 Transformer models in pure C, fp32 weights.
   Reads llama2.c checkpoints of version 0 (the published Chinese stories15M/42M/110M.bin) and
   version 1 (detected by its magic), memory-mapped. This file holds the weights, the matmul and
   the forward pass; the parts shared with runq.c are the includes, each saying what it defines.

   make run
   ./run stories15M.bin -z tok5000.bin -i "从前，有一只会飞的狗叫波波"
*/
#include "llama2/platform.h"   // errors, the model file in memory
#include "llama2/checkpoint.h" // the header: Config, version, shared classifier
#include "llama2/ops.h"        // rmsnorm, attention, swiglu, the activations (RunState); simd.h picks the ISA's kernels
#include "llama2/threads.h"    // for_each_tile: a matmul's rows shared by the threads
#include "llama2/cli.h"        // tokenizer, sampler, generation and chat loops, the command line

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

// Rows a multiple of 4 KB apart (n = 1024, 2048, ...) all start in the same set of the L1 cache,
// which holds 8 lines a set: a tile's 6 rows of x and 4 of W then evict each other at every step
// (zh-110M's w2, n = 2048; bench/README.md). A block's x is copied into pad with XPAD more floats
// a row, which spreads its rows over the sets; the sums are the same.
#define XPAD 16
static int spread(int n) { return n % 1024 == 0; }

struct Transformer {
    Config config;
    TransformerWeights weights;
    RunState state;
    MappedFile file;
    float *cls_copy;  // a shared classifier's own copy, where the kernels reorder the weights (REORDERS_WEIGHTS)
    float *pad;       // a block's matmul input with its rows spread apart (matmul), or NULL
};

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

static Transformer *build_transformer(const char *checkpoint_path) {
    Transformer *t = xcalloc(1, sizeof(Transformer), "the model");
    map_file(&t->file, checkpoint_path, REORDERS_WEIGHTS, tensors_at);
    Header h;
    read_header(checkpoint_path, t->file.data, t->file.size, &h);
    if (h.version == 2) die("%s is an int8 (version 2) checkpoint: run it with ./runq", checkpoint_path);
    check_file_size(checkpoint_path, &h, t->file.size);
    t->config = h.config;
    memory_map_weights(&t->weights, &t->config, (const float *)(t->file.data + h.header_bytes), h.version, h.shared_classifier);
    if (REORDERS_WEIGHTS) { // the matmul's weights into the order its kernel reads (wasm.h)
        TransformerWeights *w = &t->weights;
        const Config *c = &t->config;
        size_t L = c->n_layers, dim = c->dim, hid = c->hidden_dim, kv = dim * c->n_kv_heads / c->n_heads, V = c->vocab_size;
        reorder_f32(w->wq, L, dim, dim);
        reorder_f32(w->wk, L, kv, dim);
        reorder_f32(w->wv, L, kv, dim);
        reorder_f32(w->wo, L, dim, dim);
        reorder_f32(w->w1, L, hid, dim);
        reorder_f32(w->w2, L, dim, hid);
        reorder_f32(w->w3, L, hid, dim);
        if (w->wcls == w->token_embedding_table) { // the embedding is read by rows: the classifier gets a copy
            t->cls_copy = xcalloc(V * dim, sizeof(float), "the classifier");
            memcpy(t->cls_copy, w->wcls, V * dim * sizeof(float));
            w->wcls = t->cls_copy;
        }
        reorder_f32(w->wcls, 1, V, dim);
    }
    build_state(&t->state, &t->config);
    int n = spread(t->config.hidden_dim) ? t->config.hidden_dim : 0;
    if (spread(t->config.dim) && t->config.dim > n) n = t->config.dim;
    if (n) t->pad = xcalloc((size_t)PREFILL_BLOCK * (n + XPAD), sizeof(float), "the activations");
    return t;
}

static void free_transformer(Transformer *t) {
    unmap_file(&t->file);
    free_state(&t->state);
    free(t->cls_copy);
    free(t->pad);
    free(t);
}

// ----------------------------------------------------------------------------
// the matmul: the reference loop; simd.h's matmul_rows is the ISA's tile (vf.h) where there is one

// Rows i..i+3 of xout (T,d) = x (T,n) @ W (d,n)^T: T tokens at once, so W streams from memory once
// per block. x's rows are xs floats apart.
static inline void matmul_rows_ref(float *xout, const float *x, size_t xs, const float *w, int T, int n, int d, int i) {
    for (int r = i; r < d && r < i + 4; r++)
        for (int t = 0; t < T; t++) xout[(size_t)t * d + r] = dot_ref(w + (size_t)r * n, x + (size_t)t * xs, n);
}

typedef struct { float *xout; const float *x, *w; size_t xs; int T, n, d; } Matmul;

static void matmul_tile4(void *ctx, int k) {
    const Matmul *m = ctx;
    matmul_rows(m->xout, m->x, m->xs, m->w, m->T, m->n, m->d, 4 * k);
}

// xout (T,d) = x (T,n) @ W (d,n)^T, 4 rows at a time, the threads sharing them. pad: room for T
// rows of n + XPAD floats where spread(n).
static void matmul(float *xout, const float *x, const float *w, int T, int n, int d, float *pad) {
    Matmul m = {xout, x, w, n, T, n, d};
    if (T > 1 && spread(n)) {
        for (int t = 0; t < T; t++) memcpy(pad + (size_t)t * (n + XPAD), x + (size_t)t * n, n * sizeof(float));
        m.x = pad, m.xs = n + XPAD;
    }
    for_each_tile((d + 3) / 4, matmul_tile4, &m);
}

// ----------------------------------------------------------------------------
// the forward pass, for a block of T tokens at positions pos..pos+T-1

static float *forward_rows(Transformer *transformer, const int *tokens, int T, int pos, int all_logits) {
    const Config *p = &transformer->config;
    const TransformerWeights *w = &transformer->weights;
    RunState *s = &transformer->state;
    float *pad = transformer->pad;
    int dim = p->dim, hidden_dim = p->hidden_dim;
    int kv_dim = (p->dim * p->n_kv_heads) / p->n_heads;

    embed_tokens(s->x, w->token_embedding_table, tokens, T, dim, p->vocab_size);

    for (int l = 0; l < p->n_layers; l++) {
        size_t loff = (size_t)l * p->seq_len * kv_dim; // kv cache layer offset
        rmsnorm_rows(s->xb, s->x, w->rms_att_weight + (size_t)l * dim, T, dim);

        // qkv matmuls
        matmul(s->q, s->xb, w->wq + (size_t)l * dim * dim, T, dim, dim, pad);
        matmul(s->k, s->xb, w->wk + (size_t)l * dim * kv_dim, T, dim, kv_dim, pad);
        matmul(s->v, s->xb, w->wv + (size_t)l * dim * kv_dim, T, dim, kv_dim, pad);

        // RoPE and multihead causal attention
        attention(s->xb, s->q, s->k, s->v, s->key_cache + loff, s->value_cache + loff, s->att, s->rope_cos, s->rope_sin, p, T, pos);

        // output projection and residual
        matmul(s->xb2, s->xb, w->wo + (size_t)l * dim * dim, T, dim, dim, pad);
        residual(s->x, s->xb2, (size_t)T * dim);

        // ffn: w2(silu(w1(x)) * w3(x))
        rmsnorm_rows(s->xb, s->x, w->rms_ffn_weight + (size_t)l * dim, T, dim);
        matmul(s->hb, s->xb, w->w1 + (size_t)l * dim * hidden_dim, T, dim, hidden_dim, pad);
        matmul(s->hb2, s->xb, w->w3 + (size_t)l * dim * hidden_dim, T, dim, hidden_dim, pad);
        swiglu(s->hb, s->hb2, (size_t)T * hidden_dim);
        matmul(s->xb, s->hb, w->w2 + (size_t)l * dim * hidden_dim, T, hidden_dim, dim, pad);
        residual(s->x, s->xb, (size_t)T * dim);
    }

    // the logits of the last token (generation), or of all T (scoring)
    int nl = all_logits ? T : 1;
    float *x = s->x + (size_t)(T - nl) * dim;
    rmsnorm_rows(x, x, w->rms_final_weight, nl, dim);
    matmul(s->logits, x, w->wcls, nl, dim, p->vocab_size, pad);
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
