/* llama2.h is not a header but the shared half of one C program: it holds function bodies and
   declares the Transformer API (build_transformer, free_transformer, transformer_config, forward,
   prefill_block) that the file including it must define. Include it once, from run.c or runq.c.

   llama2.h: the parts run.c (fp32) and runq.c (int8) share, so each of them only holds its
   weights, its matmul and its forward pass. Read run.c first; this file is, in order:
   errors and files (with a small mmap shim for Windows), the checkpoint header (validated),
   the Transformer API the two runners implement, the tokenizer (sentencepiece-exact BPE
   encoding), the UTF-8-safe printer, the sampler, the fp32 kernels both use (attention,
   rmsnorm, ...), the generate and chat loops, and the command line. It is included once, at
   the top of run.c or runq.c. */
#ifndef LLAMA2_H
#define LLAMA2_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <errno.h>
#include <limits.h>
#include <float.h>
#if defined _WIN32
#include <windows.h>
#include <shellapi.h>
#include <fcntl.h>
#include <io.h>
#else
#include <unistd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#include <stdatomic.h>
#endif

// ----------------------------------------------------------------------------
// errors: every user error is one line on stderr and exit code 1

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(EXIT_FAILURE);
}

static void *xcalloc(size_t n, size_t size, const char *what) {
    if (n == 0) n = 1;
    if (size != 0 && n > SIZE_MAX / size) die("out of memory allocating %s", what);
    void *p = calloc(n, size);
    if (!p) die("out of memory allocating %s (%zu bytes)", what, n * size);
    return p;
}

static double time_in_s(void) {
#if defined _WIN32
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
#endif
}

#if !defined _WIN32
// Opens a file that must be a regular file. O_NONBLOCK: opening a FIFO for reading would
// otherwise wait forever for a writer before fstat could tell what it is.
static int open_regular(const char *path, const char *what, struct stat *st) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) die("cannot open %s %s: %s", what, path, strerror(errno));
    if (fstat(fd, st) != 0) die("cannot read %s %s: %s", what, path, strerror(errno));
    if (S_ISDIR(st->st_mode)) die("%s %s is a folder, not a file", what, path);
    if (!S_ISREG(st->st_mode)) die("%s %s is not a regular file (a FIFO, socket or device?)", what, path);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}
#endif

// stdout is checked where output ends: a full disk or a closed pipe must not look like success.
static void check_stdout(void) {
    errno = 0;
    int failed = fflush(stdout) != 0;
    if (failed || ferror(stdout)) die("cannot write the output (%s)", failed && errno ? strerror(errno) : "disk full or pipe closed?");
}

// A read-only view of a whole file: mmap on POSIX, MapViewOfFile on Windows; on Linux a copy in
// memory backed by 2 MB pages (see load_huge_pages).
typedef struct {
    unsigned char *data;
    size_t size;
    size_t mapped; // bytes to munmap at data (POSIX)
#if defined _WIN32
    HANDLE file, mapping;
#endif
} MappedFile;

#if defined(__linux__) && defined(MADV_HUGEPAGE)
// Zeroed anonymous memory of at least bytes on a 2 MB boundary, advised to use transparent huge
// pages (it stays lazily allocated, like calloc's); NULL when there is no such memory. *mapped
// gets the length to munmap.
static unsigned char *map_huge(size_t bytes, size_t *mapped) {
    size_t huge = (size_t)2 << 20, len = (bytes + huge - 1) / huge * huge;
    unsigned char *base = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    unsigned char *p = base + (huge - (uintptr_t)base % huge) % huge; // the first 2 MB boundary
    if (p > base) munmap(base, (size_t)(p - base));
    if (p + len < base + len + huge) munmap(p + len, (size_t)(base + len + huge - (p + len)));
    madvise(p, len, MADV_HUGEPAGE);
    *mapped = len;
    return p;
}

// A generated token reads every weight once, so a model larger than the caches streams from memory
// and every 4 KB page of a plain file mapping costs a TLB miss: copying the file into anonymous
// memory backed by transparent huge pages (2 MB) made zh-110M 10-13% faster (run and runq, one
// thread, Ice Lake Xeon) for ~0.1 s more at load. Returns NULL where that is not possible or wise
// (THP off, LLAMA2_MMAP=1, a model larger than half the available memory, which a mapping can
// still page in from disk), and the caller maps the file as before.
static unsigned char *load_huge_pages(int fd, const char *path, size_t size, size_t *mapped) {
    const char *env = getenv("LLAMA2_MMAP");
    if (env && strcmp(env, "1") == 0) return NULL;
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char mode[128] = "";
    if (f) { if (!fgets(mode, sizeof mode, f)) mode[0] = 0; fclose(f); }
    if (!strstr(mode, "[always]") && !strstr(mode, "[madvise]")) return NULL;
    unsigned long long avail_kb = 0;
    char line[256];
    if ((f = fopen("/proc/meminfo", "r"))) {
        while (fgets(line, sizeof line, f)) if (sscanf(line, "MemAvailable: %llu kB", &avail_kb) == 1) break;
        fclose(f);
    }
    if (size / 1024 > avail_kb / 2) return NULL;
    unsigned char *p = map_huge(size, mapped);
    if (!p) return NULL;
    for (size_t done = 0; done < size;) {
        size_t chunk = size - done < ((size_t)1 << 30) ? size - done : ((size_t)1 << 30);
        ssize_t r = read(fd, p + done, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("cannot read model file %s: %s", path, strerror(errno));
        if (r == 0) die("model file %s got shorter while it was read", path);
        done += (size_t)r;
    }
    mprotect(p, *mapped, PROT_READ); // read-only, like the mapping
    return p;
}
#endif

#if defined _WIN32
// Paths arrive as UTF-8 (utf8_argv): the wide-character calls open them whatever the ANSI code page
// is, so a model in C:\Users\张三\下载 opens on a Chinese, English or any other Windows.
static wchar_t *wide_path(const char *path) {
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, NULL, 0);
    if (n <= 0) die("the path %s is not valid UTF-8", path);
    wchar_t *w = xcalloc((size_t)n, sizeof(wchar_t), "a path");
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, w, n);
    return w;
}

static HANDLE open_windows(const char *path) {
    wchar_t *w = wide_path(path);
    HANDLE h = CreateFileW(w, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    free(w);
    return h;
}
#endif

static void map_file(MappedFile *m, const char *path) {
#if defined _WIN32
    m->file = open_windows(path);
    if (m->file == INVALID_HANDLE_VALUE) die("cannot open model file %s", path);
    if (GetFileType(m->file) != FILE_TYPE_DISK) die("model file %s is not a regular file (a pipe or device?)", path);
    LARGE_INTEGER sz;
    if (!GetFileSizeEx(m->file, &sz)) die("cannot read the size of %s", path);
    m->size = (size_t)sz.QuadPart;
    if (m->size == 0) die("model file %s is empty", path);
    m->mapping = CreateFileMappingA(m->file, NULL, PAGE_READONLY, 0, 0, NULL);
    if (!m->mapping) die("cannot map model file %s", path);
    m->data = (unsigned char *)MapViewOfFile(m->mapping, FILE_MAP_READ, 0, 0, 0);
    if (!m->data) die("cannot map model file %s", path);
#else
    struct stat st;
    int fd = open_regular(path, "model file", &st);
    m->size = (size_t)st.st_size;
    if (m->size == 0) die("model file %s is empty", path);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    m->data = load_huge_pages(fd, path, m->size, &m->mapped);
    if (m->data) { close(fd); return; }
#endif
    int prot = PROT_READ;
#ifdef __EMSCRIPTEN__
    prot |= PROT_WRITE; // a private copy either way; the browser build reorders the weights in it (tile_order)
#endif
    void *p = mmap(NULL, m->size, prot, MAP_PRIVATE, fd, 0);
    close(fd);  // the mapping stays valid
    if (p == MAP_FAILED) die("cannot mmap model file %s: %s", path, strerror(errno));
    m->data = (unsigned char *)p;
    m->mapped = m->size;
#endif
}

static void unmap_file(MappedFile *m) {
    if (!m->data) return;
#if defined _WIN32
    UnmapViewOfFile(m->data);
    CloseHandle(m->mapping);
    CloseHandle(m->file);
#else
    munmap(m->data, m->mapped);
#endif
    m->data = NULL;
}

static int32_t read_i32(const unsigned char *p) { int32_t v; memcpy(&v, p, 4); return v; }

// ----------------------------------------------------------------------------
// checkpoint header (byte layouts in FORMATS.md), validated before anything is read

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
        h->header_bytes = 256;
    } else {
        if (size < 28) die("%s: truncated header (%zu bytes)", path, size);
        for (int i = 0; i < 7; i++) f[i] = read_i32(data + 4 * i);
        h->version = 0;
        // a negative vocab_size marks an unshared classifier in version 0
        h->shared_classifier = f[5] > 0;
        if (f[5] < 0 && f[5] != INT32_MIN) f[5] = -f[5];
        h->header_bytes = 28;
    }
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

