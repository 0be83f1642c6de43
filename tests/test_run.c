/* tests/test_run.c: run.c's parts on plain arrays (make testc; tests/test_c_units.py builds it for
   every ISA, under ASan/UBSan, and for aarch64 under qemu): each fp32 kernel the target selected
   against its reference loop on random arrays of odd sizes, the matmul's independence of the block
   and the thread count, the work-stealing scheduler, the tokenizer's edge cases, the UTF-8 printer
   and the sampler's bounds. cc -I. -ffp-contract=off [-march=...] tests/test_run.c -lm && ./a.out */
#define TESTING
#include "run.c"
#include "tests/check.h"

// the reference loop of the target's attention_scores, with the scalar dot
static void scores_ref(float *att, const float *q, const float *k, size_t stride, int npos, int n) {
    for (int j = 0; j < npos; j++) att[j] = dot_ref(q, k + j * stride, n) / sqrtf((float)n);
}

static void test_dot_and_attention(void) {
    static const int sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 18, 24, 31, 33, 48, 64, 90, 100, 257};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        float *a = random_floats(n, 1), *b = random_floats(n, 1), want = dot_ref(a, b, n), got = dot(a, b, n);
        CHECK(fabsf(got - want) <= 3e-7f * n * n + 1e-6f, "dot n=%d: %g vs %g", n, got, want);
        for (int extra = 0; extra <= 5; extra += 5) { // keys one head apart, or further
            int npos = 1 + (n * 7) % 40;
            size_t stride = n + extra;
            float *k = random_floats(npos * stride, 1), *att = random_floats(npos, 1), *want_att = random_floats(npos, 1);
            attention_scores(att, a, k, stride, npos, n);
            scores_ref(want_att, a, k, stride, npos, n);
            CHECK(close_to(att, want_att, npos, 3e-7f * n, n, 1e-6f), "attention_scores n=%d npos=%d", n, npos);
#ifdef USE_WASM_SIMD // its 4 keys at a time sum each key as dot() does: the same bits
            attention_scores_ref(want_att, a, k, stride, npos, n);
            CHECK(same_bits(att, want_att, npos * sizeof(float)), "attention_scores (wasm) n=%d: not dot()'s bits", n);
#endif
            float *v = random_floats(npos * stride, 1), *out = random_floats(n, 1), *want_out = random_floats(n, 1);
            for (int j = 0; j < npos; j++) att[j] = (urand() + 1) / 2;
            mix_values(out, att, v, stride, npos, n);
            mix_values_ref(want_out, att, v, stride, npos, n);
#ifdef USE_WASM_SIMD
            CHECK(same_bits(out, want_out, n * sizeof(float)), "mix_values (wasm) n=%d npos=%d: not the loop's bits", n, npos);
#endif
            CHECK(close_to(out, want_out, n, 3e-7f * npos, npos, 1e-6f), "mix_values n=%d npos=%d", n, npos);
#ifdef attention_scores4 // 4 queries at consecutive positions at once: each query's bits alone
            if (npos >= 4) {
                const float *qs[4];
                float *atts[4], *outs[4], alone[4][300];
                for (int i = 0; i < 4; i++) {
                    qs[i] = random_floats(n, 1);
                    atts[i] = random_floats(npos + 3, 1);
                    outs[i] = random_floats(n, 1);
                }
                float *k4 = random_floats((npos + 3) * stride, 1), *v4 = random_floats((npos + 3) * stride, 1);
                attention_scores4(atts, qs, k4, stride, npos, n);
                int same = 1;
                for (int i = 0; i < 4; i++) {
                    attention_scores(alone[i], qs[i], k4, stride, npos + i, n);
                    same &= same_bits(alone[i], atts[i], (npos + i) * sizeof(float));
                    attention_softmax(atts[i], npos + i);
                }
                CHECK(same, "attention_scores4 n=%d npos=%d: a query's scores differ from its own", n, npos);
                mix_values4(outs, atts, v4, stride, npos, n);
                same = 1;
                for (int i = 0; i < 4; i++) {
                    mix_values(alone[i], atts[i], v4, stride, npos + i, n);
                    same &= same_bits(alone[i], outs[i], n * sizeof(float));
                }
                CHECK(same, "mix_values4 n=%d npos=%d: a query's mix differs from its own", n, npos);
                for (int i = 0; i < 4; i++) free((void *)qs[i]), free(atts[i]), free(outs[i]);
                free(k4); free(v4);
            }
#endif
            free(k); free(att); free(want_att); free(v); free(out); free(want_out);
        }
        float *o = random_floats(n, 1), *w = random_floats(n, 1), *want_o = random_floats(n, 1);
        rmsnorm(o, a, w, n);
        float ss = 1.0f / sqrtf(dot_ref(a, a, n) / n + 1e-5f);
        for (int j = 0; j < n; j++) want_o[j] = w[j] * (ss * a[j]);
        CHECK(close_to(o, want_o, n, 1e-5f, 1, 1e-6f), "rmsnorm n=%d", n);
        free(a); free(b); free(o); free(w); free(want_o);
    }
}

