// tokenizer.h: the tokenizer .bin, prompt encoding exactly as sentencepiece does it, and a printer that writes only valid UTF-8.
#pragma once
#include "platform.h"
#include "checkpoint.h"
#include "bpe.h"

#define BOS 1
#define EOS 2

typedef struct {
    int vocab_size;
    unsigned char *blob;   // the tokenizer file
    const unsigned char **piece; // piece bytes (not NUL-terminated), pointing into blob
    int *len;
    float *scores;
    int *byte_of;          // byte value of a "<0xAB>" piece, else -1
    int byte_id[256];      // id of the byte-fallback piece of each byte, or -1
    int *table;            // open-addressing hash of mergeable pieces -> id, -1 empty
    uint32_t table_mask;
    int add_dummy_prefix, remove_extra_whitespaces; // sentencepiece's normalizer, from the trailer
} Tokenizer;

static uint32_t hash_bytes(const unsigned char *s, int n) {
    uint32_t h = 2166136261u; // FNV-1a
    for (int i = 0; i < n; i++) { h ^= s[i]; h *= 16777619u; }
    return h;
}

static int lookup_piece(const Tokenizer *t, const unsigned char *s, int n) {
    for (uint32_t i = hash_bytes(s, n) & t->table_mask;; i = (i + 1) & t->table_mask) {
        int id = t->table[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->piece[id], s, n) == 0) return id;
    }
}

