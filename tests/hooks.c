/* tests/hooks.c: ./run or ./runq (cc -DENGINE='"run.c"' -I. tests/hooks.c) with the hooks the
   tests and benchmarks use, set from environment variables; the shipped binaries have none:
     LLAMA2_LOGITS=path       every sampled step appends (int32 pos, float32[vocab] logits) to path
     LLAMA2_PREFILL_BLOCK=n   the prompt in blocks of n tokens (1: token by token), n < PREFILL_BLOCK
     LLAMA2_MMAP=1            the model file mapped as it is, not copied into huge pages */
#define TESTING
#include ENGINE

static void open_hooked(Model *m, const char *path) {
    open_model(m, path);
    const char *block = getenv("LLAMA2_PREFILL_BLOCK");
    if (block && atoi(block) >= 1 && atoi(block) < m->prefill_block) m->prefill_block = atoi(block);
}

int main(int argc, char *argv[]) {
    const char *dump = getenv("LLAMA2_LOGITS"), *map = getenv("LLAMA2_MMAP");
    if (dump && dump[0] && !(logits_dump = fopen(dump, "wb"))) die("cannot write LLAMA2_LOGITS file %s", dump);
    no_huge_pages = map && strcmp(map, "1") == 0;
    int rc = llama2_main(argc, argv, open_hooked);
    if (logits_dump) fclose(logits_dump);
    return rc;
}
