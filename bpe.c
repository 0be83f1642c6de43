/* bpe.c: sentencepiece-exact BPE encoding of many documents at once, a small shared library that
   tinystories.py pretokenize calls through ctypes (tokenizer.py's fast_encoder loads it).

   make bpe        # builds libbpe.so; without it pretokenize uses sentencepiece itself (slower)

   Why a second front end next to the runners' (llama2/tokenizer.h): run.c encodes one prompt
   from the .bin, which holds strings and scores only. Pretokenizing encodes the whole corpus, so
   this one is built for throughput, from the vocabulary's piece types that only the .model has.

   The algorithm is sentencepiece's BPE: one symbol per character, then repeatedly merge the
   adjacent pair whose merged piece has the highest score (the leftmost on ties); characters that
   are no piece are spelled with the byte pieces <0xXX>. Before that, the identity normalizer:
   optionally drop extra spaces, add the dummy "▁" prefix, write ' ' as "▁". Three things make it
   fast, none changes the result:
   - merges are looked up by (left id, right id) in an integer hash table, characters in a direct
     codepoint table: no string is built or hashed while merging;
   - the text is cut between two characters that sit next to each other in no piece: no merge can
     ever join them, so the pieces on either side are encoded independently;
   - those segments are short and repeat ("小狗", "说：", ...), so each distinct one is encoded once
     per call and then copied from a cache.
   tokenizer.py hands this library only vocabularies it encodes exactly, and the tests compare it
   with sentencepiece token for token on the whole sample corpus. The normalizer and the merge loop
   are the runners' (llama2/bpe.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "llama2/bpe.h"

#define N_CODEPOINTS 0x110000
#define NORMAL 1 // sentencepiece's piece type of the pieces text is made of

typedef struct {
    uint64_t key; // pair_key(left, right); 0 marks an empty slot
    int32_t id;   // the piece left + right, or -1
    float score;  // its score: the higher, the earlier it merges
    int join;     // left and right are characters that sit next to each other inside some piece
} Pair;

typedef struct {
    int32_t *char_id;  // codepoint -> id of its one-character piece, or -1
    Pair *pairs;       // open addressing, a power-of-two number of slots
    uint64_t mask;
    int32_t byte_id[256];
    int add_dummy_prefix, remove_extra_whitespaces;
} BPE;

// ----------------------------------------------------------------------------
// hashing

static uint64_t hash64(uint64_t key) { // murmur3's finalizer: every key bit reaches the low bits
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDull;
    key ^= key >> 33;
    return key;
}

static uint64_t table_size(uint64_t n) { // a power of two, at most half full
    uint64_t slots = 16;
    while (slots < 2 * n) slots <<= 1;
    return slots;
}

static uint64_t pair_key(int32_t left, int32_t right) { return ((uint64_t)(uint32_t)left << 32 | (uint32_t)right) + 1; }

// The slot of (left, right): its entry, or the empty slot where it would go.
static Pair *pair_slot(const BPE *b, int32_t left, int32_t right) {
    uint64_t key = pair_key(left, right), i = hash64(key) & b->mask;
    while (b->pairs[i].key != 0 && b->pairs[i].key != key) i = (i + 1) & b->mask;
    return &b->pairs[i];
}

static Pair *add_pair(BPE *b, int32_t left, int32_t right) {
    Pair *p = pair_slot(b, left, right);
    if (p->key == 0) *p = (Pair){pair_key(left, right), -1, 0.0f, 0};
    return p;
}

// ----------------------------------------------------------------------------
// the vocabulary

typedef struct { const unsigned char *s; int32_t len, id; } Str; // id -1 marks an empty slot

// The slot of the string s[0..n) in a table of the normal pieces (used while building only).
static Str *str_slot(Str *t, uint64_t mask, const unsigned char *s, int n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (int i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ull;
    uint64_t i = hash64(h) & mask;
    while (t[i].id >= 0 && !(t[i].len == n && memcmp(t[i].s, s, n) == 0)) i = (i + 1) & mask;
    return &t[i];
}

void bpe_free(BPE *b) {
    if (!b) return;
    free(b->char_id); free(b->pairs);
    free(b);
}

/* The n pieces of a sentencepiece model: piece i is the UTF-8 bytes blob[offsets[i] ..
   offsets[i + 1]), with its score and type; byte_ids are the ids of <0x00>..<0xFF>. From the
   normal pieces it builds the codepoint table and the (left, right) table: every way to write a
   piece as two pieces, and every two characters adjacent inside a piece. Returns NULL when out of
   memory, or when a piece holds a character that is no piece (its id then in *bad_piece). */