// NaN or inf in the bits, so that -ffast-math builds (which assume finite floats) check it too
static int is_finite_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (u & 0x7F800000u) != 0x7F800000u;
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

// ----------------------------------------------------------------------------
// the Transformer API that run.c and runq.c implement

// Each runner's struct Transformer begins with its Config (they check it with TRANSFORMER_CONFIG_FIRST).
typedef struct Transformer Transformer;
static Transformer *build_transformer(const char *checkpoint_path);
static void free_transformer(Transformer *t);
static const Config *transformer_config(const Transformer *t) { return (const Config *)(const void *)t; }
#define TRANSFORMER_CONFIG_FIRST \
    _Static_assert(offsetof(Transformer, config) == 0, "struct Transformer must begin with its Config")
// Runs tokens[0..n) at positions pos..pos+n-1 (filling the KV cache) and returns the logits
// after the last one. n is at most prefill_block().
static float *forward(Transformer *t, const int *tokens, int n, int pos);
// The same, returning the logits of all n tokens (n rows of vocab_size), for scoring a text.
static float *forward_all(Transformer *t, const int *tokens, int n, int pos);
static int prefill_block(const Transformer *t); // PREFILL_BLOCK in both runners

// ----------------------------------------------------------------------------
// tokenizer: byte-pair encoding exactly as sentencepiece does it

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

// Length of the UTF-8 sequence starting at s (at most n bytes), or 1 for an invalid byte.
static int utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    int need = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (need <= 1 || (size_t)need > n) return 1;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c == 0xE0) lo = 0xA0; else if (c == 0xED) hi = 0x9F; else if (c == 0xF0) lo = 0x90; else if (c == 0xF4) hi = 0x8F;
    if (s[1] < lo || s[1] > hi) return 1;
    for (int i = 2; i < need; i++) if (s[i] < 0x80 || s[i] > 0xBF) return 1;
    return need;
}

// One BPE symbol: a span of the normalized text, linked to its neighbours.
typedef struct { int start, len, id, prev, next, mergeable; } Symbol;
// A candidate merge of symbol `left` with its right neighbour; stale once either changed.
typedef struct { float score; int left, len_left, len_right, id; } Merge;

static int merge_before(const Merge *a, const Merge *b) { // higher score first, then leftmost
    if (a->score != b->score) return a->score > b->score;
    return a->left < b->left;
}

static void heap_push(Merge *heap, int *n, Merge m) {
    int i = (*n)++;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!merge_before(&m, &heap[parent])) break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = m;
}

static Merge heap_pop(Merge *heap, int *n) {
    Merge top = heap[0], last = heap[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && merge_before(&heap[c + 1], &heap[c])) c++;
        if (!merge_before(&heap[c], &last)) break;
        heap[i] = heap[c];
        i = c;
    }
    if (*n > 0) heap[i] = last;
    return top;
}

static void push_pair(const Tokenizer *t, const unsigned char *text, const Symbol *sym, int left, Merge *heap, int *nheap) {
    if (left < 0) return;
    int right = sym[left].next;
    if (right < 0 || !sym[left].mergeable || !sym[right].mergeable) return;
    int id = lookup_piece(t, text + sym[left].start, sym[left].len + sym[right].len);
    if (id < 0) return;
    Merge m = {t->scores[id], left, sym[left].len, sym[right].len, id};
    heap_push(heap, nheap, m);
}

// sentencepiece's identity normalizer, writing spaces where it writes "▁" (as the pieces in the
// .bin do): a typed "▁" is a space too; the dummy prefix when there is text; with
// remove_extra_whitespaces no leading spaces, one per run of typed spaces, no trailing ones at
// all. Writes at most n + 1 bytes to out; returns how many.
static size_t normalize(const Tokenizer *t, const unsigned char *in, size_t n, unsigned char *out) {
    size_t i = 0, m = 0;
    int extra = t->remove_extra_whitespaces, prev_space = 0;
    if (extra) while (i < n && in[i] == ' ') i++;
    if (i == n) return 0;
    if (t->add_dummy_prefix) out[m++] = ' ';
    while (i < n) {
        if (in[i] == ' ') {
            if (!(extra && prev_space)) out[m++] = ' ';
            prev_space = 1;
            i++;
            continue;
        }
        prev_space = 0;
        if (n - i >= 3 && in[i] == 0xE2 && in[i + 1] == 0x96 && in[i + 2] == 0x81) { out[m++] = ' '; i += 3; }
        else out[m++] = in[i++];
    }
    if (extra) while (m > 0 && out[m - 1] == ' ') m--;
    return m;
}

