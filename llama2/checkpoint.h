// checkpoint.h: the model file header (versions 0, 1 and 2; byte layouts in FORMATS.md), validated before any tensor is read.
#pragma once
#include "platform.h"

static int32_t read_i32(const unsigned char *p) { int32_t v; memcpy(&v, p, 4); return v; }

typedef struct {
    int dim;        // transformer dimension
    int hidden_dim; // for ffn layers
    int n_layers;   // number of layers
    int n_heads;    // number of query heads
    int n_kv_heads; // number of key/value heads (can be < query heads because of multiquery)
    int vocab_size; // vocabulary size, usually 256 (byte-level)
    int seq_len;    // max sequence length
} Config;

typedef struct {
    Config config;
    int version;           // 0, 1 or 2
    int shared_classifier; // 1: the classifier is the token embedding
    int group_size;        // v2 only
    size_t header_bytes;   // where the tensors start
} Header;

#define V1_MAGIC 0x616b3432u
#define MAX_SIZE (1 << 20) // generous bound on any size, so byte counts below cannot overflow

// Where the tensors start, from the file's first 4 bytes: after the 256-byte header of versions 1
// and 2 (their magic first), else after version 0's 7 ints. map_file aligns the copy by it.
static size_t tensors_at(const unsigned char *head) {
    uint32_t magic;
    memcpy(&magic, head, 4);
    return magic == V1_MAGIC ? 256 : 28;
}

static void read_header(const char *path, const unsigned char *data, size_t size, Header *h) {
    memset(h, 0, sizeof(*h));
    int32_t f[7];
    uint32_t magic = 0;
    if (size >= 4) memcpy(&magic, data, 4);
    if (magic == V1_MAGIC) {
        if (size < 256) die("%s: truncated header (%zu bytes, a versioned header is 256)", path, size);
        h->version = read_i32(data + 4);
        if (h->version != 1 && h->version != 2)
            die("%s: unsupported model file version %d (expected 0, 1 or 2)", path, h->version);
        for (int i = 0; i < 7; i++) f[i] = read_i32(data + 8 + 4 * i);
        if (data[36] > 1) die("%s: bad shared_classifier flag %d (expected 0 or 1)", path, data[36]);
        h->shared_classifier = data[36];
        if (h->version == 2) h->group_size = read_i32(data + 37);
    } else {
        if (size < 28) die("%s: truncated header (%zu bytes)", path, size);
        for (int i = 0; i < 7; i++) f[i] = read_i32(data + 4 * i);
        h->version = 0;
        // a negative vocab_size marks an unshared classifier in version 0
        h->shared_classifier = f[5] > 0;
        if (f[5] < 0 && f[5] != INT32_MIN) f[5] = -f[5];
    }
    h->header_bytes = tensors_at(data); // the checks above made sure the header's bytes are there
    const char *names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        if (f[i] <= 0 || f[i] > MAX_SIZE)
            die("%s: bad header, %s = %d (expected 1..%d); not a llama2.c model file?", path, names[i], f[i], MAX_SIZE);
    }
    Config *c = &h->config;
    c->dim = f[0]; c->hidden_dim = f[1]; c->n_layers = f[2]; c->n_heads = f[3];
    c->n_kv_heads = f[4]; c->vocab_size = f[5]; c->seq_len = f[6];
    if (c->n_layers > 4096) die("%s: bad header, n_layers = %d", path, c->n_layers);
    if (c->dim % c->n_heads != 0) die("%s: bad header, dim %d is not divisible by n_heads %d", path, c->dim, c->n_heads);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
        die("%s: bad header, n_kv_heads %d must divide n_heads %d", path, c->n_kv_heads, c->n_heads);
    if ((c->dim / c->n_heads) % 2 != 0) die("%s: bad header, head size %d is odd (RoPE needs pairs)", path, c->dim / c->n_heads);
    if (c->vocab_size < 3) die("%s: bad header, vocab_size %d is too small", path, c->vocab_size);
    if (h->version == 2) {
        int gs = h->group_size;
        if (gs <= 0 || c->dim % gs != 0 || c->hidden_dim % gs != 0)
            die("%s: bad header, group_size %d must divide dim %d and hidden_dim %d", path, gs, c->dim, c->hidden_dim);
    }
}

// Bytes of the tensors a header implies, for the exact file-size check.
static void check_file_size(const char *path, const Header *h, size_t size) {
    const Config *c = &h->config;
    uint64_t L = c->n_layers, dim = c->dim, hid = c->hidden_dim, V = c->vocab_size;
    uint64_t hs = dim / c->n_heads, kv = (uint64_t)c->n_kv_heads * hs;
    uint64_t norms = 2 * L * dim + dim;
    uint64_t mats[] = {V * dim, L * dim * dim, L * kv * dim, L * kv * dim, L * dim * dim,
                       L * hid * dim, L * dim * hid, L * hid * dim, h->shared_classifier ? 0 : V * dim};
    uint64_t n = 0;
    for (int i = 0; i < 9; i++) n += mats[i];
    uint64_t expect = h->header_bytes;
    if (h->version == 2) {
        expect += 4 * norms + n + 4 * (n / h->group_size);
    } else {
        expect += 4 * (norms + n);
        if (h->version == 0) expect += 4 * (uint64_t)c->seq_len * hs; // RoPE tables, skipped
    }
    if ((uint64_t)size != expect)
        die("%s: file is %zu bytes but its header (version %d, dim %d, %d layers, vocab %d) implies %llu; truncated or not a model file",
            path, size, h->version, c->dim, c->n_layers, c->vocab_size, (unsigned long long)expect);
}