static int hex_digit(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static FILE *open_tokenizer(const char *path) {
#if defined _WIN32
    HANDLE h = open_windows(path);
    if (h == INVALID_HANDLE_VALUE) die("cannot open tokenizer %s", path);
    DWORD type = GetFileType(h);
    CloseHandle(h);
    if (type != FILE_TYPE_DISK) die("tokenizer %s is not a regular file (a pipe or device?)", path);
    wchar_t *w = wide_path(path);
    FILE *file = _wfopen(w, L"rb");
    free(w);
#else
    struct stat st;
    FILE *file = fdopen(open_regular(path, "tokenizer", &st), "rb");
#endif
    if (!file) die("cannot open tokenizer %s: %s", path, strerror(errno));
    return file;
}

static void build_tokenizer(Tokenizer *t, const char *path, int vocab_size) {
    memset(t, 0, sizeof(*t));
    t->vocab_size = vocab_size;
    FILE *file = open_tokenizer(path);
    if (fseek(file, 0, SEEK_END) != 0) die("cannot read tokenizer %s", path);
    long size = ftell(file);
    if (size < 0 || size > (1L << 30)) die("cannot read tokenizer %s (bad size)", path);
    rewind(file);
    t->blob = xcalloc((size_t)size + 1, 1, "the tokenizer");
    if (fread(t->blob, 1, (size_t)size, file) != (size_t)size) die("cannot read tokenizer %s", path);
    fclose(file);
    if (size < 4) die("tokenizer %s is truncated (%ld bytes)", path, size);
    t->piece = xcalloc(vocab_size, sizeof(*t->piece), "the tokenizer");
    t->len = xcalloc(vocab_size, sizeof(int), "the tokenizer");
    t->scores = xcalloc(vocab_size, sizeof(float), "the tokenizer");
    t->byte_of = xcalloc(vocab_size, sizeof(int), "the tokenizer");
    size_t off = 4; // skip max_token_length: lengths are checked against the file instead
    for (int i = 0; i < vocab_size; i++) {
        if ((size_t)size - off < 8)
            die("tokenizer %s ends after %d of the model's %d pieces (wrong tokenizer for this model?)", path, i, vocab_size);
        memcpy(&t->scores[i], t->blob + off, 4);
        int n = read_i32(t->blob + off + 4);
        off += 8;
        if (n < 0 || (size_t)n > (size_t)size - off)
            die("tokenizer %s: piece %d has a bad length %d (file corrupt or truncated)", path, i, n);
        if (isnan(t->scores[i])) die("tokenizer %s: piece %d has a NaN score", path, i);
        t->piece[i] = t->blob + off;
        t->len[i] = n;
        off += n;
    }
    // tokenizer.py appends a trailer the original run.c never reads: "spnm", int version 1,
    // add_dummy_prefix, remove_extra_whitespaces, 2 zero bytes. Without it: sentencepiece's
    // dummy prefix, spaces kept (what the published tok5000.bin has always been encoded with).
    t->add_dummy_prefix = 1;
    t->remove_extra_whitespaces = 0;
    const unsigned char *tr = t->blob + off;
    size_t rest = (size_t)size - off;
    if (rest == 12 && memcmp(tr, "spnm", 4) == 0 && read_i32(tr + 4) == 1 && tr[8] <= 1 && tr[9] <= 1 &&
        tr[10] == 0 && tr[11] == 0) {
        t->add_dummy_prefix = tr[8];
        t->remove_extra_whitespaces = tr[9];
    } else if (rest != 0) {
        die("tokenizer %s has %ld bytes after the model's %d pieces (wrong tokenizer for this model?)", path, (long)rest, vocab_size);
    }
    // byte-fallback pieces are written literally as "<0xAB>"
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (int i = 0; i < vocab_size; i++) {
        const unsigned char *p = t->piece[i];
        t->byte_of[i] = -1;
        if (t->len[i] == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>' &&
            hex_digit(p[3]) >= 0 && hex_digit(p[4]) >= 0) {
            int b = hex_digit(p[3]) * 16 + hex_digit(p[4]);
            t->byte_of[i] = b;
            if (t->byte_id[b] < 0) t->byte_id[b] = i;
        }
    }
    // hash of the pieces BPE may produce: not unk/BOS/EOS, not byte pieces; first id wins
    uint32_t cap = 1;
    while (cap < 2u * (uint32_t)vocab_size) cap <<= 1;
    t->table = xcalloc(cap, sizeof(int), "the tokenizer");
    t->table_mask = cap - 1;
    for (uint32_t i = 0; i < cap; i++) t->table[i] = -1;
    for (int id = 3; id < vocab_size; id++) {
        if (t->byte_of[id] >= 0 || t->len[id] == 0) continue;
        uint32_t i = hash_bytes(t->piece[id], t->len[id]) & t->table_mask;
        int dup = 0;
        for (; t->table[i] >= 0; i = (i + 1) & t->table_mask) {
            int o = t->table[i];
            if (t->len[o] == t->len[id] && memcmp(t->piece[o], t->piece[id], t->len[id]) == 0) { dup = 1; break; }
        }
        if (!dup) t->table[i] = id;
    }
}

static void free_tokenizer(Tokenizer *t) {
    free(t->blob); free(t->piece); free(t->len); free(t->scores); free(t->byte_of); free(t->table);
}


// A pair of symbols merges into the piece their bytes spell, unless either is a byte-fallback
// piece or unk (ids 0..2 and byte pieces are never in the table).
typedef struct { const Tokenizer *t; const unsigned char *text; } PromptText;

static int32_t merged_piece(const void *ctx, const Symbol *l, const Symbol *r, float *score) {
    const PromptText *p = ctx;
    const Tokenizer *t = p->t;
    if (l->id < 3 || r->id < 3 || t->byte_of[l->id] >= 0 || t->byte_of[r->id] >= 0) return -1;
    int id = lookup_piece(t, p->text + l->start, l->len + r->len);
    if (id >= 0) *score = t->scores[id];
    return id;
}

// Encodes text into tokens (room for strlen(text) + 3 ids); returns how many.
// Like sentencepiece with a BPE model and the identity normalizer (tokenizer.py refuses to
// export others): the normalized text's code points looked up, unknown ones spelled as
// byte-fallback pieces, then the merges of bpe.h.
static int encode(const Tokenizer *t, const char *input, int bos, int eos, int *tokens) {
    int n_tokens = 0;
    if (bos) tokens[n_tokens++] = BOS;
    size_t in_len = strlen(input);
    unsigned char *text = xcalloc(in_len + 2, 1, "the prompt");
    size_t n = bpe_normalize((const unsigned char *)input, in_len, text, t->add_dummy_prefix, t->remove_extra_whitespaces, " ", 1);
    Symbol *sym = xcalloc(n + 1, sizeof(Symbol), "the prompt");
    int nsym = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        int cl = utf8_char(text + i, n - i, &cp), id = lookup_piece(t, text + i, cl);
        for (int k = 0; k < (id >= 0 ? 1 : cl); k++, nsym++) { // unknown: its bytes' pieces, or unk (0)
            int b = t->byte_id[text[i + k]];
            sym[nsym] = (Symbol){id >= 0 ? id : b >= 0 ? b : 0, id >= 0 ? cl : 1, nsym - 1, nsym + 1, (int)(i + k)};
        }
        i += cl;
    }
    Candidate *heap = xcalloc(2 * (size_t)nsym + 1, sizeof(Candidate), "the prompt");
    if (nsym > 0) {
        sym[nsym - 1].next = -1;
        bpe_merge(sym, nsym, heap, merged_piece, &(PromptText){t, text});
        for (int i = 0; i >= 0; i = sym[i].next) tokens[n_tokens++] = sym[i].id;
    }
    if (eos) tokens[n_tokens++] = EOS;
    free(heap); free(sym); free(text);
    return n_tokens;
}