// Encodes text into tokens (room for strlen(text) + 3 ids); returns how many.
// Like sentencepiece with a BPE model and the identity normalizer (tokenizer.py refuses to
// export others): the normalized text's code points looked up, unknown ones spelled as
// byte-fallback pieces, then the highest-scoring adjacent merge first (leftmost on ties),
// with a heap of candidate merges so long prompts stay O(n log n).
static int encode(const Tokenizer *t, const char *input, int bos, int eos, int *tokens) {
    int n_tokens = 0;
    if (bos) tokens[n_tokens++] = BOS;
    size_t in_len = strlen(input);
    unsigned char *text = xcalloc(in_len + 2, 1, "the prompt");
    size_t n = normalize(t, (const unsigned char *)input, in_len, text);
    Symbol *sym = xcalloc(n + 1, sizeof(Symbol), "the prompt");
    int nsym = 0;
    for (size_t i = 0; i < n;) {
        int cl = utf8_len(text + i, n - i);
        int id = lookup_piece(t, text + i, cl);
        if (id >= 0) {
            sym[nsym] = (Symbol){(int)i, cl, id, nsym - 1, nsym + 1, 1};
            nsym++;
        } else {
            for (int k = 0; k < cl; k++) {
                int b = t->byte_id[text[i + k]];
                sym[nsym] = (Symbol){(int)(i + k), 1, b >= 0 ? b : 0, nsym - 1, nsym + 1, 0}; // 0 = unk
                nsym++;
            }
        }
        i += cl;
    }
    if (nsym > 0) sym[nsym - 1].next = -1;
    Merge *heap = xcalloc(2 * (size_t)nsym + 1, sizeof(Merge), "the prompt");
    int nheap = 0;
    for (int i = 0; i + 1 < nsym; i++) push_pair(t, text, sym, i, heap, &nheap);
    while (nheap > 0) {
        Merge m = heap_pop(heap, &nheap);
        Symbol *l = &sym[m.left];
        if (l->len != m.len_left || l->next < 0 || sym[l->next].len != m.len_right) continue; // stale
        Symbol *r = &sym[l->next];
        l->len += r->len;
        l->id = m.id;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = m.left;
        r->len = 0; // dead: any merge naming it is stale
        push_pair(t, text, sym, l->prev, heap, &nheap);
        push_pair(t, text, sym, m.left, heap, &nheap);
    }
    for (int i = nsym > 0 ? 0 : -1; i >= 0; i = sym[i].next) tokens[n_tokens++] = sym[i].id;
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
    if (u->len == 0) {
        if (b < 0x80) {
            if (b == '\n' || b == '\t' || (b >= 0x20 && b != 0x7F)) putchar(b);
            return;
        }
        u->need = (b >= 0xC2 && b <= 0xDF) ? 2 : (b >= 0xE0 && b <= 0xEF) ? 3 : (b >= 0xF0 && b <= 0xF4) ? 4 : 0;
        if (u->need == 0) { put_replacement(); return; }
        u->buf[u->len++] = b;
        return;
    }
    unsigned char c = u->buf[0], lo = 0x80, hi = 0xBF;
    if (u->len == 1) {
        if (c == 0xE0) lo = 0xA0; else if (c == 0xED) hi = 0x9F; else if (c == 0xF0) lo = 0x90; else if (c == 0xF4) hi = 0x8F;
    }
    if (b < lo || b > hi) { // the sequence was cut: replace it, then start over with b
        put_replacement();
        u->len = 0;
        put_byte(u, b);
        return;
    }
    u->buf[u->len++] = b;
    if (u->len == u->need) {
        int c1_control = u->need == 2 && c == 0xC2 && u->buf[1] < 0xA0;
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

// ----------------------------------------------------------------------------
// sampler: the original runner's, so the same seed gives the same story

typedef struct { float prob; int index; } ProbIndex;

typedef struct {
    int vocab_size;
    ProbIndex *probindex; // buffer used in top-p sampling
    float temperature;
    float topp;
    unsigned long long rng_state;
} Sampler;

static void softmax(float *x, int size) {
    float max_val = x[0];
    for (int i = 1; i < size; i++) if (x[i] > max_val) max_val = x[i];
    float sum = 0.0f;
    for (int i = 0; i < size; i++) { x[i] = expf(x[i] - max_val); sum += x[i]; }
    for (int i = 0; i < size; i++) x[i] /= sum;
}

static int sample_argmax(const float *p, int n) {
    int max_i = 0; // the first maximum wins
    float max_p = p[0];
    for (int i = 1; i < n; i++) if (p[i] > max_p) { max_i = i; max_p = p[i]; }
    return max_i;
}

static int sample_mult(const float *p, int n, float coin) {
    float cdf = 0.0f;
    for (int i = 0; i < n; i++) { cdf += p[i]; if (coin < cdf) return i; }
    return n - 1; // in case of rounding errors
}

static int compare_prob(const void *a, const void *b) {
    const ProbIndex *x = a, *y = b;
    if (x->prob > y->prob) return -1;
    if (x->prob < y->prob) return 1;
    return 0;
}

static int sample_topp(const float *p, int n, float topp, ProbIndex *probindex, float coin) {
    // tokens below this cutoff can never be part of the nucleus; dropping them makes the sort short
    int n0 = 0;
    const float cutoff = (1.0f - topp) / (n - 1);
    for (int i = 0; i < n; i++) if (p[i] >= cutoff) { probindex[n0].index = i; probindex[n0].prob = p[i]; n0++; }
    // with topp < 1/n a nearly flat distribution keeps nothing: its tokens are all alike, draw from all
    if (n0 == 0) return sample_mult(p, n, coin);
    qsort(probindex, n0, sizeof(ProbIndex), compare_prob);
    float cumulative_prob = 0.0f;
    int last_idx = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cumulative_prob += probindex[i].prob;
        if (cumulative_prob > topp) { last_idx = i; break; }
    }
    float r = coin * cumulative_prob;
    float cdf = 0.0f;
    for (int i = 0; i <= last_idx; i++) { cdf += probindex[i].prob; if (r < cdf) return probindex[i].index; }
    return probindex[last_idx].index;
}

static void build_sampler(Sampler *s, int vocab_size, float temperature, float topp, unsigned long long rng_seed) {
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->topp = topp;
    s->rng_state = rng_seed;
    s->probindex = xcalloc(vocab_size, sizeof(ProbIndex), "the sampler");
}

static void free_sampler(Sampler *s) { free(s->probindex); }

static unsigned int random_u32(unsigned long long *state) { // xorshift rng
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (*state * 0x2545F4914F6CDD1Dull) >> 32;
}

static float random_f32(unsigned long long *state) { return (random_u32(state) >> 8) / 16777216.0f; }

// Debug hook: with LLAMA2_LOGITS=path every sampled step appends (int32 pos, float32[vocab] logits).
static FILE *logits_dump;

static int sample(Sampler *s, float *logits, int pos) {
    if (logits_dump) {
        int32_t p = pos;
        fwrite(&p, 4, 1, logits_dump);
        fwrite(logits, sizeof(float), s->vocab_size, logits_dump);
    }
    float max_abs = 0.0f;
    for (int q = 0; q < s->vocab_size; q++) {
        if (!is_finite_bits(logits[q]))
            die("the model produced non-finite logits at position %d (NaN or inf weights in the model file?)", pos);
        max_abs = fabsf(logits[q]) > max_abs ? fabsf(logits[q]) : max_abs;
    }
    if (s->temperature == 0.0f) return sample_argmax(logits, s->vocab_size);
    if ((double)max_abs / s->temperature > FLT_MAX) { // logits / temperature would overflow to inf
        random_f32(&s->rng_state); // the coin is drawn as on any other step
        return sample_argmax(logits, s->vocab_size); // the limit of a tiny temperature
    }
    for (int q = 0; q < s->vocab_size; q++) logits[q] /= s->temperature;
    softmax(logits, s->vocab_size);
    float coin = random_f32(&s->rng_state);
    if (s->topp <= 0 || s->topp >= 1) return sample_mult(logits, s->vocab_size, coin);
    return sample_topp(logits, s->vocab_size, s->topp, s->probindex, coin);
}

// ----------------------------------------------------------------------------
// fp32 kernels both runners use. Each kernel opens with its portable loop, the reference; the
// SIMD code below it is compiled for the target the compiler was given (make run: -march=native)
// and tested against that loop. -DLLAMA2_SCALAR (or make runportable) keeps only the loops.
//   x86-64 AVX2+FMA: 8 floats a vector; AVX-512 (F/BW/VL): the matmul tiles 16 floats a vector
//   aarch64 NEON: 4 floats a vector in the matmul tiles and dot(); the rest runs the loops
//   WebAssembly SIMD128 (make web): 4 floats a vector, no FMA
// The matmul tiles (run.c, runq.c) are written once over the few vector operations defined
// here per ISA: vf (a vector of VF floats), vf_zero, vf_load, vf_fma (a*b+c, one rounding), vf_sum.

#if !defined(LLAMA2_SCALAR) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define USE_AVX2 1
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define USE_AVX512 1
#endif
#elif !defined(LLAMA2_SCALAR) && defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define USE_NEON 1
#endif

#ifdef USE_AVX2
static inline float hsum8(__m256 acc) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

// WebAssembly SIMD128 (make web: emcc -msimd128): 4 floats a vector and no FMA, so a*b+c is a
// multiply and an add; the tests compare it with the portable path like the AVX2 one.
#if defined(__wasm_simd128__) && !defined(LLAMA2_SCALAR)
#include <wasm_simd128.h>
#define USE_WASM_SIMD 1

static inline float hsum4(v128_t acc) {
    return wasm_f32x4_extract_lane(acc, 0) + wasm_f32x4_extract_lane(acc, 1) +
           wasm_f32x4_extract_lane(acc, 2) + wasm_f32x4_extract_lane(acc, 3);
}

// The browser build's weight order (run.c, runq.c): each full tile of 4 rows of a matrix is
// rewritten in place, 16 bytes of each row in turn (row i bytes k..k+15, row i+1 bytes k..k+15,
// i+2, i+3, then k+16...), so that the wasm matmul tile reads it as one stream instead of 4 a row
// apart. WebAssembly has no prefetch instruction, and the hardware prefetcher follows one stream
// well where it follows four badly: in Chromium the loads of rows 1-3 stalled (zh-15M, 6 alternating
// page loads: int8 faster in every pair by 6-44%, fp32 by 4-13%). The last rows (< 4) stay in row
// order. row_bytes is a multiple of 16; the matrix is map_file's private, writable copy.
static void tile_order(void *matrix, size_t rows, size_t row_bytes) {
    unsigned char *m = matrix, *rows4 = xcalloc(4, row_bytes, "the weights");
    for (size_t i = 0; i + 4 <= rows; i += 4, m += 4 * row_bytes) {
        memcpy(rows4, m, 4 * row_bytes);
        for (size_t k = 0; k < row_bytes; k += 16)
            for (int r = 0; r < 4; r++) memcpy(m + 4 * k + 16 * r, rows4 + r * row_bytes + k, 16);
    }
    free(rows4);
}
#endif

// --- x86-64 AVX-512
#if defined(USE_AVX512)
typedef __m512 vf;
#define VF 16
#define vf_zero() _mm512_setzero_ps()
#define vf_load(p) _mm512_loadu_ps(p)
#define vf_fma(a, b, c) _mm512_fmadd_ps(a, b, c)
static inline float vf_sum(__m512 v) {
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}
// --- x86-64 AVX2+FMA
#elif defined(USE_AVX2)
typedef __m256 vf;
#define VF 8
#define vf_zero() _mm256_setzero_ps()
#define vf_load(p) _mm256_loadu_ps(p)
#define vf_fma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vf_sum(v) hsum8(v)
// --- aarch64 NEON
#elif defined(USE_NEON)
typedef float32x4_t vf;
#define VF 4
#define vf_zero() vdupq_n_f32(0.0f)
#define vf_load(p) vld1q_f32(p)
#define vf_fma(a, b, c) vfmaq_f32(c, a, b)
#define vf_sum(v) vaddvq_f32(v)
// --- WebAssembly SIMD128 (no FMA: a multiply and an add)
#elif defined(USE_WASM_SIMD)
typedef v128_t vf;
#define VF 4
#define vf_zero() wasm_f32x4_splat(0.0f)
#define vf_load(p) wasm_v128_load(p)
#define vf_fma(a, b, c) wasm_f32x4_add(c, wasm_f32x4_mul(a, b))
#define vf_sum(v) hsum4(v)
#endif

// The matmul tiles (run.c, runq.c; 4 rows each) prefetch the tile PREFETCH_ROWS rows ahead while
// they work, but not past the end of the matrix: the thread that ends one would read those rows
// for nothing (~4% of a 2-thread half of a dim x dim matrix).
#define PREFETCH_ROWS 16
static inline int prefetch_ahead(int i, int d) { return i + PREFETCH_ROWS + 4 <= d; }

// With one thread the kernels skip OpenMP: even a team of one costs about 0.3 us a parallel
// region, and a small model's token runs ~50 of them. (An `if (use_threads())` clause on the
// pragma still enters the runtime: measured 8% slower on zh-15M, so the loops are written twice.)
static int use_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads() > 1;
#else
    return 0;
#endif
}

