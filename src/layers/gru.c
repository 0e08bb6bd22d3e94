/*
 * gru.c — the multi-layer GRU, forward and backward, in PyTorch's form (gates r, z, n; weights (3H,in)
 * and (3H,H); two biases), time-major. Dropout between layers (training only).
 *
 * Per layer the input projections of all T steps are one GEMM; each step then adds h W_hhᵀ (one small
 * GEMM) and applies the gates. The backward runs the steps in reverse for dh, storing the gate gradients
 * of every step, then does the weight and input gradients as three GEMMs over all T·B rows.
 *
 * Cache layout (floats, from the caller's pointer aligned to 64 bytes), per layer l:   xin (T,B,H) the dropped input of layer l > 0
 *                                       hs (T+1,B,H) h_0 .. h_T
 *                                       gates (T,B,3H) r | z | n
 *                                       ghn (T,B,H) W_hn h + b_hn
 * then the scratch: gi (T,B,3H) input projections / input-gate gradients, gh (T,B,3H) hidden-gate
 * gradients, dcur (T,B,H), dnext (T,B,max(in,H)), dh (B,H), dhp (B,H).
 */
#include "util.h"

#include <cblas.h>
#include <string.h>


static int layer_in(const attn_gru *g, int l) { return l == 0 ? g->in : g->H; }

size_t attn_gru_n_params(int L, int in, int H) {
    if (L <= 0 || in <= 0 || H <= 0) return 0;
    size_t per_hh = (size_t)3 * H * H + 6 * (size_t)H;
    return (size_t)3 * H * in + (size_t)L * per_hh + (size_t)(L - 1) * 3 * H * H;
}

attn_status attn_gru_bind(attn_gru *g, int L, int in, int H, float dropout, float *params, float *grads) {
    if (!g || !params) return ATTN_ERR_NULL;
    if (L <= 0 || L > ATTN_GRU_MAX_LAYERS || in <= 0 || H <= 0 || in > ATTN_MAX_DIM || H > (1 << 20))
        return ATTN_ERR_SIZE;
    if (!(dropout >= 0.0f && dropout < 1.0f)) return ATTN_ERR_ARG;
    memset(g, 0, sizeof *g);
    g->L = L; g->in = in; g->H = H; g->dropout = dropout;
    g->params = params;
    g->grads = grads;
    g->n_params = attn_gru_n_params(L, in, H);
    size_t off = 0;
    for (int l = 0; l < L; l++) {
        size_t nin = (size_t)layer_in(g, l);
        size_t o_ih = off, o_hh = o_ih + 3 * (size_t)H * nin, o_bi = o_hh + 3 * (size_t)H * H, o_bh = o_bi + 3 * (size_t)H;
        g->w_ih[l] = params + o_ih; g->w_hh[l] = params + o_hh;
        g->b_ih[l] = params + o_bi; g->b_hh[l] = params + o_bh;
        if (grads) {
            g->dw_ih[l] = grads + o_ih; g->dw_hh[l] = grads + o_hh;
            g->db_ih[l] = grads + o_bi; g->db_hh[l] = grads + o_bh;
        }
        off = o_bh + 3 * (size_t)H;
    }
    return ATTN_OK;
}

attn_status attn_gru_init_weights(attn_gru *g, attn_rng *rng) {
    if (!g || !rng) return ATTN_ERR_NULL;
    if (g->L <= 0 || g->L > ATTN_GRU_MAX_LAYERS || !g->w_ih[0]) return ATTN_ERR_ARG;
    /* per layer: Xavier-uniform weights, then PyTorch's default biases U(±1/sqrt(H)) */
    const float b = 1.0f / sqrtf((float)g->H);
    for (int l = 0; l < g->L; l++) {
        attn__xavier_uniform(rng, g->w_ih[l], 3 * g->H, layer_in(g, l));
        attn__xavier_uniform(rng, g->w_hh[l], 3 * g->H, g->H);
        attn_rng_fill_uniform(rng, g->b_ih[l], 3 * (size_t)g->H, -b, b);
        attn_rng_fill_uniform(rng, g->b_hh[l], 3 * (size_t)g->H, -b, b);
    }
    return ATTN_OK;
}

