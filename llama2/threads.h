// threads.h: OpenMP without its costs: one thread skips the runtime; a matmul's tiles shared by lock-free work stealing.
#pragma once
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#include <stdatomic.h>
#endif

// With one thread the kernels skip OpenMP: even a team of one costs a parallel region's entry,
// and a token runs dozens of them. (An `if (use_threads())` clause on the pragma still enters the
// runtime, so the loops that matter are written twice; bench/README.md.)
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
// one that waits at the end of a matmul leaves its share of the memory bandwidth unused;
// schedule(dynamic) hands out chunks in turn, which breaks each thread's stream. A tile goes to
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

// Runs tile(ctx, k) for k in 0..n-1, shared by the threads as above.
static void for_each_tile(int n, void (*tile)(void *ctx, int k), void *ctx) {
#ifdef _OPENMP
    if (use_threads()) {
        share_tiles(n);
        #pragma omp parallel
        {
            int a, b;
            while (share_next(&a, &b))
                for (int k = a; k < b; k++) tile(ctx, k);
        }
        return;
    }
#endif
    for (int k = 0; k < n; k++) tile(ctx, k);
}
