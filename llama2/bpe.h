// bpe.h: sentencepiece's BPE, shared by the runners' tokenizer (tokenizer.h) and the corpus encoder (bpe.c): UTF-8, the normalizer, the merge heap.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// The bytes of a UTF-8 sequence with lead byte c (0: c leads none), and the range of its second
// byte, which excludes overlong forms, surrogates and code points above U+10FFFF.
static int utf8_need(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80, *hi = 0xBF;
    if (c == 0xE0) *lo = 0xA0; else if (c == 0xED) *hi = 0x9F; else if (c == 0xF0) *lo = 0x90; else if (c == 0xF4) *hi = 0x8F;
    return c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
}

// Length of the UTF-8 character at s (at most n bytes), or 1 for an invalid byte; *cp gets its
// code point, -1 for an invalid byte.
static int utf8_char(const unsigned char *s, size_t n, int32_t *cp) {
    unsigned char lo, hi;
    int need = utf8_need(s[0], &lo, &hi), ok = need >= 2 && (size_t)need <= n && s[1] >= lo && s[1] <= hi;
    for (int i = 2; ok && i < need; i++) ok = s[i] >= 0x80 && s[i] <= 0xBF;
    *cp = s[0] < 0x80 ? s[0] : -1;
    if (!ok) return 1;
    *cp = s[0] & (0x7F >> need);
    for (int i = 1; i < need; i++) *cp = *cp << 6 | (s[i] & 0x3F);
    return need;
}

// sentencepiece's identity normalizer: each space, and each typed "▁", becomes `space` (k bytes:
// " " for the .bin's pieces, which hold spaces, or "▁" for the .model's); the dummy prefix when
// there is text; with remove_extra_whitespaces no leading spaces, one per run of typed spaces and
// none at the end. Writes at most k * (n + 1) bytes to out; returns how many.
static size_t bpe_normalize(const unsigned char *in, size_t n, unsigned char *out, int add_dummy_prefix,
                            int remove_extra_whitespaces, const char *space, size_t k) {
    size_t i = 0, m = 0;
    int extra = remove_extra_whitespaces, prev_space = 0;
    if (extra) while (i < n && in[i] == ' ') i++;
    if (i == n) return 0;
    if (add_dummy_prefix) memcpy(out, space, k), m = k;
    while (i < n) {
        int typed = n - i >= 3 && in[i] == 0xE2 && in[i + 1] == 0x96 && in[i + 2] == 0x81;
        if (in[i] == ' ' && extra && prev_space) { i++; continue; }
        prev_space = in[i] == ' ';
        if (in[i] == ' ' || typed) memcpy(out + m, space, k), m += k, i += typed ? 3 : 1;
        else out[m++] = in[i++];
    }
    if (extra) while (m >= k && memcmp(out + m - k, space, k) == 0) m -= k;
    return m;
}

// A symbol of the text being merged: its piece, its length (0 once merged into its left
// neighbour), its neighbours, and where it starts in the text.
typedef struct { int32_t id, len, prev, next, start; } Symbol;
// A candidate merge of symbols left and right into piece id; len is their lengths' sum when it
// was pushed, so it is stale once either has changed.
typedef struct { float score; int32_t left, right, len, id; } Candidate;

static int bpe_before(const Candidate *a, const Candidate *b) { // higher score first, then leftmost
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(Candidate *h, int *n, Candidate c) {
    int i = (*n)++;
    while (i > 0 && bpe_before(&c, &h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = c;
}

static Candidate heap_pop(Candidate *h, int *n) {
    Candidate top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && bpe_before(&h[c + 1], &h[c])) c++;
        if (!bpe_before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

// The piece symbols l and r merge into, with its score; -1 when they do not merge.
typedef int32_t (*PairLookup)(const void *ctx, const Symbol *l, const Symbol *r, float *score);

static void push_candidate(const Symbol *s, int left, PairLookup lookup, const void *ctx, Candidate *heap, int *nheap) {
    if (left < 0 || s[left].next < 0) return;
    int right = s[left].next;
    float score;
    int32_t id = lookup(ctx, &s[left], &s[right], &score);
    if (id >= 0) heap_push(heap, nheap, (Candidate){score, left, right, s[left].len + s[right].len, id});
}

// BPE on the n >= 1 symbols s[0..n), linked in order: merges the adjacent pair whose piece scores
// highest (the leftmost on ties) until no pair merges; the result is the list from s[0]. The
// heap has room for 2n candidates: each merge pops one and pushes at most two.
static void bpe_merge(Symbol *s, int n, Candidate *heap, PairLookup lookup, const void *ctx) {
    int nheap = 0;
    for (int i = 0; i + 1 < n; i++) push_candidate(s, i, lookup, ctx, heap, &nheap);
    while (nheap > 0) {
        Candidate c = heap_pop(heap, &nheap);
        Symbol *l = &s[c.left], *r = &s[c.right];
        if (l->len == 0 || r->len == 0 || l->next != c.right || l->len + r->len != c.len) continue; // stale
        l->id = c.id;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = c.left;
        push_candidate(s, l->prev, lookup, ctx, heap, &nheap);
        push_candidate(s, c.left, lookup, ctx, heap, &nheap);
    }
}
