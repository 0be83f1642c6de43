/* The host's streaming-read bandwidth, the ceiling of a memory-bound token: bench_run.py builds
   this and prints every generation row as a share of it. Reads a buffer of the given size (the
   model's, so it does not fit in cache) from start to end, the threads splitting it into
   contiguous parts as the matmuls split the rows, and prints the best of the passes in GB/s.
   On Linux the buffer is backed by 2 MB pages (transparent huge pages), as the runners' weights
   are: with 4 KB pages the TLB misses lower the limit (4-10% on an Ice Lake Xeon).

   cc -O3 -march=native -fopenmp -o memread bench/memread.c
   OMP_NUM_THREADS=1 ./memread 440000000 [passes] */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/mman.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: memread <bytes> [passes]\n"); return 1; }
    size_t n = strtoull(argv[1], NULL, 10) / sizeof(uint64_t) / 64 * 64;
    int passes = argc > 2 ? atoi(argv[2]) : 10;
    size_t huge = (size_t)2 << 20, bytes = (n * sizeof(uint64_t) + huge - 1) / huge * huge;
    uint64_t *buf = aligned_alloc(huge, bytes);
#ifdef MADV_HUGEPAGE
    if (buf) madvise(buf, bytes, MADV_HUGEPAGE);
#endif
    if (!buf || n == 0) { fprintf(stderr, "error: cannot allocate %s bytes\n", argv[1]); return 1; }
    for (size_t i = 0; i < n; i++) buf[i] = i; // touch every page before timing
    double best = 1e30;
    uint64_t sink = 0;
    for (int p = 0; p < passes; p++) {
        double t0 = now();
        uint64_t total = 0;
        // 8 independent sums (the compiler vectorizes each) keep enough loads in flight
        #pragma omp parallel for schedule(static) reduction(^:total)
        for (size_t blk = 0; blk < n / 64; blk++) {
            uint64_t acc[8] = {0};
            const uint64_t *b = buf + blk * 64;
            for (int j = 0; j < 64; j += 8)
                for (int k = 0; k < 8; k++) acc[k] ^= b[j + k];
            for (int k = 0; k < 8; k++) total ^= acc[k];
        }
        double dt = now() - t0;
        sink ^= total;
        if (dt < best) best = dt;
    }
    printf("%.2f GB/s\n", n * sizeof(uint64_t) / best / 1e9);
    free(buf);
    return sink == 42; // keeps the sums alive
}