#ifdef _OPENMP
// The threads' share of a matmul. Its tiles (4 rows each) are dealt out as schedule(static) deals
// them, one contiguous part per thread, and each thread streams its part from the front,
// SHARE_BATCH tiles at a time; a thread whose part is done then takes batches from the back of the
// others' parts. Two threads rarely run at the same speed (on a VM the neighbours decide), and the
// one that waits at the end of a matmul leaves its half of the memory bandwidth unused: this made
// a zh-110M int8 token 0.4-3.8% faster at 2 threads (Ice Lake, alternating tokens in one run), where
// schedule(dynamic) was 15% slower (chunks in turn break each thread's stream). A tile goes to
// exactly one thread and is computed the same way by any of them, so the results do not change.
#define SHARE_BATCH 4
#define MAX_SHARES 256
typedef struct { _Alignas(64) _Atomic uint64_t range; } Share; // (end << 32) | next tile, one cache line each
static Share shares[MAX_SHARES];
static int n_shares;

// Deals tiles 0..n-1 out to the threads, before the parallel region.
static void share_tiles(int n) {
    int nt = omp_get_max_threads();
    n_shares = nt < MAX_SHARES ? nt : MAX_SHARES;
    for (int k = 0; k < n_shares; k++)
        atomic_store_explicit(&shares[k].range, (uint64_t)n * (k + 1) / n_shares << 32 | (uint64_t)n * k / n_shares,
                              memory_order_relaxed);
}

// Takes the next batch of share s, from the front or from the back, as tiles [*a, *b); 0 when it is empty.
static int share_take(Share *s, int back, int *a, int *b) {
    uint64_t v = atomic_load_explicit(&s->range, memory_order_relaxed);
    for (;;) {
        uint32_t next = (uint32_t)v, end = (uint32_t)(v >> 32);
        if (next >= end) return 0;
        uint32_t k = end - next < SHARE_BATCH ? end - next : SHARE_BATCH;
        *a = (int)(back ? end - k : next);
        *b = *a + (int)k;
        uint64_t left = back ? (uint64_t)(end - k) << 32 | next : (uint64_t)end << 32 | (next + k);
        if (atomic_compare_exchange_weak_explicit(&s->range, &v, left, memory_order_relaxed, memory_order_relaxed))
            return 1;
    }
}

// The calling thread's next batch of tiles [*a, *b): from its own part, then from the others'.
static int share_next(int *a, int *b) {
    int me = omp_get_thread_num();
    for (int o = 0; o < n_shares; o++)
        if (share_take(&shares[(me + o) % n_shares], o > 0, a, b)) return 1;
    return 0;
}
#endif

static float dot(const float *a, const float *b, int n) {
    float val = 0.0f;
    int j = 0;
#ifdef VF
    vf acc = vf_zero();
    for (; j + VF <= n; j += VF) acc = vf_fma(vf_load(a + j), vf_load(b + j), acc);
    val = vf_sum(acc);
#endif
    for (; j < n; j++) val += a[j] * b[j];
    return val;
}

// How far ahead (in positions) attention prefetches the keys and values of a head: with it the
// attention of a zh-110M token took 6-8% less time at 1 and 2 threads (position < 256).
#define ATTN_PREFETCH 16

