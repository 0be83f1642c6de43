// vf.h: the fp32 kernels written once over an ISA's vector vf of VF floats (vf_zero, vf_load, vf_fma, vf_sum): dot and the matmul tile.
#pragma once

// dot_ref, VF products at a time
static inline float dot_vf(const float *a, const float *b, int n) {
    float val = 0.0f;
    int j = 0;
    vf acc = vf_zero();
    for (; j + VF <= n; j += VF) acc = vf_fma(vf_load(a + j), vf_load(b + j), acc);
    val = vf_sum(acc);
    for (; j < n; j++) val += a[j] * b[j];
    return val;
}
#define dot dot_vf

#ifndef vf_keep // an ISA whose vector FMAs take a memory operand (x86.h) keeps a loaded vector in its register
#define vf_keep(v) ((void)0)
#endif

#ifndef vf_sum4 // out[0..3] = vf_sum of a, b, c, d; an ISA file may do the four sums' additions side by side
#define vf_sum4(out, a, b, c, d) ((out)[0] = vf_sum(a), (out)[1] = vf_sum(b), (out)[2] = vf_sum(c), (out)[3] = vf_sum(d))
#endif

#ifndef VF_ROW // where row i + r of a tile of R rows holds its floats j..: the file's row order
#define VF_ROW(w, i, r, n, j, R) ((w) + (size_t)((i) + (r)) * (n) + (j))
#endif

// Tokens per tile: the R*C accumulators, C activation vectors and a weight vector fit the
// registers (32 vectors with AVX-512 and NEON, 16 with AVX2 and, once compiled, SIMD128).
#if VF == 16 || defined(USE_NEON)
#define TILE_C 6
#else
#define TILE_C 3
#endif

// R rows of W times C rows of x (xs floats apart), R*C vector accumulators in registers; each W
// load serves C tokens and each x load R rows. Every output is the same chain of vector FMAs over its row (one
// accumulator, VF partial sums), the same vf_sum and the same scalar tail whatever the tile, so a
// token's logits do not depend on the prefill block or the thread count. fetch: bring the rows
// PREFETCH_ROWS ahead into the cache meanwhile.
static inline __attribute__((always_inline)) void matmul_tile(float *xout, const float *x, size_t xs, const float *w,
                                                              int n, int d, int i, int t, int R, int C, int fetch) {
    vf acc[4][TILE_C];
    for (int r = 0; r < R; r++) for (int c = 0; c < C; c++) acc[r][c] = vf_zero();
    int ahead = fetch && prefetch_ahead(i, d);
    int j = 0;
    for (; j + VF <= n; j += VF) {
        // fetch the rows of the tile 4 tiles ahead, 4 * VF floats of it per step (64-byte lines)
        if (ahead) for (int f = 0; f < 4 * VF; f += 16) __builtin_prefetch(w + (size_t)(i + PREFETCH_ROWS) * n + 4 * j + f);
        vf xv[TILE_C];
        for (int c = 0; c < C; c++) xv[c] = vf_load(x + (size_t)(t + c) * xs + j);
        for (int c = 0; c < C; c++) vf_keep(xv[c]);
        for (int r = 0; r < R; r++) {
            vf wv = vf_load(VF_ROW(w, i, r, n, j, R));
            for (int c = 0; c < C; c++) acc[r][c] = vf_fma(wv, xv[c], acc[r][c]);
        }
    }
    for (int c = 0; c < C; c++) {
        float *out = xout + (size_t)(t + c) * d + i;
        if (R == 4) vf_sum4(out, acc[0][c], acc[1][c], acc[2][c], acc[3][c]);
        else for (int r = 0; r < R; r++) out[r] = vf_sum(acc[r][c]);
    }
    for (int c = 0; c < C; c++) // the scalar tail after the vector sums, as in dot_vf (a loop of its own: the
        for (int k = j; k < n; k++) // one above then keeps the accumulators in registers)
            for (int r = 0; r < R; r++) xout[(size_t)(t + c) * d + i + r] += w[(size_t)(i + r) * n + k] * x[(size_t)(t + c) * xs + k];
}

// run.c's matmul_rows_ref in tiles: 4 rows by TILE_C tokens, so the 4 rows stay in the L1 cache
// while the tokens go by (the constant C of each call keeps the tile in registers); the last rows
// (< 4) one by one. A block reads its rows many times and computes long enough for the hardware
// prefetcher to bring the next ones: only a generated token fetches ahead (prefetching in blocks
// slowed prefill).
static inline void matmul_rows_vf(float *xout, const float *x, size_t xs, const float *w, int T, int n, int d, int i) {
    int fetch = T == 1;
    if (i + 4 <= d) {
        int t = 0;
        for (; t + TILE_C <= T; t += TILE_C) matmul_tile(xout, x, xs, w, n, d, i, t, 4, TILE_C, fetch);
        switch (T - t) {
#if TILE_C > 5
            case 5: matmul_tile(xout, x, xs, w, n, d, i, t, 4, 5, fetch); break;
#endif
#if TILE_C > 4
            case 4: matmul_tile(xout, x, xs, w, n, d, i, t, 4, 4, fetch); break;
#endif
#if TILE_C > 3
            case 3: matmul_tile(xout, x, xs, w, n, d, i, t, 4, 3, fetch); break;
#endif
            case 2: matmul_tile(xout, x, xs, w, n, d, i, t, 4, 2, fetch); break;
            case 1: matmul_tile(xout, x, xs, w, n, d, i, t, 4, 1, fetch); break;
        }
    } else {
        for (int r = i; r < d; r++)
            for (int t = 0; t < T; t++) matmul_tile(xout, x, xs, w, n, d, r, t, 1, 1, 0);
    }
}
#define matmul_rows matmul_rows_vf