BPE *bpe_new(int n, const unsigned char *blob, const int64_t *offsets, const float *scores, const int32_t *types,
             const int32_t *byte_ids, int add_dummy_prefix, int remove_extra_whitespaces, int32_t *bad_piece) {
    *bad_piece = -1;
    uint64_t boundaries = 0; // places between two characters inside a piece: two entries each at most
    for (int i = 0; i < n; i++) boundaries += (uint64_t)(offsets[i + 1] - offsets[i]);
    uint64_t str_mask = table_size((uint64_t)n) - 1;
    BPE *b = calloc(1, sizeof(BPE));
    Str *strs = malloc((str_mask + 1) * sizeof(Str));
    if (!b || !strs) { free(strs); bpe_free(b); return NULL; }
    b->mask = table_size(2 * boundaries) - 1;
    b->char_id = malloc(N_CODEPOINTS * sizeof(int32_t));
    b->pairs = calloc(b->mask + 1, sizeof(Pair));
    if (!b->char_id || !b->pairs) { free(strs); bpe_free(b); return NULL; }
    memset(b->char_id, 0xff, N_CODEPOINTS * sizeof(int32_t)); // all -1
    memset(strs, 0xff, (str_mask + 1) * sizeof(Str));         // all ids -1
    for (int i = 0; i < n; i++) {
        if (types[i] != NORMAL) continue;
        const unsigned char *s = blob + offsets[i];
        int len = (int)(offsets[i + 1] - offsets[i]);
        *str_slot(strs, str_mask, s, len) = (Str){s, len, i};
        int32_t cp;
        if (len > 0 && utf8_char(s, len, &cp) == len && cp >= 0) b->char_id[cp] = i;
    }
    for (int i = 0; i < n && *bad_piece < 0; i++) {
        if (types[i] != NORMAL) continue;
        const unsigned char *s = blob + offsets[i];
        int len = (int)(offsets[i + 1] - offsets[i]), prev = -1;
        for (int k = 0; k < len;) {
            int32_t cp;
            int cl = utf8_char(s + k, len - k, &cp), cid = cp >= 0 ? b->char_id[cp] : -1;
            if (cid < 0) { *bad_piece = i; break; }
            if (k > 0) {
                add_pair(b, prev, cid)->join = 1; // no merge ever joins two characters not marked so
                const Str *l = str_slot(strs, str_mask, s, k), *r = str_slot(strs, str_mask, s + k, len - k);
                if (l->id >= 0 && r->id >= 0) {
                    Pair *p = add_pair(b, l->id, r->id);
                    p->id = i;
                    p->score = scores[i];
                }
            }
            prev = cid;
            k += cl;
        }
    }
    free(strs);
    if (*bad_piece >= 0) { bpe_free(b); return NULL; }
    memcpy(b->byte_id, byte_ids, sizeof(b->byte_id));
    b->add_dummy_prefix = add_dummy_prefix;
    b->remove_extra_whitespaces = remove_extra_whitespaces;
    return b;
}

// ----------------------------------------------------------------------------
// growable arrays and the per-call scratch

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 1;
    size_t n = need + need / 2 + 64;
    void *q = realloc(*p, n * size);
    if (!q) return 0;
    *p = q;
    *cap = n;
    return 1;
}

