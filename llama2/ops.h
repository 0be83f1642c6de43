// ops.h: the reference fp32 kernels both runners use (dot, softmax, rmsnorm, RoPE, attention, SwiGLU) and the activations they work on.
#pragma once
#include "platform.h"
#include "checkpoint.h"
#include "threads.h"
#include "simd.h" // the target's faster variants, which replace the *_ref loops below

// The plain loops are the reference: simd.h picks an ISA file's variant instead where there is
// one, and tests/test_kernels.c checks each against its loop. Where a reference loop calls dot(),
// that is the target's dot.

static inline float dot_ref(const float *a, const float *b, int n) {
    float val = 0.0f;
    for (int j = 0; j < n; j++) val += a[j] * b[j];
    return val;
}

static void softmax(float *x, int size) {
    float max_val = x[0];
    for (int i = 1; i < size; i++) if (x[i] > max_val) max_val = x[i];
    float sum = 0.0f;
    for (int i = 0; i < size; i++) { x[i] = expf(x[i] - max_val); sum += x[i]; }
    for (int i = 0; i < size; i++) x[i] /= sum;
}

// att[j] = q . k_j / sqrt(n) for the npos keys k_j = k + j * stride: attention's scores.
static inline void attention_scores_ref(float *att, const float *q, const float *k, size_t stride, int npos, int n) {
    float sqrt_n = sqrtf((float)n);
    for (int j = 0; j < npos; j++) att[j] = dot(q, k + j * stride, n) / sqrt_n;
}

// out[0..n) = sum over j < npos of att[j] * v[j * stride + 0..n): attention's weighted values.
static inline void mix_values_ref(float *out, const float *att, const float *v, size_t stride, int npos, int n) {
    for (int c = 0; c < n; c++) {
        float val = 0.0f;
        for (int j = 0; j < npos; j++) val += att[j] * v[j * stride + c];
        out[c] = val;
    }
}

// hb = silu(hb) * hb2, the SwiGLU of the ffn
static inline void swiglu_ref(float *hb, const float *hb2, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float val = hb[i];
        val *= (1.0f / (1.0f + expf(-val))); // silu(x) = x * sigmoid(x)
        hb[i] = val * hb2[i];
    }
}

static void rmsnorm(float *o, const float *x, const float *weight, int size) {
    float ss = dot(x, x, size);
    ss /= size;
    ss += 1e-5f;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < size; j++) o[j] = weight[j] * (ss * x[j]);
}

// rmsnorm of each of the T rows of a block of activations
static void rmsnorm_rows(float *o, const float *x, const float *weight, int T, int dim) {
    for (int t = 0; t < T; t++) rmsnorm(o + (size_t)t * dim, x + (size_t)t * dim, weight, dim);
}

// x[t] = embedding row of tokens[t], for a block of T tokens
static void embed_tokens(float *x, const float *table, const int *tokens, int T, int dim, int vocab_size) {
    for (int t = 0; t < T; t++) {
        int token = tokens[t];
        if (token < 0 || token >= vocab_size) die("token id %d out of range", token);
        memcpy(x + (size_t)t * dim, table + (size_t)token * dim, dim * sizeof(float));
    }
}

// the residual connection: x += d
static void residual(float *x, const float *d, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += d[i];
}

// RoPE angles for every position, computed once as the original computes them each step.
static void build_rope(const Config *p, float **cos_out, float **sin_out) {
    size_t hs = p->dim / p->n_heads;
    float *c = xcalloc((size_t)p->seq_len * hs / 2, sizeof(float), "RoPE tables");
    float *s = xcalloc((size_t)p->seq_len * hs / 2, sizeof(float), "RoPE tables");
    for (int pos = 0; pos < p->seq_len; pos++) {
        for (size_t i = 0; i < hs; i += 2) {
            float freq = 1.0f / powf(10000.0f, i / (float)hs);
            float val = pos * freq;
            c[pos * hs / 2 + i / 2] = cosf(val);
            s[pos * hs / 2 + i / 2] = sinf(val);
        }
    }
    *cos_out = c;
    *sin_out = s;
}

