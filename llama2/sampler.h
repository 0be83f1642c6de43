// sampler.h: the original runner's sampler (greedy, temperature, top-p; xorshift coins), so the same seed gives the same story.
#pragma once
#include "platform.h"
#include "ops.h"

typedef struct { float prob; int index; } ProbIndex;

typedef struct {
    int vocab_size;
    ProbIndex *probindex; // buffer used in top-p sampling
    float temperature;
    float topp;
    unsigned long long rng_state;
} Sampler;


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

// When set (tests/hooks.c, LLAMA2_LOGITS=path), every sampled step appends (int32 pos, float32[vocab] logits).
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