typedef struct {
    uint64_t hash;   // 0 marks an empty slot
    uint32_t chars;  // where its character ids start in Cache.data, then its piece ids
    int32_t n_chars, n_ids;
} CacheEntry;

#define CACHE_MAX_SLOTS (1 << 22)  // 96 MB at most; the table doubles when half full

typedef struct {
    CacheEntry *slots;
    size_t n_slots, used;
    int32_t *data;
    size_t n_data, cap_data;
} Cache;

typedef struct {
    unsigned char *text;   // the normalized document
    int32_t *cid;          // its characters' piece ids (-1: no piece)
    int32_t *cstart;       // and where each starts in text
    Symbol *sym;
    Candidate *heap;       // bpe.h's
    size_t cap_text, cap_chars, cap_start, cap_sym, cap_heap;
    Cache cache;
} Scratch;

// ----------------------------------------------------------------------------
// BPE on one segment: a run of characters that are all pieces

static int32_t merged_pair(const void *ctx, const Symbol *l, const Symbol *r, float *score) {
    const Pair *p = pair_slot(ctx, l->id, r->id);
    if (p->key == 0 || p->id < 0) return -1;
    *score = p->score;
    return p->id;
}

// Merges the n character ids in cid; writes the piece ids to out and returns how many, -1 if out of memory.
static int merge_segment(const BPE *b, Scratch *w, const int32_t *cid, int n, int32_t *out) {
    if (!grow((void **)&w->sym, &w->cap_sym, n, sizeof(Symbol)) ||
        !grow((void **)&w->heap, &w->cap_heap, 2 * (size_t)n, sizeof(Candidate))) return -1;
    Symbol *s = w->sym;
    for (int i = 0; i < n; i++) s[i] = (Symbol){cid[i], 1, i - 1, i + 1, i};
    s[n - 1].next = -1;
    bpe_merge(s, n, w->heap, merged_pair, b);
    int m = 0;
    for (int i = 0; i >= 0; i = s[i].next) out[m++] = s[i].id;
    return m;
}

// ----------------------------------------------------------------------------
// the segment cache

static uint64_t hash_ids(const int32_t *cid, int n) {
    uint64_t h = 0x243F6A8885A308D3ull;
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)cid[i]) * 0x100000001B3ull;
    return h | 1; // never 0
}

static int cache_grow(Cache *c) { // doubles the table, re-inserting every entry
    size_t n = c->n_slots ? 2 * c->n_slots : 1 << 14;
    CacheEntry *slots = calloc(n, sizeof(CacheEntry));
    if (!slots) return 0;
    for (size_t i = 0; i < c->n_slots; i++) {
        if (c->slots[i].hash == 0) continue;
        size_t j = c->slots[i].hash & (n - 1);
        while (slots[j].hash != 0) j = (j + 1) & (n - 1);
        slots[j] = c->slots[i];
    }
    free(c->slots);
    c->slots = slots;
    c->n_slots = n;
    return 1;
}

// The piece ids of the segment cid[0..n), from the cache or merged now; NULL if out of memory.
static const int32_t *encode_segment(const BPE *b, Scratch *w, const int32_t *cid, int n, int *n_ids) {
    Cache *c = &w->cache;
    if (2 * (c->used + 1) > c->n_slots && c->n_slots < CACHE_MAX_SLOTS && !cache_grow(c)) return NULL;
    uint64_t h = hash_ids(cid, n), mask = c->n_slots - 1, i = h & mask;
    for (; c->slots[i].hash != 0; i = (i + 1) & mask) {
        CacheEntry *e = &c->slots[i];
        if (e->hash == h && e->n_chars == n && memcmp(c->data + e->chars, cid, n * sizeof(int32_t)) == 0) {
            *n_ids = e->n_ids;
            return c->data + e->chars + n;
        }
    }
    // a miss: merge into the data array (room for the characters and at most n ids)
    if (!grow((void **)&c->data, &c->cap_data, c->n_data + 2 * (size_t)n, sizeof(int32_t))) return NULL;
    int32_t *chars = c->data + c->n_data, *ids = chars + n;
    memcpy(chars, cid, n * sizeof(int32_t));
    int m = merge_segment(b, w, cid, n, ids);
    if (m < 0) return NULL;
    *n_ids = m;
    if (2 * (c->used + 1) <= c->n_slots && c->n_data + n + m < UINT32_MAX) { // keep it (a full cache stops here)
        c->slots[i] = (CacheEntry){h, (uint32_t)c->n_data, n, m};
        c->used++;
        c->n_data += n + m;
    }
    return ids;
}

