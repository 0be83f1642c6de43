/* The browser playground's entry points, linked with run.c (fp32, versions 0 and 1) or runq.c
   (int8, version 2) compiled to WebAssembly without their main (make web: -DTESTING), driven a
   token at a time by web_worker.js through the generation loop of llama2/generate.h.

   The worker writes the model and tokenizer into the module's in-memory file system and calls
   web_load, web_start, web_next until it returns 0 (or the user stops), web_end. Text goes to
   stdout, which the worker reads byte by byte. A bad file ends in platform.h's die(): its message
   goes to stderr and exit() throws in JavaScript; the worker shows the message and drops this
   instance of the module (its memory is in an unknown state), so nothing here needs unwinding.
*/
#include <emscripten.h>
#include "llama2/generate.h"

void open_model(Model *m, const char *checkpoint_path); // run.c's or runq.c's

static Model model;
static Tokenizer tokenizer;
static Sampler sampler;
static Generation gen;
static int have_tokenizer, have_sampler, running;

static void web_unload(void) {
    if (running) { generation_end(&gen); running = 0; }
    if (have_sampler) { free_sampler(&sampler); have_sampler = 0; }
    if (have_tokenizer) { free_tokenizer(&tokenizer); have_tokenizer = 0; }
    if (model.t) { model.free(model.t); model.t = NULL; }
}

// Loads a model and its tokenizer (files in the module's file system); returns the context length.
EMSCRIPTEN_KEEPALIVE int web_load(const char *checkpoint_path, const char *tokenizer_path) {
    web_unload();
    open_model(&model, checkpoint_path);
    build_tokenizer(&tokenizer, tokenizer_path, model.config->vocab_size);
    have_tokenizer = 1;
    return model.config->seq_len;
}

// Starts a story with ./run's settings: seed 0 takes the time, steps 0 (or too many) the context.
EMSCRIPTEN_KEEPALIVE void web_start(const char *prompt, float temperature, float topp, double seed, int steps) {
    if (!model.t) die("no model loaded");
    if (running) { generation_end(&gen); running = 0; }
    if (have_sampler) free_sampler(&sampler);
    const Config *c = model.config;
    unsigned long long rng_seed = (unsigned long long)seed;
    if (rng_seed == 0) rng_seed = (unsigned int)time(NULL);
    if (steps <= 0 || steps > c->seq_len) steps = c->seq_len;
    build_sampler(&sampler, c->vocab_size, temperature, topp, rng_seed);
    have_sampler = 1;
    generation_start(&gen, &model, &tokenizer, &sampler, prompt, steps);
    running = 1;
}

// One more token of the story; 0 once it is over.
EMSCRIPTEN_KEEPALIVE int web_next(void) { return running && generation_next(&gen); }

// Ends the story (finished or stopped); returns how many tokens ran through the model after the prompt.
EMSCRIPTEN_KEEPALIVE int web_end(void) {
    if (!running) return 0;
    generation_end(&gen);
    running = 0;
    return gen.generated;
}

// How many prompt tokens ran through the model (valid after web_start).
EMSCRIPTEN_KEEPALIVE int web_prompt_tokens(void) { return gen.np; }
