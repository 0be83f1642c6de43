// cli.h: the command line of ./run and ./runq (flags validated; generate, instruct, chat, tokenize or score), around the model a runner opens.
#pragma once
#include "platform.h"
#include "generate.h"

static void usage(FILE *f) {
    fprintf(f, "Usage:   run <checkpoint> [options]\n");
    fprintf(f, "Example: run stories15M.bin -z tok5000.bin -n 256 -i \"从前，有一只会飞的狗叫波波\"\n");
    fprintf(f, "Options:\n");
    fprintf(f, "  -t <float>  temperature, 0 (greedy) or in [1e-30, 1e30], default 1.0\n");
    fprintf(f, "  -p <float>  p value in top-p (nucleus) sampling, 0 or 1 (off) or in [1e-30, 1), default 0.9\n");
    fprintf(f, "  -s <int>    random seed (decimal; a negative one wraps as in C), default 0 = time(NULL)\n");
    fprintf(f, "  -n <int>    number of steps to run for, default 256. 0 = max_seq_len\n");
    fprintf(f, "  -i <string> input prompt (in instruct mode: the instruction)\n");
    fprintf(f, "  -f <string> read the input prompt (or the text to score) from this file\n");
    fprintf(f, "  -z <string> optional path to custom tokenizer, default tokenizer.bin\n");
    fprintf(f, "  -m <string> mode: generate|instruct|chat|tokenize|score, default: generate\n");
    fprintf(f, "              instruct: a story for the instruction -i, in the prompt template of the\n");
    fprintf(f, "              instruction-tuned model's tokenizer (e.g. -m instruct -i \"讲一个关于小狗的故事\")\n");
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
        strcmp(o.mode, "instruct") != 0 && strcmp(o.mode, "score") != 0)
        die("unknown mode '%s' (expected generate, instruct, chat, tokenize or score)", o.mode);
    if (o.prompt && o.text_path) die("give the input with -i or with -f, not both");
    if (strcmp(o.mode, "instruct") == 0 && (!o.text_path && (!o.prompt || !o.prompt[0])))
        die("-m instruct needs the instruction as -i (or -f)");
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

// The whole program: the command line, then the model open_model loads (run.c's or runq.c's).
static int llama2_main(int argc, char *argv[], void (*open_model)(Model *m, const char *path)) {
#if defined _WIN32
    argv = utf8_argv(&argc);
#endif
    Options o = parse_args(argc, argv);
    Model m;
    open_model(&m, o.checkpoint_path);
    const Config *c = m.config;
    if (o.steps == 0 || o.steps > c->seq_len) o.steps = c->seq_len;
    Tokenizer tokenizer;
    build_tokenizer(&tokenizer, o.tokenizer_path, c->vocab_size);
    Sampler sampler;
    build_sampler(&sampler, c->vocab_size, o.temperature, o.topp, o.rng_seed);

    char *file_text = o.text_path ? read_text_file(o.text_path) : NULL;
    if (file_text) o.prompt = file_text;
    if (strcmp(o.mode, "tokenize") == 0) tokenize(&tokenizer, o.prompt ? o.prompt : "");
    else if (strcmp(o.mode, "score") == 0) score(&m, &tokenizer, o.prompt ? o.prompt : "");
    else if (strcmp(o.mode, "generate") == 0) generate(&m, &tokenizer, &sampler, o.prompt ? o.prompt : "", o.steps, 1);
    else if (strcmp(o.mode, "instruct") == 0) {
        if (!o.prompt[0]) die("-m instruct: the instruction is empty");
        char *prompt = render_instruction(&tokenizer, o.prompt);
        generate(&m, &tokenizer, &sampler, prompt, o.steps, 0);
        free(prompt);
    }
    else chat(&m, &tokenizer, &sampler, o.prompt, o.system_prompt, o.steps);
    check_stdout();
    free(file_text);
    free_sampler(&sampler);
    free_tokenizer(&tokenizer);
    m.free(m.t);
    return 0;
}