static void test_softmax_and_swiglu(void) {
    for (int n = 1; n <= 45; n += (n < 20 ? 1 : 7)) {
        float *x = random_floats(n, 12), *want = malloc(n * sizeof(float));
        memcpy(want, x, n * sizeof(float));
        attention_softmax(x, n);
        softmax(want, n);
        float sum = 0;
        for (int i = 0; i < n; i++) {
            sum += x[i];
            CHECK(fabsf(x[i] - want[i]) <= 3e-6f * want[i] + 1e-9f, "attention_softmax n=%d [%d]: %g vs %g", n, i, x[i], want[i]);
        }
        CHECK(fabsf(sum - 1) < 1e-5f, "attention_softmax n=%d sums to %g", n, sum);
        float *h = random_floats(n, 8), *h2 = random_floats(n, 2), *want_h = malloc(n * sizeof(float));
        memcpy(want_h, h, n * sizeof(float));
        swiglu(h, h2, n);
        swiglu_ref(want_h, h2, n);
        for (int i = 0; i < n; i++)
            CHECK(fabsf(h[i] - want_h[i]) <= 3e-6f * fabsf(want_h[i]) + 1e-7f, "swiglu n=%d [%d]: %g vs %g", n, i, h[i], want_h[i]);
        free(x); free(want); free(h); free(h2); free(want_h);
    }
}

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

static void test_matmul(void) {
    static const int ns[] = {1, 3, 4, 8, 12, 16, 17, 32, 36, 90, 96, 1024}, ds[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 37};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof ds / sizeof *ds; b++) {
            int n = ns[a], d = ds[b], T = 1 + (int)(a + b) % 5;
            float *w = random_floats((size_t)d * n, 1), *x = random_floats((size_t)T * n, 1);
            float *wt = malloc((size_t)d * n * sizeof(float)); // in the kernel's order (wasm.h reorders)
            memcpy(wt, w, (size_t)d * n * sizeof(float));
            reorder_f32(wt, 1, d, n);
            float *got = random_floats((size_t)T * d, 1), *want = random_floats((size_t)T * d, 1), *one = random_floats(d, 1);
            float *pad = random_floats((size_t)T * (n + XPAD), 1); // matmul copies x here where spread(n)
            for (int i = 0; i < d; i += 4) {
                matmul_rows(got, x, n, wt, T, n, d, i);
                matmul_rows_ref(want, x, n, w, T, n, d, i);
            }
            CHECK(close_to(got, want, (size_t)T * d, 3e-7f * n, n, 1e-6f), "matmul_rows n=%d d=%d T=%d", n, d, T);
            // each output has dot()'s bits: the tile sums its rows (vf_sum4) as dot sums one
            int dots = 1;
            for (int t = 0; t < T; t++)
                for (int r = 0; r < d; r++) {
                    float one_dot = dot(w + (size_t)r * n, x + (size_t)t * n, n);
                    dots &= same_bits(&one_dot, got + (size_t)t * d + r, sizeof(float));
                }
            CHECK(dots, "matmul_rows n=%d d=%d T=%d: an output differs from dot()'s bits", n, d, T);
            // the whole matmul, T tokens at once, equals each token alone, with any number of threads
            for (int threads = 1; threads <= 3; threads += 2) {
                set_threads(threads);
                matmul(got, x, wt, T, n, d, pad);
                for (int t = 0; t < T; t++) {
                    matmul(one, x + (size_t)t * n, wt, 1, n, d, NULL);
                    CHECK(same_bits(one, got + (size_t)t * d, d * sizeof(float)), "matmul n=%d d=%d: token %d of %d differs alone (%d threads)", n, d, t, T, threads);
                }
            }
            set_threads(1);
            free(w); free(x); free(wt); free(got); free(want); free(one); free(pad);
        }
}