// out = x (one head, n values) rotated pair by pair: (x[j], x[j+1]) by the angle whose cosine and
// sine are fcr[j/2] and fci[j/2]. out may be x.
static void rope_rotate(float *out, const float *x, const float *fcr, const float *fci, int n) {
    for (int j = 0; j < n; j += 2) {
        float x0 = x[j], x1 = x[j + 1], c = fcr[j / 2], s = fci[j / 2];
        out[j] = x0 * c - x1 * s;
        out[j + 1] = x0 * s + x1 * c;
    }
}

// ----------------------------------------------------------------------------
// the activations and KV cache of the forward pass, fp32 in both runners

// Prompt tokens per forward pass (matrix x matrix). A matmul's weights stream from memory once
// per block and each int8 panel is packed once per block, so a longer block does less of both per
// token; past 128 the block's activations no longer sit in the L2 cache beside the weights.
#define PREFILL_BLOCK 128

typedef struct {
    // activations for a block of B tokens, one row per token
    float *x;      // (B, dim) current activations
    float *xb;     // (B, dim) inside a residual branch
    float *xb2;    // (B, dim)
    float *hb;     // (B, hidden_dim) inside the ffn
    float *hb2;    // (B, hidden_dim)
    float *q;      // (B, dim) queries
    float *k;      // (B, kv_dim) keys, before RoPE and the cache
    float *v;      // (B, kv_dim) values
    float *att;    // (B, n_heads, seq_len) attention scores
    float *logits; // (B, vocab_size) output logits: of the last token, or of every token (scoring)
    float *arena;  // the allocation all of the above are carved from
    float *key_cache;   // (layer, n_kv_heads, seq_len, head_size): a head's keys are one stream
    float *value_cache; // (layer, n_kv_heads, seq_len, head_size)
    size_t key_mapped, value_mapped; // bytes of each cache's 2 MB-page mapping (Linux); 0: calloc'd
    float *rope_cos;    // (seq_len, head_size/2), computed once instead of every step
    float *rope_sin;
} RunState;

// Carves n floats out of an arena, each array on a 64-byte boundary: the matmul tiles load rows
// of activations as whole vectors, and one that straddles two cache lines costs two loads.
static float *carve(float **arena, size_t n) {
    float *p = *arena;
    *arena += (n + 15) / 16 * 16;
    return p;
}

static void build_state(RunState *s, const Config *p) {
    size_t B = PREFILL_BLOCK, kv_dim = (size_t)p->dim * p->n_kv_heads / p->n_heads;
    size_t sizes[] = {B * p->dim, B * p->dim, B * p->dim, B * p->hidden_dim, B * p->hidden_dim, B * p->dim,
                      B * kv_dim, B * kv_dim, B * p->n_heads * (size_t)p->seq_len, B * p->vocab_size};
    size_t total = 16; // room to align the start
    for (int i = 0; i < 10; i++) total += (sizes[i] + 15) / 16 * 16;
    s->arena = xcalloc(total, sizeof(float), "activations");
    float *a = s->arena + (16 - (uintptr_t)s->arena / sizeof(float) % 16) % 16;
    s->x = carve(&a, sizes[0]); s->xb = carve(&a, sizes[1]); s->xb2 = carve(&a, sizes[2]);
    s->hb = carve(&a, sizes[3]); s->hb2 = carve(&a, sizes[4]); s->q = carve(&a, sizes[5]);
    s->k = carve(&a, sizes[6]); s->v = carve(&a, sizes[7]); s->att = carve(&a, sizes[8]); s->logits = carve(&a, sizes[9]);
    s->key_cache = alloc_huge((size_t)p->n_layers * p->seq_len * kv_dim, &s->key_mapped, "the KV cache");
    s->value_cache = alloc_huge((size_t)p->n_layers * p->seq_len * kv_dim, &s->value_mapped, "the KV cache");
    build_rope(p, &s->rope_cos, &s->rope_sin);
}

static void free_state(RunState *s) {
    free(s->arena); free(s->rope_cos); free(s->rope_sin);
    free_huge(s->key_cache, s->key_mapped);
    free_huge(s->value_cache, s->value_mapped);
}