// ----------------------------------------------------------------------------
// printing: always valid UTF-8, never a raw control byte

// Bytes of byte-fallback tokens are held until their character is complete; a broken or cut
// sequence prints U+FFFD. Control characters other than \n and \t (C0, DEL, C1) are dropped,
// so a model cannot write terminal escape sequences.
typedef struct { unsigned char buf[4]; int len, need; } Utf8Printer;

static void put_replacement(void) { fputs("\xEF\xBF\xBD", stdout); }

static void put_byte(Utf8Printer *u, unsigned char b) {
    unsigned char lo = 0x80, hi = 0xBF;
    if (u->len == 0) {
        if (b < 0x80) {
            if (b == '\n' || b == '\t' || (b >= 0x20 && b != 0x7F)) putchar(b);
            return;
        }
        u->need = utf8_need(b, &lo, &hi);
        if (u->need == 0) { put_replacement(); return; }
        u->buf[u->len++] = b;
        return;
    }
    if (u->len == 1) utf8_need(u->buf[0], &lo, &hi);
    if (b < lo || b > hi) { // the sequence was cut: replace it, then start over with b
        put_replacement();
        u->len = 0;
        put_byte(u, b);
        return;
    }
    u->buf[u->len++] = b;
    if (u->len == u->need) {
        int c1_control = u->need == 2 && u->buf[0] == 0xC2 && u->buf[1] < 0xA0;
        if (!c1_control) fwrite(u->buf, 1, u->len, stdout);
        u->len = 0;
    }
}

static void flush_printer(Utf8Printer *u) {
    if (u->len > 0) put_replacement();
    u->len = 0;
    check_stdout();
}

// Prints the piece of `token` that follows `prev`.
static void print_piece(const Tokenizer *t, Utf8Printer *u, int prev, int token) {
    if (token < 0 || token >= t->vocab_size) return;
    if (t->byte_of[token] >= 0) { put_byte(u, (unsigned char)t->byte_of[token]); return; }
    const unsigned char *p = t->piece[token];
    int n = t->len[token];
    if (prev == BOS && n > 0 && p[0] == ' ' && (t->add_dummy_prefix || t->remove_extra_whitespaces)) {
        p++; n--; // sentencepiece drops the dummy prefix (and, with remove_extra_whitespaces, any leading space)
    }
    for (int i = 0; i < n; i++) put_byte(u, p[i]);
}