static _Atomic int tile_hits[512];
static void count_tile(void *ctx, int k) { (void)ctx; tile_hits[k]++; }

static void test_for_each_tile(void) {
    static const int ns[] = {1, 2, 3, 17, 64, 300};
    for (int threads = 1; threads <= 3; threads++)
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
            set_threads(threads);
            for (int k = 0; k < 512; k++) tile_hits[k] = 0;
            for_each_tile(ns[a], count_tile, NULL);
            int bad = 0;
            for (int k = 0; k < 512; k++) bad += tile_hits[k] != (k < ns[a]);
            CHECK(bad == 0, "for_each_tile n=%d, %d threads: %d tiles not run exactly once", ns[a], threads, bad);
        }
    set_threads(1);
}

// ----------------------------------------------------------------------------
// tokenizer and printer on a small vocabulary written here

static const char *pieces[] = {" ", "a", "b", "ab", " a", "\xE4\xBD\xA0", "\xE5\xA5\xBD", "\xE4\xBD\xA0\xE5\xA5\xBD", " ab"};
static const float scores[] = {-1, -2, -3, -0.5f, -0.6f, -4, -5, -0.1f, -0.2f};
#define FIRST 259 // <unk> <s> </s>, then <0x00>..<0xFF>, then the pieces above

static void write_tokenizer(const char *path, int trailer, int dummy, int extra) {
    FILE *f = fopen(path, "wb");
    int32_t max_len = 16;
    fwrite(&max_len, 4, 1, f);
    for (int id = 0; id < FIRST + 9; id++) {
        char buf[16];
        const char *p = buf;
        if (id < 3) p = id == 0 ? "<unk>" : id == 1 ? "<s>" : "</s>";
        else if (id < FIRST) snprintf(buf, sizeof buf, "<0x%02X>", id - 3);
        else p = pieces[id - FIRST];
        float score = id < FIRST ? 0 : scores[id - FIRST];
        int32_t len = (int32_t)strlen(p);
        fwrite(&score, 4, 1, f); fwrite(&len, 4, 1, f); fwrite(p, 1, len, f);
    }
    if (trailer) {
        int32_t version = 1;
        unsigned char flags[4] = {(unsigned char)dummy, (unsigned char)extra, 0, 0};
        fwrite("spnm", 1, 4, f); fwrite(&version, 4, 1, f); fwrite(flags, 1, 4, f);
    }
    fclose(f);
}

static void check_encode(const Tokenizer *t, const char *text, int eos, const int *want, int n_want) {
    int *got = malloc((strlen(text) + 3) * sizeof(int));
    int n = encode(t, text, 1, eos, got);
    int same = n == n_want;
    for (int i = 0; same && i < n; i++) same = got[i] == want[i];
    CHECK(same, "encode(\"%s\"): %d tokens, first %d; want %d tokens", text, n, n > 1 ? got[1] : -1, n_want);
    free(got);
}