// ----------------------------------------------------------------------------
// encoding one document

// Writes the ids of the document in[0..n) to out, which has room for `room`; returns their
// count, -1 when out of memory, -2 when they might not fit (at most one id per normalized byte).
static long encode_doc(const BPE *b, Scratch *w, const unsigned char *in, size_t n, uint16_t *out, long room) {
    if (!grow((void **)&w->text, &w->cap_text, 3 * n + 3, 1)) return -1;
    size_t m = bpe_normalize(in, n, w->text, b->add_dummy_prefix, b->remove_extra_whitespaces, "\xE2\x96\x81", 3);
    if ((long)m > room) return -2;
    if (!grow((void **)&w->cid, &w->cap_chars, m, sizeof(int32_t)) ||
        !grow((void **)&w->cstart, &w->cap_start, m + 1, sizeof(int32_t))) return -1;
    const unsigned char *text = w->text;
    int nc = 0;
    for (size_t i = 0; i < m;) {
        int32_t cp;
        int len = utf8_char(text + i, m - i, &cp);
        w->cid[nc] = cp >= 0 ? b->char_id[cp] : -1;
        w->cstart[nc++] = (int32_t)i;
        i += len;
    }
    w->cstart[nc] = (int32_t)m;
    long k = 0;
    for (int s = 0, e; s < nc; s = e) {
        for (e = s + 1; e < nc && w->cid[e - 1] >= 0 && w->cid[e] >= 0 && pair_slot(b, w->cid[e - 1], w->cid[e])->join; e++) {}
        if (w->cid[s] < 0) { // a character that is no piece (never part of a longer segment): its bytes
            for (int j = w->cstart[s]; j < w->cstart[s + 1]; j++) out[k++] = (uint16_t)b->byte_id[text[j]];
        } else if (e - s == 1) {
            out[k++] = (uint16_t)w->cid[s];
        } else {
            int n_ids;
            const int32_t *ids = encode_segment(b, w, w->cid + s, e - s, &n_ids);
            if (!ids) return -1;
            for (int j = 0; j < n_ids; j++) out[k++] = (uint16_t)ids[j];
        }
    }
    return k;
}

/* Encodes n_docs documents: document d is the UTF-8 bytes text[offsets[d] .. offsets[d + 1]).
   Writes [bos] + ids + [eos] per document (bos/eos < 0: left out) to out as uint16, at most cap
   values. Returns the number written, -1 when out of memory, -2 when out is too small. Holds no
   global state, so several threads may call it at once (ctypes drops the GIL meanwhile). */
long bpe_encode(const BPE *b, const unsigned char *text, const int64_t *offsets, int n_docs,
                int bos, int eos, uint16_t *out, long cap) {
    Scratch w = {0};
    long total = 0, err = 0;
    for (int d = 0; d < n_docs; d++) {
        size_t n = (size_t)(offsets[d + 1] - offsets[d]);
        if (total + 2 > cap) { err = -2; break; }
        if (bos >= 0) out[total++] = (uint16_t)bos;
        long k = encode_doc(b, &w, text + offsets[d], n, out + total, cap - total - 1);
        if (k < 0) { err = k; break; }
        total += k;
        if (eos >= 0) out[total++] = (uint16_t)eos;
    }
    free(w.text); free(w.cid); free(w.cstart); free(w.sym); free(w.heap);
    free(w.cache.slots); free(w.cache.data);
    return err ? err : total;
}