/* Offsets into the cache. */
typedef struct gru_cache {
    float *xin[ATTN_GRU_MAX_LAYERS], *hs[ATTN_GRU_MAX_LAYERS], *gates[ATTN_GRU_MAX_LAYERS], *ghn[ATTN_GRU_MAX_LAYERS];
    float *gi, *gh, *dcur, *dnext, *dh, *dhp;
    size_t total;
} gru_cache;

static void cache_carve(const attn_gru *g, float *base, int T, int B, gru_cache *c) {
    const size_t TB = (size_t)T * B, H = (size_t)g->H;
    const size_t inmax = (size_t)(g->in > g->H ? g->in : g->H);
    size_t off = 0;
    /* base NULL only counts (cache_need): no arithmetic on a null pointer */
#define TAKE(ptr, n) do { (ptr) = base ? base + off : NULL; off += (n); } while (0)
    for (int l = 0; l < g->L; l++) {
        c->xin[l] = NULL;
        if (l) TAKE(c->xin[l], TB * H);
        TAKE(c->hs[l], (TB + B) * H);
        TAKE(c->gates[l], TB * 3 * H);
        TAKE(c->ghn[l], TB * H);
    }
    TAKE(c->gi, TB * 3 * H);
    TAKE(c->gh, TB * 3 * H);
    TAKE(c->dcur, TB * H);
    TAKE(c->dnext, TB * inmax);
    TAKE(c->dh, (size_t)B * H);
    TAKE(c->dhp, (size_t)B * H);
#undef TAKE
    c->total = off;
}

/* Bytes of cache, the alignment slack included; 0 for a bad layer or sizes. */
static size_t cache_need(const attn_gru *g, int T, int B) {
    if (!g || g->L <= 0 || g->L > ATTN_GRU_MAX_LAYERS || g->H <= 0 || g->in <= 0) return 0;
    if (T <= 0 || B <= 0 || T > ATTN_MAX_DIM || B > ATTN_MAX_DIM) return 0;
    gru_cache c;
    cache_carve(g, NULL, T, B, &c);
    return sizeof(float) * c.total + ATTN__CACHE_ALIGN;
}

attn_status attn_gru_cache_bytes(const attn_gru *g, int T, int B, size_t *bytes) {
    if (!g || !bytes) return ATTN_ERR_NULL;
    if (g->L <= 0 || g->L > ATTN_GRU_MAX_LAYERS || !g->w_ih[0]) return ATTN_ERR_ARG;
    if (T <= 0 || B <= 0 || T > ATTN_MAX_DIM || B > ATTN_MAX_DIM) return ATTN_ERR_SIZE;
    *bytes = cache_need(g, T, B);
    return ATTN_OK;
}

static uint64_t layer_seed(uint64_t seed, int l) { return attn__mix64(seed + 0x51ed2701ULL * (uint64_t)(l + 1)); }

/* Checks the context, the layer, the sizes and the cache; *kern gets the context's table, whose gate loops
 * (gru_gates, gru_gates_backward) the passes run: libm on the reference path, the path's own exp2 on the
 * fused paths (src/kernels/scalar/layers_impl.h). */
static attn_status check(const attn_ctx *ctx, const attn_gru *g, const void *cache, size_t cache_bytes, int T, int B,
                         const attn_kernels **kern) {
    attn_ctx rc;
    attn_status st = attn__ctx_resolve(ctx, &rc, kern);
    if (st != ATTN_OK) return st;
    if (!g) return ATTN_ERR_NULL;
    if (g->L <= 0 || g->L > ATTN_GRU_MAX_LAYERS || !g->w_ih[0]) return ATTN_ERR_ARG;
    if (T <= 0 || B <= 0 || T > ATTN_MAX_DIM || B > ATTN_MAX_DIM) return ATTN_ERR_SIZE;
    if (!cache || cache_bytes < cache_need(g, T, B)) return ATTN_ERR_WORKSPACE;
    return ATTN_OK;
}

