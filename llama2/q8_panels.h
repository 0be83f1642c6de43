// q8_panels.h: runq's prefill matmul, PR rows of W times a block of tokens, written once over an ISA's vi (PR int32 lanes) and vp (PR floats) operations (x86_q8.h, neon_q8.h).
#pragma once

// A tile (matmul_tile_q8) sums each row's products across its vector for every group, which costs
// more than the products themselves once a block of tokens shares the weights. A panel instead
// puts PR rows side by side, one a lane (row r's 4 bytes at k..k+3 in lane r: panel_pack), so one
// dot instruction on a broadcast 4 bytes of a token adds the PR rows' products into their own
// lanes: no horizontal sums. The float part is the tile's, row by row: the group's exact int32
// sum, then acc = I * (ws * xs) + acc in group order, so a block gives the bits of single tokens.
#define Q8_PANELS 1
#define PANEL_C 8 // tokens at a time: 2 * PANEL_C vectors of sums in registers

// A panel: pw (n/4, PR) the packed rows; base (groups, PR), what a group's int32 sums start
// from (with Q8_OFFSET -128 times the row's sum of weights in the group, which takes back out
// the 128 added to every activation byte); ws (groups, PR) the rows' scales.
typedef struct { int32_t *pw, *base; float *ws; } Panel;

static Panel alloc_panel(int n, int gs) {
    Panel p;
    p.pw = xcalloc((size_t)n / 4 * PR + 2 * (size_t)(n / gs) * PR, sizeof(int32_t), "a weight panel");
    p.base = p.pw + (size_t)n / 4 * PR;
    p.ws = (float *)(void *)(p.base + (size_t)(n / gs) * PR);
    return p;
}

// Packs rows i..i+PR-1: wi is row i of the int8 matrix, wsi the scales of its 4-row tile (the
// scale_at layout: tile q's scales of group g are the 4 floats at (q * groups + g) * 4).
static void panel_pack(Panel *p, const int8_t *wi, const float *wsi, int n, int gs) {
    int ng = n / gs;
#ifdef vi_gather
    vi idx = vi_index(n);
    for (int k = 0; k < n; k += 4) vi_store(p->pw + (size_t)k / 4 * PR, vi_gather(idx, wi + k));
#else
    for (int k = 0; k < n; k += 4)
        for (int r = 0; r < PR; r++) memcpy(p->pw + (size_t)k / 4 * PR + r, wi + (size_t)r * n + k, 4);
#endif
    for (int g = 0; g < ng; g++) {
        vi b = vi_set1(0);
#if Q8_OFFSET
        for (int k = g * gs; k < (g + 1) * gs; k += 4) b = vi_dot(b, vi_set1((int32_t)0x80808080u), vi_load(p->pw + (size_t)k / 4 * PR));
        b = vi_sub(vi_set1(0), b);
#endif
        vi_store(p->base + (size_t)g * PR, b);
        for (int r = 0; r < PR; r++) p->ws[(size_t)g * PR + r] = wsi[((size_t)(r / 4) * ng + g) * 4 + r % 4];
    }
}

#ifndef vi_bcast4 // 4 bytes of a token in every lane, each + 128 as unsigned where Q8_OFFSET
static inline vi vi_bcast4(const int8_t *p) {
    int32_t x4;
    memcpy(&x4, p, 4);
    return vi_set1(Q8_OFFSET ? x4 ^ (int32_t)0x80808080u : x4);
}
#endif

// The panel's rows i.. for the C tokens t..t+C-1
static inline __attribute__((always_inline)) void panel_tokens(float *xout, const int8_t *xq, const float *xs, const Panel *p,
                                                               int n, int d, int gs, int i, int t, int C) {
    int ng = n / gs;
    vp acc[PANEL_C];
    for (int c = 0; c < C; c++) acc[c] = vp_zero();
    for (int g = 0; g < ng; g++) {
        vi sum[PANEL_C], b = vi_load(p->base + (size_t)g * PR);
        for (int c = 0; c < C; c++) sum[c] = b;
        for (int k = g * gs; k < (g + 1) * gs; k += 4) {
            vi wv = vi_load(p->pw + (size_t)k / 4 * PR);
            for (int c = 0; c < C; c++) sum[c] = vi_dot(sum[c], vi_bcast4(xq + (size_t)(t + c) * n + k), wv);
        }
        vp ws = vp_load(p->ws + (size_t)g * PR);
        for (int c = 0; c < C; c++) acc[c] = vp_fma(sum[c], vp_scale(ws, xs[(size_t)(t + c) * ng + g]), acc[c]);
    }
    for (int c = 0; c < C; c++) vp_store(xout + (size_t)(t + c) * d + i, acc[c]);
}

// Rows i..i+PR-1 of xout (T,d) for all T tokens: packed once, then PANEL_C tokens at a time (the
// constant C of each call keeps the sums in registers).
static void panel_rows(float *xout, const int8_t *xq, const float *xs, const int8_t *wi, const float *wsi, Panel *p,
                       int T, int n, int d, int gs, int i) {
    int t = 0;
    panel_pack(p, wi, wsi, n, gs);
    for (; t + PANEL_C <= T; t += PANEL_C) panel_tokens(xout, xq, xs, p, n, d, gs, i, t, PANEL_C);
    switch (T - t) {
        case 7: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 7); break;
        case 6: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 6); break;
        case 5: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 5); break;
        case 4: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 4); break;
        case 3: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 3); break;
        case 2: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 2); break;
        case 1: panel_tokens(xout, xq, xs, p, n, d, gs, i, t, 1); break;
    }
}
