// generate.h: a story token by token (./run and the browser's web.c share it) and the Llama-2 chat loop, over a Model.
#pragma once
#include "platform.h"
#include "checkpoint.h"
#include "tokenizer.h"
#include "sampler.h"

// A runner's model as the loops see it: run.c and runq.c each fill one (open_model) with their
// own Transformer, opaque here, and its forward pass.
typedef struct Transformer Transformer;
typedef struct {
    Transformer *t;
    const Config *config;
    int prefill_block; // at most this many tokens per forward call
    // Runs tokens[0..n) at positions pos..pos+n-1 (filling the KV cache); returns the logits after the last one.
    float *(*forward)(Transformer *t, const int *tokens, int n, int pos);
    // The same, returning the logits of all n tokens (n rows of vocab_size), for scoring a text.
    float *(*forward_all)(Transformer *t, const int *tokens, int n, int pos);
    void (*free)(Transformer *t);
} Model;

// A story in steps, so ./run's loop and the browser's (web.c) are the same code: start encodes
// the prompt, runs it through the model and prints it; each next samples, prints and feeds one
// token; end flushes the printer.
typedef struct {
    const Model *m;
    const Tokenizer *tok;
    Sampler *sampler;
    int *tokens;         // the prompt, BOS first
    int n, np;           // prompt tokens, and how many of them run (at most steps)
    int steps, pos, token, generated, done;
    int echo;            // print the prompt (0: an instruction's answer, printed as a text of its own)
    float *logits;       // the logits the next token is sampled from
    Utf8Printer out;
    double t_start, t_prompt, t_end; // prompt start, prompt end (first sample), end
} Generation;

static void generation_start(Generation *g, const Model *m, const Tokenizer *tok, Sampler *sampler,
                             const char *prompt, int steps, int echo) {
    memset(g, 0, sizeof(*g));
    g->m = m; g->tok = tok; g->sampler = sampler; g->steps = steps; g->echo = echo;
    const Config *c = m->config;
    g->tokens = xcalloc(strlen(prompt) + 3, sizeof(int), "the prompt");
    int n = g->n = encode(tok, prompt, 1, 0, g->tokens);
    if (n > c->seq_len) die("the prompt is %d tokens, longer than the model's context of %d", n, c->seq_len);
    // the prompt goes through the model in blocks (matrix x matrix); its last logits start sampling
    int np = g->np = n < steps ? n : steps, block = m->prefill_block;
    g->t_start = time_in_s();
    for (int p = 0; p < np; p += block) g->logits = m->forward(m->t, g->tokens + p, np - p < block ? np - p : block, p);
    g->t_prompt = time_in_s();
    for (int i = 1; echo && i <= np && i < n; i++) print_piece(tok, &g->out, g->tokens[i - 1], g->tokens[i]);
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
    // an answer's first piece loses its leading space, as the first piece after BOS does
    print_piece(g->tok, &g->out, !g->echo && g->pos == g->np ? BOS : g->token, next);
    if (g->out.len == 0) fflush(stdout);
    g->token = next;
    if (g->pos >= g->steps) { g->done = 1; return 1; }
    g->logits = g->m->forward(g->m->t, &g->token, 1, g->pos);
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

static void generate(const Model *m, const Tokenizer *tok, Sampler *sampler, const char *prompt, int steps, int echo) {
    Generation g;
    generation_start(&g, m, tok, sampler, prompt, steps, echo);
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
static void chat(const Model *m, const Tokenizer *tok, Sampler *sampler, const char *cli_user_prompt,
                 const char *cli_system_prompt, int steps) {
    const Config *c = m->config;
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
        float *logits = m->forward(m->t, &token, 1, pos);
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

// The cross-entropy of target under logits (nats): log-sum-exp minus the target's logit, the sum
// in double. Each term in float (expf is good to an ulp): scoring takes vocab_size of them for
// every token, and exp in double is slower.
static double token_loss(const float *logits, int n, int target) {
    float max_val = logits[0];
    for (int i = 0; i < n; i++) {
        if (!is_finite_bits(logits[i])) return NAN; // reported by the caller, outside the threads
        if (logits[i] > max_val) max_val = logits[i];
    }
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += expf(logits[i] - max_val);
    return log(sum) + max_val - logits[target];
}

// -m score: the mean loss per token of a text (each token's cross-entropy given the ones before
// it, in nats) and its perplexity, exp(loss). The text is BOS + its tokens, run through the model
// in windows of seq_len inputs, each in prefill blocks; the context restarts at every window (its
// first token, at position 0, sees nothing of the one before), as training's windows do. Every
// token but BOS is predicted once. sample.py --score computes the same numbers in PyTorch.
static void score(const Model *m, const Tokenizer *tok, const char *text) {
    int *tokens = xcalloc(strlen(text) + 3, sizeof(int), "the text");
    int n = encode(tok, text, 1, 0, tokens);
    if (n < 2) die("nothing to score: the text is empty");
    int S = m->config->seq_len, V = m->config->vocab_size, block = m->prefill_block;
    double total = 0.0, t0 = time_in_s(), *losses = xcalloc(block, sizeof(double), "the text");
    for (int w0 = 0; w0 + 1 < n; w0 += S) {
        int len = n - 1 - w0 < S ? n - 1 - w0 : S; // inputs w0..w0+len-1, targets one further
        for (int p = 0; p < len; p += block) {
            int T = len - p < block ? len - p : block;
            const float *logits = m->forward_all(m->t, tokens + w0 + p, T, p);
            // the block's losses shared by the threads (one alone would leave the others idle),
            // then added up in token order, so the total does not depend on the thread count
            int t;
            #pragma omp parallel for schedule(static) if (T > 1)
            for (t = 0; t < T; t++) losses[t] = token_loss(logits + (size_t)t * V, V, tokens[w0 + p + t + 1]);
            for (t = 0; t < T; t++) {
                if (!is_finite_bits((float)losses[t])) // NaN from token_loss
                    die("the model produced non-finite logits at position %d (NaN or inf weights in the model file?)", p + t);
                total += losses[t];
            }
        }
    }
    free(losses);
    double secs = time_in_s() - t0, loss = total / (n - 1);
    printf("%d tokens scored, loss %.6f per token, perplexity %.4f\n", n - 1, loss, exp(loss));
    check_stdout();
    fprintf(stderr, "score: %d tokens in windows of %d, %.1f tok/s\n", n - 1, S, (n - 1) / secs);
    free(tokens);
}