attn_status attn_gru_forward(const attn_ctx *ctx, const attn_gru *g, void *cache, size_t cache_bytes,
                             float *out, float *h_n, const float *x, const float *h0,
                             int T, int B, int train, uint64_t seed) {
    const attn_kernels *kern;
    attn_status st = check(ctx, g, cache, cache_bytes, T, B, &kern);
    if (st != ATTN_OK) return st;
    if (!out || !x) return ATTN_ERR_NULL;
    gru_cache c;
    cache_carve(g, (float *)attn__cache_base(cache), T, B, &c);
    const int H = g->H, H3 = 3 * H;
    const size_t BH = (size_t)B * H;
    const int drop = train && g->dropout > 0.0f;

    for (int l = 0; l < g->L; l++) {
        const int nin = layer_in(g, l);
        const float *xl = l == 0 ? x : c.xin[l];                    /* (T,B,nin) */
        float *hs = c.hs[l];                                       /* (T+1,B,H) */
        /* pass 1: input projections of every step, gi = x W_ihᵀ + b_ih   (T·B,3H) */
        for (size_t r = 0; r < (size_t)T * B; r++) memcpy(c.gi + r * H3, g->b_ih[l], sizeof(float) * H3);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T * B, H3, nin, 1.0f, xl, nin,
                    g->w_ih[l], nin, 1.0f, c.gi, H3);
        if (h0) memcpy(hs, h0 + (size_t)l * BH, sizeof(float) * BH);
        else memset(hs, 0, sizeof(float) * BH);
        /* pass 2: the recurrence */
        for (int t = 0; t < T; t++) {
            const float *hp = hs + (size_t)t * BH;                 /* (B,H) */
            float *hn = hs + (size_t)(t + 1) * BH;                 /* (B,H) */
            float *gt = c.gates[l] + (size_t)t * B * H3;           /* (B,3H) r|z|n, first gh = h W_hhᵀ + b_hh */
            for (int b = 0; b < B; b++) memcpy(gt + (size_t)b * H3, g->b_hh[l], sizeof(float) * H3);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, H3, H, 1.0f, hp, H,
                        g->w_hh[l], H, 1.0f, gt, H3);
            const float *gi = c.gi + (size_t)t * B * H3;
            float *ghn = c.ghn[l] + (size_t)t * BH;
            for (int b = 0; b < B; b++) {
                const float *ib = gi + (size_t)b * H3;
                float *gb = gt + (size_t)b * H3;
                kern->gru_gates(H, ib, ib + H, ib + 2 * H, gb, gb + H, gb + 2 * H, hp + (size_t)b * H,
                          hn + (size_t)b * H, ghn + (size_t)b * H);
            }
        }
        /* the next layer's input: this layer's outputs, through dropout when training */
        if (l + 1 < g->L) {
            if (drop) attn_dropout_forward(c.xin[l + 1], hs + BH, (size_t)T * BH, g->dropout, layer_seed(seed, l));
            else memcpy(c.xin[l + 1], hs + BH, sizeof(float) * (size_t)T * BH);
        }
        if (h_n) memcpy(h_n + (size_t)l * BH, hs + (size_t)T * BH, sizeof(float) * BH);
    }
    memcpy(out, c.hs[g->L - 1] + BH, sizeof(float) * (size_t)T * BH);
    return ATTN_OK;
}