// att[j] = q . k_j / sqrt(n) for the npos keys k_j = k + j * stride: attention's scores.
static void attention_scores(float *att, const float *q, const float *k, size_t stride, int npos, int n) {
    float sqrt_n = sqrtf((float)n);
    int j = 0;
#ifdef USE_AVX2
    // 8 keys at a time, so their 8 horizontal sums share one transpose-and-add
    for (; n % 8 == 0 && j + 8 <= npos; j += 8) {
        // the keys ATTN_PREFETCH positions ahead: a head's keys are a short stream (32 KB at
        // position 128 of zh-110M) that the hardware prefetcher picks up late
        if (j + ATTN_PREFETCH + 8 <= npos)
            for (size_t f = 0; f < 8 * stride; f += 16) __builtin_prefetch(k + (j + ATTN_PREFETCH) * stride + f);
        __m256 acc[8];
        for (int p = 0; p < 8; p++) acc[p] = _mm256_setzero_ps();
        for (int c = 0; c < n; c += 8) {
            __m256 qv = _mm256_loadu_ps(q + c);
            for (int p = 0; p < 8; p++) acc[p] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + (j + p) * stride + c), acc[p]);
        }
        __m256 s0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
        __m256 s1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
        __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31));
        _mm256_storeu_ps(att + j, _mm256_div_ps(s, _mm256_set1_ps(sqrt_n)));
    }
#elif defined(USE_WASM_SIMD)
    // 4 keys at a time sharing each load of q; each key's sum is dot()'s (lanes, then
    // ((l0 + l1) + l2) + l3), done for the 4 keys at once after a transpose: the same bits
    for (; n % 4 == 0 && j + 4 <= npos; j += 4) {
        v128_t acc[4];
        for (int p = 0; p < 4; p++) acc[p] = wasm_f32x4_splat(0.0f);
        for (int c = 0; c < n; c += 4) {
            v128_t qv = wasm_v128_load(q + c);
            for (int p = 0; p < 4; p++) acc[p] = wasm_f32x4_add(acc[p], wasm_f32x4_mul(qv, wasm_v128_load(k + (j + p) * stride + c)));
        }
        v128_t t01lo = wasm_i32x4_shuffle(acc[0], acc[1], 0, 4, 1, 5), t01hi = wasm_i32x4_shuffle(acc[0], acc[1], 2, 6, 3, 7);
        v128_t t23lo = wasm_i32x4_shuffle(acc[2], acc[3], 0, 4, 1, 5), t23hi = wasm_i32x4_shuffle(acc[2], acc[3], 2, 6, 3, 7);
        v128_t l0 = wasm_i32x4_shuffle(t01lo, t23lo, 0, 1, 4, 5), l1 = wasm_i32x4_shuffle(t01lo, t23lo, 2, 3, 6, 7);
        v128_t l2 = wasm_i32x4_shuffle(t01hi, t23hi, 0, 1, 4, 5), l3 = wasm_i32x4_shuffle(t01hi, t23hi, 2, 3, 6, 7);
        v128_t s = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_add(l0, l1), l2), l3);
        wasm_v128_store(att + j, wasm_f32x4_div(s, wasm_f32x4_splat(sqrt_n)));
    }
#endif
    for (; j < npos; j++) att[j] = dot(q, k + j * stride, n) / sqrt_n;
}

#ifdef USE_AVX2
// e^x, 8 at a time, with x clamped to [-87, 88] (e^-87 is 0 next to the 1 of a softmax's max,
// e^88 is near FLT_MAX): x = n ln2 + r with |r| <= ln2/2, e^r by Cephes' expf polynomial, 2^n
// through the exponent bits.
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); // ln2 in two parts, for precision
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// The first k (0..8) of 8 lanes, for the masked loads and stores of a row's last partial block:
// every element of a row then goes through the same exp8.
static inline __m256i first_lanes(int k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

// softmax of attention scores: softmax() with 8 exponentials at a time
static void attention_softmax(float *x, int size) {
#ifdef USE_AVX2
    float max_val = x[0];
    for (int i = 1; i < size; i++) if (x[i] > max_val) max_val = x[i];
    __m256 sum = _mm256_setzero_ps(), mv = _mm256_set1_ps(max_val);
    int i = 0;
    for (; i + 8 <= size; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m256i m = first_lanes(size - i); // the last partial block (masked stores are slow: only here)
    if (i < size) {
        __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), mv)), _mm256_castsi256_ps(m));
        _mm256_maskstore_ps(x + i, m, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m256 s = _mm256_set1_ps(hsum8(sum));
    for (i = 0; i + 8 <= size; i += 8) _mm256_storeu_ps(x + i, _mm256_div_ps(_mm256_loadu_ps(x + i), s));
    if (i < size) _mm256_maskstore_ps(x + i, m, _mm256_div_ps(_mm256_maskload_ps(x + i, m), s));
#else
    softmax(x, size);
#endif
}

#ifdef USE_AVX2
// NB blocks of 8 output columns of mix_values, in registers over one pass of the positions.
static inline __attribute__((always_inline)) void mix_columns(float *out, const float *att, const float *v,
                                                              size_t stride, int npos, int NB) {
    __m256 acc[8];
    for (int b = 0; b < NB; b++) acc[b] = _mm256_setzero_ps();
    for (int j = 0; j < npos; j++) {
        if (j + ATTN_PREFETCH < npos) // the values ahead, as attention_scores does the keys
            for (int f = 0; f < 8 * NB; f += 16) __builtin_prefetch(v + (j + ATTN_PREFETCH) * stride + f);
        __m256 a = _mm256_set1_ps(att[j]);
        for (int b = 0; b < NB; b++) acc[b] = _mm256_fmadd_ps(a, _mm256_loadu_ps(v + j * stride + 8 * b), acc[b]);
    }
    for (int b = 0; b < NB; b++) _mm256_storeu_ps(out + 8 * b, acc[b]);
}
#endif

// out[0..n) = sum over j < npos of att[j] * v[j * stride + 0..n): attention's weighted values.
static void mix_values(float *out, const float *att, const float *v, size_t stride, int npos, int n) {
    int c = 0;
#ifdef USE_AVX2
    for (; c + 64 <= n; c += 64) mix_columns(out + c, att, v + c, stride, npos, 8);
    switch ((n - c) / 8) { // the rest of a head (48 floats in zh-15M) in one pass too
        case 7: mix_columns(out + c, att, v + c, stride, npos, 7); break;
        case 6: mix_columns(out + c, att, v + c, stride, npos, 6); break;
        case 5: mix_columns(out + c, att, v + c, stride, npos, 5); break;
        case 4: mix_columns(out + c, att, v + c, stride, npos, 4); break;
        case 3: mix_columns(out + c, att, v + c, stride, npos, 3); break;
        case 2: mix_columns(out + c, att, v + c, stride, npos, 2); break;
        case 1: mix_columns(out + c, att, v + c, stride, npos, 1); break;
    }
    c += (n - c) / 8 * 8;
#elif defined(USE_WASM_SIMD)
    // one column a lane, each summed in the loop's order with a multiply and an add: the loop's bits
    for (; c + 16 <= n; c += 16) {
        v128_t acc[4];
        for (int b = 0; b < 4; b++) acc[b] = wasm_f32x4_splat(0.0f);
        for (int j = 0; j < npos; j++) {
            v128_t a = wasm_f32x4_splat(att[j]);
            for (int b = 0; b < 4; b++) acc[b] = wasm_f32x4_add(acc[b], wasm_f32x4_mul(a, wasm_v128_load(v + j * stride + c + 4 * b)));
        }
        for (int b = 0; b < 4; b++) wasm_v128_store(out + c + 4 * b, acc[b]);
    }
    for (; c + 4 <= n; c += 4) {
        v128_t acc = wasm_f32x4_splat(0.0f);
        for (int j = 0; j < npos; j++) acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_splat(att[j]), wasm_v128_load(v + j * stride + c)));
        wasm_v128_store(out + c, acc);
    }