// Head h of attention for T tokens at positions pos..pos+T-1 (their keys and values already in the cache).
static void attention_head(float *out, const float *q, const float *key_cache, const float *value_cache, float *att_buf,
                           const Config *p, int T, int pos, int h) {
    int dim = p->dim, head_size = dim / p->n_heads;
    int kv_mul = p->n_heads / p->n_kv_heads; // query heads per key/value head (multiquery)
    size_t head_cache = (size_t)p->seq_len * head_size; // floats per head in a layer's cache
    const float *kh = key_cache + (h / kv_mul) * head_cache, *vh = value_cache + (h / kv_mul) * head_cache;
    int t = 0;
#ifdef attention_scores4 // 4 tokens at once where the ISA has it: the same numbers (x86.h)
    for (; t + 4 <= T; t += 4) {
        const float *qs[4];
        float *atts[4], *outs[4];
        for (int i = 0; i < 4; i++) {
            qs[i] = q + (size_t)(t + i) * dim + h * head_size;
            atts[i] = att_buf + ((size_t)(t + i) * p->n_heads + h) * p->seq_len;
            outs[i] = out + (size_t)(t + i) * dim + h * head_size;
        }
        attention_scores4(atts, qs, kh, head_size, pos + t + 1, head_size);
        for (int i = 0; i < 4; i++) attention_softmax(atts[i], pos + t + i + 1);
        mix_values4(outs, atts, vh, head_size, pos + t + 1, head_size);
    }
#endif
    for (; t < T; t++) {
        const float *qh = q + (size_t)t * dim + h * head_size;
        float *att = att_buf + ((size_t)t * p->n_heads + h) * p->seq_len;
        int last = pos + t; // token t sees positions 0..pos+t
        attention_scores(att, qh, kh, head_size, last + 1, head_size);
        attention_softmax(att, last + 1);
        mix_values(out + (size_t)t * dim + h * head_size, att, vh, head_size, last + 1, head_size);
    }
}

// One layer's attention for T tokens at positions pos..pos+T-1: RoPE on q (T, dim) and k (T, kv_dim),
// k and v into the layer's cache at pos..pos+T-1, then causal multihead attention into out
// (T, dim). att is scratch of (T, n_heads, seq_len).
static void attention(float *out, float *q, const float *k, const float *v, float *key_cache, float *value_cache,
                      float *att_buf, const float *rope_cos, const float *rope_sin, const Config *p, int T, int pos) {
    int dim = p->dim, head_size = dim / p->n_heads, kv_dim = p->dim * p->n_kv_heads / p->n_heads;
    size_t head_cache = (size_t)p->seq_len * head_size; // floats per head in a layer's cache
    for (int t = 0; t < T; t++) {
        const float *fcr = rope_cos + (size_t)(pos + t) * (head_size / 2);
        const float *fci = rope_sin + (size_t)(pos + t) * (head_size / 2);
        float *qt = q + (size_t)t * dim;
        const float *kt = k + (size_t)t * kv_dim, *vt = v + (size_t)t * kv_dim;
        // RoPE, head by head: pair (j, j+1) of a head turns by angle j/2 of the position. (The
        // original's one loop over dim divides by head_size for every pair, which costs more than
        // the rotations.)
        for (int h0 = 0; h0 < dim; h0 += head_size) rope_rotate(qt + h0, qt + h0, fcr, fci, head_size);
        for (int kh = 0; kh < p->n_kv_heads; kh++) {
            size_t at = kh * head_cache + (size_t)(pos + t) * head_size;
            rope_rotate(key_cache + at, kt + kh * head_size, fcr, fci, head_size);
            memcpy(value_cache + at, vt + kh * head_size, head_size * sizeof(float));
        }
    }
    int h;
    if (use_threads()) {
        #pragma omp parallel for schedule(static)
        for (h = 0; h < p->n_heads; h++) attention_head(out, q, key_cache, value_cache, att_buf, p, T, pos, h);
    } else {
        for (h = 0; h < p->n_heads; h++) attention_head(out, q, key_cache, value_cache, att_buf, p, T, pos, h);
    }
}