attn_status attn_gru_backward(const attn_ctx *ctx, const attn_gru *g, void *cache, size_t cache_bytes,
                              float *dx, float *dh0, const float *dout, const float *dh_n,
                              const float *x, int T, int B, int train, uint64_t seed) {
    const attn_kernels *kern;
    attn_status st = check(ctx, g, cache, cache_bytes, T, B, &kern);
    if (st != ATTN_OK) return st;
    if (!x || !g->dw_ih[0]) return ATTN_ERR_NULL;
    gru_cache c;
    cache_carve(g, (float *)attn__cache_base(cache), T, B, &c);
    const int H = g->H, H3 = 3 * H;
    const size_t BH = (size_t)B * H, TB = (size_t)T * B;
    const int drop = train && g->dropout > 0.0f;

    /* dcur (T,B,H): gradient of the top layer's outputs */
    if (dout) memcpy(c.dcur, dout, sizeof(float) * TB * H);
    else memset(c.dcur, 0, sizeof(float) * TB * H);

    for (int l = g->L - 1; l >= 0; l--) {
        const int nin = layer_in(g, l);
        const float *xl = l == 0 ? x : c.xin[l];                    /* (T,B,nin) */
        const float *hs = c.hs[l];                                 /* (T+1,B,H) */
        if (dh_n) memcpy(c.dh, dh_n + (size_t)l * BH, sizeof(float) * BH);
        else memset(c.dh, 0, sizeof(float) * BH);
        /* pass 1: reverse recurrence; gate gradients of every step into gi (input side) and gh */
        for (int t = T - 1; t >= 0; t--) {
            const float *hp = hs + (size_t)t * BH;
            const float *gt = c.gates[l] + (size_t)t * B * H3;
            const float *ghn = c.ghn[l] + (size_t)t * BH;
            const float *dct = c.dcur + (size_t)t * BH;
            float *di = c.gi + (size_t)t * B * H3, *dg = c.gh + (size_t)t * B * H3;
            for (int b = 0; b < B; b++) {
                const float *gb = gt + (size_t)b * H3;
                float *dib = di + (size_t)b * H3, *dgb = dg + (size_t)b * H3;
                kern->gru_gates_backward(H, gb, gb + H, gb + 2 * H, ghn + (size_t)b * H, hp + (size_t)b * H,
                                   c.dh + (size_t)b * H, dct + (size_t)b * H, dib, dib + H, dib + 2 * H,
                                   dgb, dgb + H, dgb + 2 * H, c.dhp + (size_t)b * H);
            }
            /* dh_{t-1} = dhv·z + dgh W_hh */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, H3, 1.0f, dg, H3,
                        g->w_hh[l], H, 1.0f, c.dhp, H);
            memcpy(c.dh, c.dhp, sizeof(float) * BH);
        }
        if (dh0) for (size_t i = 0; i < BH; i++) dh0[(size_t)l * BH + i] += c.dh[i];
        /* pass 2: weight and bias gradients over all T·B rows */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H3, H, (int)TB, 1.0f, c.gh, H3,
                    hs, H, 1.0f, g->dw_hh[l], H);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H3, nin, (int)TB, 1.0f, c.gi, H3,
                    xl, nin, 1.0f, g->dw_ih[l], nin);
        for (size_t r = 0; r < TB; r++) {
            const float *a = c.gi + r * H3, *bb = c.gh + r * H3;
            for (int j = 0; j < H3; j++) { g->db_ih[l][j] += a[j]; g->db_hh[l][j] += bb[j]; }
        }
        /* pass 3: the input gradient, dx_l = dgi W_ih */
        if (l > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)TB, nin, H3, 1.0f, c.gi, H3,
                        g->w_ih[l], nin, 0.0f, c.dnext, nin);
            /* back through the dropout into the outputs of layer l-1 */
            if (drop) {
                memset(c.dcur, 0, sizeof(float) * TB * H);
                attn_dropout_backward(c.dcur, c.dnext, TB * H, g->dropout, layer_seed(seed, l - 1));
            } else {
                memcpy(c.dcur, c.dnext, sizeof(float) * TB * H);
            }
        } else if (dx) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)TB, nin, H3, 1.0f, c.gi, H3,
                        g->w_ih[0], nin, 1.0f, dx, nin);
        }
    }
    return ATTN_OK;
}