#define ENCODES(t, text, eos, ...) do { int w_[] = {__VA_ARGS__}; check_encode(t, text, eos, w_, sizeof w_ / sizeof *w_); } while (0)
#define SP FIRST
#define A (FIRST + 1)
#define B (FIRST + 2)
#define AB (FIRST + 3)
#define SP_A (FIRST + 4)
#define NIHAO (FIRST + 7)
#define SP_AB (FIRST + 8)

static void test_tokenizer(void) {
    const char *path = "test_run_tokenizer.bin";
    Tokenizer t;
    write_tokenizer(path, 0, 1, 0);
    build_tokenizer(&t, path, FIRST + 9);
    ENCODES(&t, "", 0, BOS);                               // no text: no dummy prefix
    ENCODES(&t, "", 1, BOS, EOS);
    ENCODES(&t, "ab", 0, BOS, SP_AB);                      // "ab" (-0.5) before " a" (-0.6), then " ab"
    ENCODES(&t, "a a", 0, BOS, SP_A, SP_A);                // equal scores: the leftmost first
    ENCODES(&t, "\xE4\xBD\xA0\xE5\xA5\xBD", 0, BOS, SP, NIHAO);
    ENCODES(&t, "\xC3\xA9", 0, BOS, SP, 3 + 0xC3, 3 + 0xA9); // no piece: byte fallback
    ENCODES(&t, "\xFF" "a", 0, BOS, SP, 3 + 0xFF, A);      // invalid UTF-8 byte: its byte piece, never merged
    ENCODES(&t, "\xE2\x96\x81" "a", 0, BOS, SP, SP_A);     // a typed "▁" is a space
    ENCODES(&t, "  b", 0, BOS, SP, SP, SP, B);             // spaces kept without the trailer
    free_tokenizer(&t);
    write_tokenizer(path, 1, 0, 1); // no dummy prefix, remove_extra_whitespaces
    build_tokenizer(&t, path, FIRST + 9);
    ENCODES(&t, "  a   b  ", 0, BOS, A, SP, B);
    ENCODES(&t, "   ", 0, BOS);
    free_tokenizer(&t);
    remove(path);
}

#ifdef __GLIBC__ // stdout is assignable there: the printer's bytes go to a temporary file
static void check_printed(const Tokenizer *t, const int *ids, int n, const char *want) {
    FILE *saved = stdout, *f = tmpfile();
    stdout = f;
    Utf8Printer u = {0};
    for (int i = 1; i < n; i++) print_piece(t, &u, ids[i - 1], ids[i]);
    flush_printer(&u);
    stdout = saved;
    char got[64] = "";
    rewind(f);
    size_t len = fread(got, 1, sizeof got - 1, f);
    got[len] = 0;
    fclose(f);
    CHECK(strcmp(got, want) == 0, "printed \"%s\", want \"%s\"", got, want);
}
#define PRINTS(t, want, ...) do { int i_[] = {__VA_ARGS__}; check_printed(t, i_, sizeof i_ / sizeof *i_, want); } while (0)