#endif
    for (; c < n; c++) {
        float val = 0.0f;
        for (int j = 0; j < npos; j++) val += att[j] * v[j * stride + c];
        out[c] = val;
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

#ifdef USE_AVX2
// silu(val) * val2 for 8 values
static inline __m256 swiglu8(__m256 val, __m256 val2) {
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 sigmoid = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), val))));
    return _mm256_mul_ps(_mm256_mul_ps(val, sigmoid), val2);
}
#endif

// hb = silu(hb) * hb2, the SwiGLU of the ffn
static void swiglu(float *hb, const float *hb2, size_t n) {
#ifdef USE_AVX2
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(hb + i, swiglu8(_mm256_loadu_ps(hb + i), _mm256_loadu_ps(hb2 + i)));
    if (i < n) { // the last partial block, masked
        __m256i m = first_lanes((int)(n - i));
        _mm256_maskstore_ps(hb + i, m, swiglu8(_mm256_maskload_ps(hb + i, m), _mm256_maskload_ps(hb2 + i, m)));
    }
#else
    for (size_t i = 0; i < n; i++) {
        float val = hb[i];
        val *= (1.0f / (1.0f + expf(-val))); // silu(x) = x * sigmoid(x)
        hb[i] = val * hb2[i];
    }
#endif
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

// ----------------------------------------------------------------------------
// the activations and KV cache of the forward pass, fp32 in both runners

#define PREFILL_BLOCK 64 // prompt tokens per forward pass (matrix x matrix)
static int prefill_block(const Transformer *t) { (void)t; return PREFILL_BLOCK; }

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

// A KV cache, read up to the current position at every token: in 2 MB pages where Linux has them
// (zh-110M runq, one thread, Ice Lake: +1-5% in alternating runs; the cache is a tenth of what a
// token reads there).
static float *alloc_cache(size_t n, size_t *mapped) {
    *mapped = 0;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    float *p = n <= SIZE_MAX / sizeof(float) ? (float *)(void *)map_huge(n * sizeof(float), mapped) : NULL;
    if (p) return p;
#endif
    return xcalloc(n, sizeof(float), "the KV cache");
}

static void free_cache(float *p, size_t mapped) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (mapped) { munmap(p, mapped); return; }
#endif
    (void)mapped;
    free(p);
}

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
    s->key_cache = alloc_cache((size_t)p->n_layers * p->seq_len * kv_dim, &s->key_mapped);
    s->value_cache = alloc_cache((size_t)p->n_layers * p->seq_len * kv_dim, &s->value_mapped);
    build_rope(p, &s->rope_cos, &s->rope_sin);
}

static void free_state(RunState *s) {
    free(s->arena); free(s->rope_cos); free(s->rope_sin);
    free_cache(s->key_cache, s->key_mapped);
    free_cache(s->value_cache, s->value_mapped);
}