static void test_printer(void) {
    const char *path = "test_run_tokenizer.bin";
    Tokenizer t;
    write_tokenizer(path, 0, 1, 0);
    build_tokenizer(&t, path, FIRST + 9);
    PRINTS(&t, "a a", BOS, SP_A, SP_A);                          // BOS drops the dummy prefix
    PRINTS(&t, "\xE4\xBD\xA0", BOS, 3 + 0xE4, 3 + 0xBD, 3 + 0xA0); // bytes held until the character is whole
    PRINTS(&t, "\xEF\xBF\xBD" "a", BOS, 3 + 0xE4, 3 + 0xBD, A);   // a cut sequence: U+FFFD, then the rest
    PRINTS(&t, "\xEF\xBF\xBD", BOS, 3 + 0xE4);                    // cut by the end
    PRINTS(&t, "ab", BOS, A, 3 + 0x1B, 3 + 0xC2, 3 + 0x85, 3 + 0x7F, B); // ESC, C1 NEL and DEL dropped
    PRINTS(&t, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", BOS, 3 + 0xC0, 3 + 0xED, 3 + 0xA0); // overlong lead; surrogate: 2
    PRINTS(&t, "\n", BOS, 3 + '\n', -5, FIRST + 100);             // ids out of range print nothing
    free_tokenizer(&t);
    remove(path);
}
#endif

// ----------------------------------------------------------------------------
// sampler

static void test_sampler(void) {
    enum { N = 37 };
    Sampler s;
    build_sampler(&s, N, 1.0f, 0.9f, 7);
    float p[N];
    for (int trial = 0; trial < 200; trial++) {
        float sum = 0;
        for (int i = 0; i < N; i++) sum += p[i] = trial % 3 ? (urand() + 1) : 1.0f; // every third one flat
        for (int i = 0; i < N; i++) p[i] /= sum;
        float coin = (urand() + 1) / 2, topp = trial % 5 == 0 ? 1e-30f : (urand() + 1) / 2;
        int k = sample_topp(p, N, topp, s.probindex, coin);
        CHECK(k >= 0 && k < N, "sample_topp returned %d", k);
        int m = sample_mult(p, N, 0.99999994f); // rounding may leave the cdf below the coin
        CHECK(m >= 0 && m < N, "sample_mult returned %d", m);
    }
    float logits[N];
    for (int i = 0; i < N; i++) logits[i] = urand();
    logits[5] = logits[9] = 1e10f;
    s.temperature = 0;
    CHECK(sample(&s, logits, 0) == 5, "greedy: the first maximum");
    // a temperature so small that logits / temperature overflow: the argmax, and the coin drawn anyway
    s.temperature = 1e-30f;
    unsigned long long state = s.rng_state;
    random_f32(&state);
    CHECK(sample(&s, logits, 0) == 5 && s.rng_state == state, "tiny temperature: argmax, one coin");
    free_sampler(&s);
}

#if defined(__linux__) && defined(MADV_HUGEPAGE)
// map_file's copy in 2 MB pages starts the tensors on a 64-byte boundary after either header
static void test_map_file_aligns_tensors(void) {
    for (int v = 0; v < 2; v++) {
        unsigned char bytes[4096];
        for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)(i * 7 + v);
        if (v) { uint32_t magic = V1_MAGIC; memcpy(bytes, &magic, 4); }
        FILE *f = fopen("aligned.bin", "wb");
        CHECK(f && fwrite(bytes, 1, sizeof bytes, f) == sizeof bytes && fclose(f) == 0, "cannot write aligned.bin");
        MappedFile m;
        map_file(&m, "aligned.bin", 0, tensors_at);
        CHECK(m.size == sizeof bytes && memcmp(m.data, bytes, sizeof bytes) == 0, "map_file (version %d): not the file's bytes", v);
        size_t at = tensors_at(m.data);
        CHECK(at == (v ? 256u : 28u), "tensors_at (version %d) = %zu", v, at);
        // a plain mapping (no THP) starts on a page, so version 0's tensors sit at +28 there
        if (huge_pages_on() || v)
            CHECK((uintptr_t)(m.data + at) % 64 == 0, "map_file (version %d): tensors at %p, not on a 64-byte boundary", v, (void *)(m.data + at));
        unmap_file(&m);
    }
    remove("aligned.bin");
}
#endif

int main(void) {
    test_dot_and_attention();
    test_softmax_and_swiglu();
    test_matmul();
    test_for_each_tile();
    test_tokenizer();
#ifdef __GLIBC__
    test_printer();
#endif
    test_sampler();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    test_map_file_aligns_tensors();
#endif
    return report("test_run");
}