// Head h of attention for T tokens at positions pos..pos+T-1 (their keys and values already in the cache).
static void attention_head(float *out, const float *q, const float *key_cache, const float *value_cache, float *att_buf,
                           const Config *p, int T, int pos, int h) {
    int dim = p->dim, head_size = dim / p->n_heads;
    int kv_mul = p->n_heads / p->n_kv_heads; // query heads per key/value head (multiquery)
    size_t head_cache = (size_t)p->seq_len * head_size; // floats per head in a layer's cache
    const float *kh = key_cache + (h / kv_mul) * head_cache, *vh = value_cache + (h / kv_mul) * head_cache;
    for (int t = 0; t < T; t++) {
        const float *qh = q + (size_t)t * dim + h * head_size;
        float *att = att_buf + ((size_t)t * p->n_heads + h) * p->seq_len;
        int last = pos + t; // token t sees positions 0..pos+t
        attention_scores(att, qh, kh, head_size, last + 1, head_size);
        attention_softmax(att, last + 1);
        mix_values(out + (size_t)t * dim + h * head_size, att, vh, head_size, last + 1, head_size);
    }
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
        // RoPE, head by head: pair (j, j+1) of a head turns by angle j/2 of the position. The
        // original's one loop over dim takes i % head_size and i / head_size for every pair, and
        // those divisions cost more than the rotations (zh-110M: 60 us a token, 1% at 2 threads).
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

// ----------------------------------------------------------------------------
// generation loop

// A story in steps, so ./run's loop and the browser's (web.c) are the same code: start encodes
// the prompt, runs it through the model and prints it; each next samples, prints and feeds one
// token; end flushes the printer.
typedef struct {
    Transformer *tr;
    const Tokenizer *tok;
    Sampler *sampler;
    int *tokens;         // the prompt, BOS first
    int n, np;           // prompt tokens, and how many of them run (at most steps)
    int steps, pos, token, generated, done;
    float *logits;       // the logits the next token is sampled from
    Utf8Printer out;
    double t_start, t_prompt, t_end; // prompt start, prompt end (first sample), end
} Generation;

static void generation_start(Generation *g, Transformer *tr, const Tokenizer *tok, Sampler *sampler,
                             const char *prompt, int steps) {
    memset(g, 0, sizeof(*g));
    g->tr = tr; g->tok = tok; g->sampler = sampler; g->steps = steps;
    const Config *c = transformer_config(tr);
    g->tokens = xcalloc(strlen(prompt) + 3, sizeof(int), "the prompt");
    int n = g->n = encode(tok, prompt, 1, 0, g->tokens);
    if (n > c->seq_len) die("the prompt is %d tokens, longer than the model's context of %d", n, c->seq_len);
    // the prompt goes through the model in blocks (matrix x matrix); its last logits start sampling
    int np = g->np = n < steps ? n : steps, block = prefill_block(tr);
    const char *env = getenv("LLAMA2_PREFILL_BLOCK"); // 1 = token by token, for benchmarks
    if (env && atoi(env) >= 1 && atoi(env) < block) block = atoi(env);
    g->t_start = time_in_s();
    for (int p = 0; p < np; p += block) g->logits = forward(tr, g->tokens + p, np - p < block ? np - p : block, p);
    g->t_prompt = time_in_s();
    for (int i = 1; i <= np && i < n; i++) print_piece(tok, &g->out, g->tokens[i - 1], g->tokens[i]);
    fflush(stdout);
    g->pos = np;
    g->token = g->tokens[n - 1];
    g->done = np != n; // steps ran out inside the prompt
}

// Samples and prints one token, then runs it through the model; 0 once the story is over.
static int generation_next(Generation *g) {
    if (g->done) return 0;
    int next = sample(g->sampler, g->logits, g->pos);
    if (next == BOS || next == EOS) { g->done = 1; return 0; } // the story is over
    print_piece(g->tok, &g->out, g->token, next);
    if (g->out.len == 0) fflush(stdout);
    g->token = next;
    if (g->pos >= g->steps) { g->done = 1; return 1; }
    g->logits = forward(g->tr, &g->token, 1, g->pos);
    g->pos++;
    g->generated++;
    return 1;
}

static void generation_end(Generation *g) {
    flush_printer(&g->out);
    g->t_end = time_in_s();
    free(g->tokens);
    g->tokens = NULL;
}

static void generate(Transformer *tr, const Tokenizer *tok, Sampler *sampler, const char *prompt, int steps) {
    Generation g;
    generation_start(&g, tr, tok, sampler, prompt, steps);
    while (generation_next(&g)) {}
    generation_end(&g);
    printf("\n");
    flush_printer(&g.out); // checks that stdout took everything
    if (g.np > 1) fprintf(stderr, "prompt: %d tokens, %.1f tok/s\n", g.np, g.np / (g.t_prompt - g.t_start));
    if (g.generated > 0) fprintf(stderr, "achieved tok/s: %f\n", g.generated / (g.t_end - g.t_prompt));
}

static void read_stdin(const char *guide, char *buffer, size_t bufsize, int *eof) {
    printf("%s", guide);
    fflush(stdout);
    if (fgets(buffer, (int)bufsize, stdin) == NULL) { buffer[0] = '\0'; *eof = 1; return; }
    size_t len = strlen(buffer);
    if (len > 0 && buffer[len - 1] == '\n') buffer[len - 1] = '\0';
}

// Chat with the Llama-2 chat template, as the original runner does (one token per step,
// and the sampler runs on every step, so a seed gives the original's conversation).
static void chat(Transformer *tr, const Tokenizer *tok, Sampler *sampler, const char *cli_user_prompt,
                 const char *cli_system_prompt, int steps) {
    const Config *c = transformer_config(tr);
    char system_prompt[512] = "", user_prompt[512] = "";
    size_t rendered_size = 2 * 512 + 128 + (cli_user_prompt ? strlen(cli_user_prompt) : 0) + (cli_system_prompt ? strlen(cli_system_prompt) : 0);
    char *rendered = xcalloc(rendered_size, 1, "the chat prompt");
    int *prompt_tokens = xcalloc(rendered_size + 3, sizeof(int), "the chat prompt");
    int num_prompt_tokens = 0, user_idx = 0, user_turn = 1, next = 0, token, pos = 0, eof = 0;
    Utf8Printer out = {0};
    while (pos < steps) {
        if (user_turn) {
            if (pos == 0 && cli_system_prompt == NULL) read_stdin("Enter system prompt (optional): ", system_prompt, sizeof(system_prompt), &eof);
            const char *sys = cli_system_prompt ? cli_system_prompt : system_prompt;
            const char *user = user_prompt;
            if (pos == 0 && cli_user_prompt != NULL) user = cli_user_prompt;
            else read_stdin("User: ", user_prompt, sizeof(user_prompt), &eof);
            if (eof) break;
            if (pos == 0 && sys[0] != '\0') snprintf(rendered, rendered_size, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", sys, user);
            else snprintf(rendered, rendered_size, "[INST] %s [/INST]", user);
            num_prompt_tokens = encode(tok, rendered, 1, 0, prompt_tokens);
            if (pos + num_prompt_tokens >= c->seq_len) { printf("(the context is full)\n"); break; }
            user_idx = 0;
            user_turn = 0;
            printf("Assistant: ");
        }
        token = user_idx < num_prompt_tokens ? prompt_tokens[user_idx++] : next;
        if (token == EOS) user_turn = 1;
        float *logits = forward(tr, &token, 1, pos);
        next = sample(sampler, logits, pos);
        pos++;
        if (user_idx >= num_prompt_tokens && next != EOS) { print_piece(tok, &out, token, next); if (out.len == 0) fflush(stdout); }
        if (next == EOS) { flush_printer(&out); printf("\n"); }
    }
    flush_printer(&out);
    printf("\n");
    free(prompt_tokens);
    free(rendered);
}

// ----------------------------------------------------------------------------
// command line

static void usage(FILE *f) {
    fprintf(f, "Usage:   run <checkpoint> [options]\n");
    fprintf(f, "Example: run stories15M.bin -z tok5000.bin -n 256 -i \"从前，有一只会飞的狗叫波波\"\n");
    fprintf(f, "Options:\n");
    fprintf(f, "  -t <float>  temperature, 0 (greedy) or in [1e-30, 1e30], default 1.0\n");
    fprintf(f, "  -p <float>  p value in top-p (nucleus) sampling, 0 or 1 (off) or in [1e-30, 1), default 0.9\n");
    fprintf(f, "  -s <int>    random seed (decimal; a negative one wraps as in C), default 0 = time(NULL)\n");
    fprintf(f, "  -n <int>    number of steps to run for, default 256. 0 = max_seq_len\n");
    fprintf(f, "  -i <string> input prompt\n");
    fprintf(f, "  -f <string> read the input prompt (or the text to score) from this file\n");
    fprintf(f, "  -z <string> optional path to custom tokenizer, default tokenizer.bin\n");
    fprintf(f, "  -m <string> mode: generate|chat|tokenize|score, default: generate\n");
    fprintf(f, "              score: the mean loss per token of the text and its perplexity\n");
    fprintf(f, "  -y <string> (optional) system prompt in chat mode\n");
    fprintf(f, "  -h          print this help\n");
}

static double parse_number(const char *flag, const char *s, double lo, double hi, const char *expected) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (strpbrk(s, "nN") || end == s || *end != '\0' || errno == ERANGE || isnan(v) || v < lo || v > hi)
        die("bad value '%s' for %s (expected %s)", s, flag, expected);
    // a positive value that is 0 or denormal as a float cannot work (logits / t overflow)
    if (v != 0 && v < 1e-30) die("bad value '%s' for %s (expected %s)", s, flag, expected);
    return v;
}

// A decimal integer in [min, max], nothing else (no 1e3, 0x10, spaces or overflow); negative
// values come back as their two's complement, as the original's atoi gave them.
static unsigned long long parse_integer(const char *flag, const char *s, long long min, unsigned long long max) {
    int neg = s[0] == '-';
    const char *digits = s + neg;
    char *end;
    errno = 0;
    unsigned long long u = strtoull(digits, &end, 10);
    int ok = digits[0] >= '0' && digits[0] <= '9' && *end == '\0' && errno != ERANGE;
    if (ok && neg) ok = min < 0 && u <= (unsigned long long)(-(min + 1)) + 1;
    if (ok && !neg) ok = u <= max;
    if (!ok) die("bad value '%s' for %s (expected an integer in [%lld, %llu])", s, flag, min, max);
    return neg ? 0 - u : u;
}

#if defined _WIN32
// Windows passes argv in the ANSI code page: take the UTF-16 command line and convert it, so
// a Chinese -i prompt arrives as UTF-8; and the console reads and writes UTF-8.
static char **utf8_argv(int *argc) {
    wchar_t **wargv = CommandLineToArgvW(GetCommandLineW(), argc);
    if (!wargv) die("cannot read the command line");
    char **argv = xcalloc(*argc + 1, sizeof(char *), "the command line");
    for (int i = 0; i < *argc; i++) {
        int n = WideCharToMultiByte(CP_UTF8, 0, wargv[i], -1, NULL, 0, NULL, NULL);
        argv[i] = xcalloc(n > 0 ? n : 1, 1, "the command line");
        if (n > 0) WideCharToMultiByte(CP_UTF8, 0, wargv[i], -1, argv[i], n, NULL, NULL);
    }
    LocalFree(wargv);
    SetConsoleOutputCP(CP_UTF8);
    SetConsoleCP(CP_UTF8);
    // the bytes the model wrote, as on every other system: text mode would turn \n into \r\n
    _setmode(_fileno(stdout), _O_BINARY);
    return argv;
}
#endif

typedef struct {
    const char *checkpoint_path, *tokenizer_path, *prompt, *mode, *system_prompt, *text_path;
    float temperature, topp;
    int steps;
    unsigned long long rng_seed;
} Options;

// The flags, validated; -h prints the usage and exits 0, no arguments print it and exit 1.
static Options parse_args(int argc, char *argv[]) {
    Options o = {NULL, "tokenizer.bin", NULL, "generate", NULL, NULL, 1.0f, 0.9f, 256, 0};
    for (int i = 1; i < argc; i++) if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) { usage(stdout); exit(0); }
    if (argc < 2) { usage(stderr); exit(1); }
    o.checkpoint_path = argv[1];
    if (o.checkpoint_path[0] == '-') die("the first argument must be the model checkpoint, got '%s' (see -h)", o.checkpoint_path);
    for (int i = 2; i < argc; i += 2) {
        const char *flag = argv[i];
        if (flag[0] != '-' || strlen(flag) != 2) die("unexpected argument '%s' (flags are -t -p -s -n -i -f -z -m -y -h)", flag);
        if (strchr("tpsnifzmy", flag[1]) == NULL) die("unknown flag %s (see -h)", flag);
        if (i + 1 >= argc) die("flag %s needs a value", flag);
        const char *val = argv[i + 1];
        switch (flag[1]) {
            case 't': o.temperature = (float)parse_number(flag, val, 0, 1e30, "0 or a number in [1e-30, 1e30]"); break;
            case 'p': o.topp = (float)parse_number(flag, val, 0, 1, "0 or a number in [1e-30, 1]"); break;
            // like the original's atoi: a negative seed wraps around
            case 's': o.rng_seed = parse_integer(flag, val, INT_MIN, ULLONG_MAX); break;
            case 'n': o.steps = (int)parse_integer(flag, val, 0, INT_MAX); break;
            case 'i': o.prompt = val; break;
            case 'f': o.text_path = val; break;
            case 'z': o.tokenizer_path = val; break;
            case 'm': o.mode = val; break;
            case 'y': o.system_prompt = val; break;
        }
    }
    if (strcmp(o.mode, "generate") != 0 && strcmp(o.mode, "chat") != 0 && strcmp(o.mode, "tokenize") != 0 &&
        strcmp(o.mode, "score") != 0)
        die("unknown mode '%s' (expected generate, chat, tokenize or score)", o.mode);
    if (o.prompt && o.text_path) die("give the input with -i or with -f, not both");
    if (o.rng_seed == 0) o.rng_seed = (unsigned int)time(NULL);
    return o;
}

// -m tokenize: the ids of BOS + text on stdout, the encoding time on stderr
static void tokenize(const Tokenizer *tok, const char *text) {
    int *tokens = xcalloc(strlen(text) + 3, sizeof(int), "the prompt");
    double t0 = time_in_s();
    int n = encode(tok, text, 1, 0, tokens);
    double ms = (time_in_s() - t0) * 1000;
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", tokens[i]);
    printf("\n");
    check_stdout();
    fprintf(stderr, "encoded %zu bytes into %d tokens in %.3f ms\n", strlen(text), n, ms);
    free(tokens);
}

// -f: a whole text file as one string (it must hold no NUL byte, which would end it early)
static char *read_text_file(const char *path) {
#if defined _WIN32
    wchar_t *wp = wide_path(path);
    FILE *f = _wfopen(wp, L"rb");
    free(wp);
    if (!f) die("cannot open text file %s: %s", path, strerror(errno));
#else
    struct stat st;
    FILE *f = fdopen(open_regular(path, "text file", &st), "rb");
    if (!f) die("cannot open text file %s: %s", path, strerror(errno));
#endif
    size_t cap = 1 << 16, n = 0, got;
    char *text = xcalloc(cap + 1, 1, "the text");
    while ((got = fread(text + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            if (cap >= ((size_t)1 << 30)) die("text file %s is larger than 1 GB", path);
            char *bigger = realloc(text, 2 * cap + 1);
            if (!bigger) die("out of memory reading text file %s", path);
            text = bigger;
            cap *= 2;
        }
    }
    if (ferror(f)) die("cannot read text file %s: %s", path, strerror(errno));
    fclose(f);
    text[n] = 0;
    if (strlen(text) != n) die("text file %s holds a NUL byte (at byte %zu): not a text file?", path, strlen(text));
    return text;
}

// The cross-entropy of target under logits (nats): log-sum-exp minus the target's logit, in double.
static double token_loss(const float *logits, int n, int target, int pos) {
    float max_val = logits[0];
    for (int i = 0; i < n; i++) {
        if (!is_finite_bits(logits[i]))
            die("the model produced non-finite logits at position %d (NaN or inf weights in the model file?)", pos);
        if (logits[i] > max_val) max_val = logits[i];
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - max_val);
    return log(sum) + max_val - logits[target];
}

// -m score: the mean loss per token of a text (each token's cross-entropy given the ones before
// it, in nats) and its perplexity, exp(loss). The text is BOS + its tokens, run through the model
// in windows of seq_len tokens, each in prefill blocks; the context restarts at every window
// (its first token at position 0 sees nothing of the one before), as training's windows do. Every
// token but BOS is predicted once. sample.py --score computes the same numbers in PyTorch.
static void score(Transformer *tr, const Tokenizer *tok, const char *text) {
    const Config *c = transformer_config(tr);
    int *tokens = xcalloc(strlen(text) + 3, sizeof(int), "the text");
    int n = encode(tok, text, 1, 0, tokens);
    if (n < 2) die("nothing to score: the text is empty");
    int S = c->seq_len, V = c->vocab_size, block = prefill_block(tr);
    double total = 0.0, t0 = time_in_s();
    for (int w0 = 0; w0 + 1 < n; w0 += S) {
        int len = n - 1 - w0 < S ? n - 1 - w0 : S; // inputs w0..w0+len-1, targets one further
        for (int p = 0; p < len; p += block) {
            int T = len - p < block ? len - p : block;
            const float *logits = forward_all(tr, tokens + w0 + p, T, p);
            for (int t = 0; t < T; t++) total += token_loss(logits + (size_t)t * V, V, tokens[w0 + p + t + 1], p + t);
        }
    }
    double secs = time_in_s() - t0, loss = total / (n - 1);
    printf("%d tokens scored, loss %.6f per token, perplexity %.4f\n", n - 1, loss, exp(loss));
    check_stdout();
    fprintf(stderr, "score: %d tokens in windows of %d, %.1f tok/s\n", n - 1, S, (n - 1) / secs);
    free(tokens);
}

static int llama2_main(int argc, char *argv[]) {
#if defined _WIN32
    argv = utf8_argv(&argc);
#endif
    Options o = parse_args(argc, argv);
    Transformer *transformer = build_transformer(o.checkpoint_path);
    const Config *c = transformer_config(transformer);
    if (o.steps == 0 || o.steps > c->seq_len) o.steps = c->seq_len;
    Tokenizer tokenizer;
    build_tokenizer(&tokenizer, o.tokenizer_path, c->vocab_size);
    Sampler sampler;
    build_sampler(&sampler, c->vocab_size, o.temperature, o.topp, o.rng_seed);
    const char *dump = getenv("LLAMA2_LOGITS");
    if (dump && dump[0] && !(logits_dump = fopen(dump, "wb"))) die("cannot write LLAMA2_LOGITS file %s", dump);

    char *file_text = o.text_path ? read_text_file(o.text_path) : NULL;
    if (file_text) o.prompt = file_text;
    if (strcmp(o.mode, "tokenize") == 0) tokenize(&tokenizer, o.prompt ? o.prompt : "");
    else if (strcmp(o.mode, "score") == 0) score(transformer, &tokenizer, o.prompt ? o.prompt : "");
    else if (strcmp(o.mode, "generate") == 0) generate(transformer, &tokenizer, &sampler, o.prompt ? o.prompt : "", o.steps);
    else chat(transformer, &tokenizer, &sampler, o.prompt, o.system_prompt, o.steps);
    check_stdout();
    if (logits_dump) fclose(logits_dump);
    free(file_text);
    free_sampler(&sampler);
    free_tokenizer(&tokenizer);
    free_transformer(transformer);
    return 0;
}

#endif // LLAMA2_H
