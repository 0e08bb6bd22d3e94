/*
 * test_golden.c — the mechanisms against PyTorch. Reads every tests/golden/mech_*.safetensors (written by
 * tools/golden/gen_mechanisms.py and gen_sparse.py, float64 autograd) with attn's own safetensors reader, runs each case
 * through the public API in float32 and compares the outputs, weights, log-sum-exp and every gradient.
 *
 * Passes: the reference path with weights requested (attn_set_isa(ATTN_ISA_REF)), then every other path
 * this build and CPU support (scalar, avx2, avx512) without weights, so the fused kernels are held to
 * PyTorch too. Additive attention has one implementation; it runs in every pass, with weights in the first.
 *
 * Tolerance: |got - want| <= ATOL + RTOL·|want| with ATOL = RTOL = 1e-5 (float32 arithmetic on O(1)
 * values against float64). lse: -inf (fully masked rows) must match exactly, the rest as above.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "testutil.h"

#include <dirent.h>
#include <stdint.h>
#include <string.h>

#define ATOL 1e-5
#define RTOL 1e-5

/* Worst errors per (pass, quantity), over all cases. */
enum { Q_OUT, Q_WEIGHTS, Q_LSE, Q_DQ, Q_DK, Q_DV, Q_DWQ, Q_DWK, Q_DWV, Q_DSINK, Q_COUNT };
static const char *const q_names[Q_COUNT] = {"out", "weights", "lse", "dq", "dk", "dv", "dwq", "dwk", "dwv", "dsink"};
static double g_worst_abs[ATTN_ISA_COUNT][Q_COUNT], g_worst_rel[ATTN_ISA_COUNT][Q_COUNT];
static int g_cases_run[ATTN_ISA_COUNT], g_compared[ATTN_ISA_COUNT][Q_COUNT];

typedef struct golden {
    attn_st_file f;
    const char *file;            /* base name, for labels */
    const char *cs;              /* the case being read */
    int ok;                      /* 0 once a tensor is missing or malformed */
} golden;

/* "<case>/<name>" of dtype dt and rank ndim (shape out); NULL (and a failure) if absent or different. */
static const attn_st_tensor *gt(golden *g, const char *name, attn_dtype dt, int ndim, int required) {
    char key[256];
    snprintf(key, sizeof key, "%s/%s", g->cs, name);
    const attn_st_tensor *t = attn_st_find(&g->f, key);
    if (!t) {
        if (required) {
            fprintf(stderr, "  %s: %s missing\n", g->file, key);
            g->ok = 0;
        }
        return NULL;
    }
    if (t->dtype != dt || t->ndim != ndim) {
        fprintf(stderr, "  %s: %s has dtype %d rank %d, expected dtype %d rank %d\n", g->file, key, (int)t->dtype,
                t->ndim, (int)dt, ndim);
        g->ok = 0;
        return NULL;
    }
    return t;
}

static int64_t numel(const attn_st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* An F64 tensor as a new float array (NULL if t is NULL). */
static float *to_f32(const attn_st_tensor *t) {
    if (!t) return NULL;
    int64_t n = numel(t);
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    const double *s = t->data;
    for (int64_t i = 0; i < n; i++) x[i] = (float)s[i];
    return x;
}

static int shape_is(const attn_st_tensor *t, int d0, int d1, int d2, int d3) {
    const int want[4] = {d0, d1, d2, d3};
    for (int i = 0; i < t->ndim && i < 4; i++)
        if (t->shape[i] != want[i]) return 0;
    return 1;
}

/* Compares one quantity; -inf in want must be -inf in got (then both count as 0). */
static void compare(golden *g, attn_isa pass, int qty, const float *got, const attn_st_tensor *want_t) {
    if (!want_t) return;
    size_t n = (size_t)numel(want_t);
    const double *w64 = want_t->data;
    float *want = malloc(sizeof(float) * (n ? n : 1)), *gc = malloc(sizeof(float) * (n ? n : 1));
    size_t inf_mismatch = 0;
    for (size_t i = 0; i < n; i++) {
        want[i] = (float)w64[i];
        gc[i] = got[i];
        if (isinf(w64[i]) && w64[i] < 0) {
            if (!(isinf(got[i]) && got[i] < 0)) inf_mismatch++;
            want[i] = 0;
            gc[i] = isinf(got[i]) && got[i] < 0 ? 0.0f : got[i];
        }
    }
    char label[160];
    snprintf(label, sizeof label, "%s/%s [%s] %s", g->file, g->cs, attn_isa_name(pass), q_names[qty]);
    CHECK(inf_mismatch == 0);
    if (inf_mismatch) fprintf(stderr, "  %s: %zu values should be -inf and are not\n", label, inf_mismatch);
    tu_close_f32(label, gc, want, n, ATOL, RTOL);
    g_compared[pass][qty]++;
    for (size_t i = 0; i < n; i++) {
        double a = fabs((double)gc[i] - (double)want[i]);
        double r = fabs(want[i]) > ATOL ? a / fabs(want[i]) : 0;
        if (!(a <= g_worst_abs[pass][qty])) g_worst_abs[pass][qty] = a;   /* NaN sticks */
        if (!(r <= g_worst_rel[pass][qty])) g_worst_rel[pass][qty] = r;
    }
    free(want);
    free(gc);
}

/* Mask parts of a case: valid lengths, causal, allow (U8) and bias (F64 -> float); batch/head axes of size
 * 1 broadcast with stride 0. */
typedef struct mask_parts {
    attn_mask m;
    float *bias, *sink_logits, *alibi_slopes;
} mask_parts;

static void read_mask(golden *g, mask_parts *mp, int B, int H, int T, int S) {
    memset(mp, 0, sizeof *mp);
    char key[256];
    snprintf(key, sizeof key, "%s/valid_lens_kind", g->cs);
    const char *kind = attn_st_meta(&g->f, key);
    snprintf(key, sizeof key, "%s/causal", g->cs);
    const char *causal = attn_st_meta(&g->f, key);
    if (!kind || !causal) { fprintf(stderr, "  %s/%s: mask metadata missing\n", g->file, g->cs); g->ok = 0; return; }
    mp->m.causal = strcmp(causal, "1") == 0;
    if (strcmp(kind, "per_batch") == 0 || strcmp(kind, "per_query") == 0) {
        int per_query = kind[4] == 'q';
        const attn_st_tensor *vl = gt(g, "valid_lens", ATTN_DTYPE_I32, per_query ? 2 : 1, 1);
        if (!vl) return;
        if (vl->shape[0] != B || (per_query && vl->shape[1] != T)) { g->ok = 0; return; }
        mp->m.valid_lens_kind = per_query ? ATTN_VALID_LENS_PER_QUERY : ATTN_VALID_LENS_PER_BATCH;
        mp->m.valid_lens = vl->data;
    } else if (strcmp(kind, "none") != 0) {
        fprintf(stderr, "  %s/%s: unknown valid_lens_kind %s\n", g->file, g->cs, kind);
        g->ok = 0;
    }
    const attn_st_tensor *al = gt(g, "allow", ATTN_DTYPE_U8, 4, 0);
    if (al) {
        if (!((al->shape[0] == 1 || al->shape[0] == B) && (al->shape[1] == 1 || al->shape[1] == H) &&
              al->shape[2] == T && al->shape[3] == S)) { g->ok = 0; return; }
        mp->m.allow = al->data;
        mp->m.allow_stride[0] = al->shape[0] == 1 ? 0 : al->shape[1] * T * S;
        mp->m.allow_stride[1] = al->shape[1] == 1 ? 0 : (int64_t)T * S;
        mp->m.allow_stride[2] = S;
    }
    const attn_st_tensor *bi = gt(g, "bias", ATTN_DTYPE_F64, 4, 0);
    if (bi) {
        if (!((bi->shape[0] == 1 || bi->shape[0] == B) && (bi->shape[1] == 1 || bi->shape[1] == H) &&
              bi->shape[2] == T && bi->shape[3] == S)) { g->ok = 0; return; }
        mp->bias = to_f32(bi);
        mp->m.bias = mp->bias;
        mp->m.bias_stride[0] = bi->shape[0] == 1 ? 0 : bi->shape[1] * T * S;
        mp->m.bias_stride[1] = bi->shape[1] == 1 ? 0 : (int64_t)T * S;
        mp->m.bias_stride[2] = S;
    }

    /* sparse parts (gen_sparse.py): "window" = "left,right" and "sinks" metadata, (H) logits and slopes */
    snprintf(key, sizeof key, "%s/window", g->cs);
    const char *win = attn_st_meta(&g->f, key);
    snprintf(key, sizeof key, "%s/softcap", g->cs);
    const char *cap = attn_st_meta(&g->f, key);
    if (cap) mp->m.softcap = strtof(cap, NULL);
    if (win) {
        snprintf(key, sizeof key, "%s/sinks", g->cs);
        const char *sinks = attn_st_meta(&g->f, key);
        if (sscanf(win, "%d,%d", &mp->m.window_left, &mp->m.window_right) != 2 || !sinks) { g->ok = 0; return; }
        mp->m.window = 1;
        mp->m.sinks = atoi(sinks);
    }
    const attn_st_tensor *bm = gt(g, "block_map", ATTN_DTYPE_U8, 4, 0);
    if (bm) {
        snprintf(key, sizeof key, "%s/block_size", g->cs);
        const char *bsz = attn_st_meta(&g->f, key);
        const int bs = bsz ? atoi(bsz) : 0;
        if (bs < 1 || !((bm->shape[0] == 1 || bm->shape[0] == B) && (bm->shape[1] == 1 || bm->shape[1] == H) &&
                        bm->shape[2] == (T + bs - 1) / bs && bm->shape[3] == (S + bs - 1) / bs)) {
            g->ok = 0;
            return;
        }
        mp->m.block_map = bm->data;
        mp->m.block_size = bs;
        mp->m.block_map_stride[0] = bm->shape[0] == 1 ? 0 : bm->shape[1] * bm->shape[2] * bm->shape[3];
        mp->m.block_map_stride[1] = bm->shape[1] == 1 ? 0 : bm->shape[2] * bm->shape[3];
        mp->m.block_map_stride[2] = bm->shape[3];
    }
    const attn_st_tensor *zs = gt(g, "sink_logits", ATTN_DTYPE_F64, 1, 0);
    if (zs) {
        if (zs->shape[0] != H) { g->ok = 0; return; }
        mp->sink_logits = to_f32(zs);
        mp->m.sink_logits = mp->sink_logits;
    }
    const attn_st_tensor *sl = gt(g, "alibi_slopes", ATTN_DTYPE_F64, 1, 0);
    if (sl) {
        if (sl->shape[0] != H) { g->ok = 0; return; }
        mp->alibi_slopes = to_f32(sl);
        mp->m.alibi_slopes = mp->alibi_slopes;
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Scaled dot-product attention.
 */
static void run_sdpa(golden *g, attn_isa pass, int with_weights) {
    const attn_st_tensor *tq = gt(g, "q", ATTN_DTYPE_F64, 4, 1), *tk = gt(g, "k", ATTN_DTYPE_F64, 4, 1),
                         *tv = gt(g, "v", ATTN_DTYPE_F64, 4, 1), *tsc = gt(g, "scale", ATTN_DTYPE_F64, 0, 1),
                         *tout = gt(g, "out", ATTN_DTYPE_F64, 4, 1), *tw = gt(g, "weights", ATTN_DTYPE_F64, 4, 1),
                         *tlse = gt(g, "lse", ATTN_DTYPE_F64, 3, 1), *tdout = gt(g, "dout", ATTN_DTYPE_F64, 4, 1),
                         *tdq = gt(g, "dq", ATTN_DTYPE_F64, 4, 1), *tdk = gt(g, "dk", ATTN_DTYPE_F64, 4, 1),
                         *tdv = gt(g, "dv", ATTN_DTYPE_F64, 4, 1);
    if (!g->ok) { CHECK(g->ok); return; }
    const int B = (int)tq->shape[0], H = (int)tq->shape[1], T = (int)tq->shape[2], D = (int)tq->shape[3];
    const int Hkv = (int)tk->shape[1], S = (int)tk->shape[2], Dv = (int)tv->shape[3];
    int shapes_ok = shape_is(tk, B, Hkv, S, D) && shape_is(tv, B, Hkv, S, Dv) && shape_is(tout, B, H, T, Dv) &&
                    shape_is(tw, B, H, T, S) && shape_is(tlse, B, H, T, 0) && shape_is(tdout, B, H, T, Dv) &&
                    shape_is(tdq, B, H, T, D) && shape_is(tdk, B, Hkv, S, D) && shape_is(tdv, B, Hkv, S, Dv);
    CHECK(shapes_ok);
    if (!shapes_ok) return;
    mask_parts mp;
    read_mask(g, &mp, B, H, T, S);
    if (!g->ok) { CHECK(g->ok); free(mp.bias); free(mp.sink_logits); free(mp.alibi_slopes); return; }

    float *q = to_f32(tq), *k = to_f32(tk), *v = to_f32(tv), *dout = to_f32(tdout);
    size_t n_out = (size_t)B * H * T * Dv, n_w = (size_t)B * H * T * S, n_lse = (size_t)B * H * T;
    float *out = calloc(n_out, sizeof(float)), *stats = calloc(2 * n_lse, sizeof(float)),
          *lse = calloc(n_lse, sizeof(float));
    float *w = with_weights ? calloc(n_w, sizeof(float)) : NULL;
    float *dq = calloc((size_t)numel(tq), sizeof(float)), *dk = calloc((size_t)numel(tk), sizeof(float)),
          *dv = calloc((size_t)numel(tv), sizeof(float));

    attn_sdpa_desc d;
    CHECK_STATUS(attn_sdpa_desc_init(&d, B, H, T, S, D, Dv), ATTN_OK);
    d.Hkv = Hkv;
    d.k = (attn_layout){(int64_t)Hkv * S * D, (int64_t)S * D, D};
    d.v = (attn_layout){(int64_t)Hkv * S * Dv, (int64_t)S * Dv, Dv};
    d.scale = (float)*(const double *)tsc->data;
    d.mask = mp.m;
    size_t fw = 0, bw = 0;
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    CHECK_STATUS(attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
    size_t wb = fw > bw ? fw : bw;
    void *work = malloc(wb ? wb : 1);

    attn_status st = attn_sdpa_forward(NULL, &d, out, stats, w, q, k, v, work, fw);
    CHECK_STATUS(st, ATTN_OK);
    if (st == ATTN_OK) {
        compare(g, pass, Q_OUT, out, tout);
        if (w) compare(g, pass, Q_WEIGHTS, w, tw);
        CHECK_STATUS(attn_sdpa_logsumexp(stats, (int64_t)n_lse, lse), ATTN_OK);   /* PyTorch's logsumexp */
        compare(g, pass, Q_LSE, lse, tlse);
        st = attn_sdpa_backward(NULL, &d, dq, dk, dv, dout, q, k, v, out, stats, work, bw);
        CHECK_STATUS(st, ATTN_OK);
        if (st == ATTN_OK) {
            compare(g, pass, Q_DQ, dq, tdq);
            compare(g, pass, Q_DK, dk, tdk);
            compare(g, pass, Q_DV, dv, tdv);
        }
        const attn_st_tensor *tds = gt(g, "dsink", ATTN_DTYPE_F64, 1, 0);
        if (mp.sink_logits && tds) {                  /* the sink logits' gradient, from out and stats */
            float *dsink = calloc((size_t)H, sizeof(float));
            CHECK_STATUS(attn_sdpa_sink_backward(&d, dsink, dout, out, stats), ATTN_OK);
            compare(g, pass, Q_DSINK, dsink, tds);
            free(dsink);
        }
    }
    g_cases_run[pass]++;
    free(work); free(q); free(k); free(v); free(dout); free(out); free(stats); free(lse); free(w);
    free(dq); free(dk); free(dv); free(mp.bias); free(mp.sink_logits); free(mp.alibi_slopes);
}

/* ---------------------------------------------------------------------------------------------------
 * Additive attention.
 */
static void run_additive(golden *g, attn_isa pass, int with_weights) {
    const attn_st_tensor *tq = gt(g, "q", ATTN_DTYPE_F64, 3, 1), *tk = gt(g, "k", ATTN_DTYPE_F64, 3, 1),
                         *tv = gt(g, "v", ATTN_DTYPE_F64, 3, 1), *twq = gt(g, "wq", ATTN_DTYPE_F64, 2, 1),
                         *twk = gt(g, "wk", ATTN_DTYPE_F64, 2, 1), *twv = gt(g, "wv", ATTN_DTYPE_F64, 1, 1),
                         *tout = gt(g, "out", ATTN_DTYPE_F64, 3, 1), *tw = gt(g, "weights", ATTN_DTYPE_F64, 3, 1),
                         *tdout = gt(g, "dout", ATTN_DTYPE_F64, 3, 1), *tdq = gt(g, "dq", ATTN_DTYPE_F64, 3, 1),
                         *tdk = gt(g, "dk", ATTN_DTYPE_F64, 3, 1), *tdv = gt(g, "dv", ATTN_DTYPE_F64, 3, 1),
                         *tdwq = gt(g, "dwq", ATTN_DTYPE_F64, 2, 1), *tdwk = gt(g, "dwk", ATTN_DTYPE_F64, 2, 1),
                         *tdwv = gt(g, "dwv", ATTN_DTYPE_F64, 1, 1);
    if (!g->ok) { CHECK(g->ok); return; }
    const int grad_q[6] = {Q_DQ, Q_DK, Q_DV, Q_DWQ, Q_DWK, Q_DWV};
    const attn_st_tensor *grad_t[6] = {tdq, tdk, tdv, tdwq, tdwk, tdwv};
    const int B = (int)tq->shape[0], T = (int)tq->shape[1], Dq = (int)tq->shape[2];
    const int S = (int)tk->shape[1], Dk = (int)tk->shape[2], Dv = (int)tv->shape[2], Dh = (int)twq->shape[0];
    int shapes_ok = shape_is(tk, B, S, Dk, 0) && shape_is(tv, B, S, Dv, 0) && shape_is(twq, Dh, Dq, 0, 0) &&
                    shape_is(twk, Dh, Dk, 0, 0) && shape_is(twv, Dh, 0, 0, 0) && shape_is(tout, B, T, Dv, 0) &&
                    shape_is(tw, B, T, S, 0) && shape_is(tdout, B, T, Dv, 0) && shape_is(tdq, B, T, Dq, 0) &&
                    shape_is(tdk, B, S, Dk, 0) && shape_is(tdv, B, S, Dv, 0) && shape_is(tdwq, Dh, Dq, 0, 0) &&
                    shape_is(tdwk, Dh, Dk, 0, 0) && shape_is(tdwv, Dh, 0, 0, 0);
    CHECK(shapes_ok);
    if (!shapes_ok) return;
    mask_parts mp;
    read_mask(g, &mp, B, 1, T, S);
    if (!g->ok) { CHECK(g->ok); free(mp.bias); free(mp.sink_logits); free(mp.alibi_slopes); return; }

    float *q = to_f32(tq), *k = to_f32(tk), *v = to_f32(tv), *wq = to_f32(twq), *wk = to_f32(twk),
          *wv = to_f32(twv), *dout = to_f32(tdout);
    float *out = calloc((size_t)numel(tout), sizeof(float));
    float *w = with_weights ? calloc((size_t)numel(tw), sizeof(float)) : NULL;
    float *dq = calloc((size_t)numel(tq), sizeof(float)), *dk = calloc((size_t)numel(tk), sizeof(float)),
          *dv = calloc((size_t)numel(tv), sizeof(float)), *dwq = calloc((size_t)numel(twq), sizeof(float)),
          *dwk = calloc((size_t)numel(twk), sizeof(float)), *dwv = calloc((size_t)numel(twv), sizeof(float));

    attn_additive_desc d;
    CHECK_STATUS(attn_additive_desc_init(&d, B, T, S, Dq, Dk, Dv, Dh), ATTN_OK);
    d.mask = mp.m;
    size_t fw = 0, bw = 0;
    CHECK_STATUS(attn_additive_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &fw), ATTN_OK);
    CHECK_STATUS(attn_additive_workspace_size(NULL, &d, ATTN_PASS_BACKWARD, &bw), ATTN_OK);
    size_t wb = fw > bw ? fw : bw;
    void *work = malloc(wb ? wb : 1);

    attn_status st = attn_additive_forward(NULL, &d, out, w, q, k, v, wq, wk, wv, work, fw);
    CHECK_STATUS(st, ATTN_OK);
    if (st == ATTN_OK) {
        compare(g, pass, Q_OUT, out, tout);
        if (w) compare(g, pass, Q_WEIGHTS, w, tw);
        st = attn_additive_backward(NULL, &d, dq, dk, dv, dwq, dwk, dwv, dout, q, k, v, wq, wk, wv, work, bw);
        CHECK_STATUS(st, ATTN_OK);
        if (st == ATTN_OK) {
            const float *got[6] = {dq, dk, dv, dwq, dwk, dwv};
            for (int i = 0; i < 6; i++) compare(g, pass, grad_q[i], got[i], grad_t[i]);
        }
    }
    /* the split form (keys projected once, a step against them, the projection's gradient at the end)
     * against the same golden values: what the Bahdanau translator runs */
    const size_t nkp = (size_t)B * S * Dh;
    float *kp = malloc(sizeof(float) * nkp), *dkp = calloc(nkp, sizeof(float));
    memset(out, 0, sizeof(float) * (size_t)numel(tout));
    memset(dq, 0, sizeof(float) * (size_t)numel(tq)); memset(dk, 0, sizeof(float) * (size_t)numel(tk));
    memset(dv, 0, sizeof(float) * (size_t)numel(tv)); memset(dwq, 0, sizeof(float) * (size_t)numel(twq));
    memset(dwk, 0, sizeof(float) * (size_t)numel(twk)); memset(dwv, 0, sizeof(float) * (size_t)numel(twv));
    st = attn_additive_keys_forward(NULL, &d, kp, k, wk);
    CHECK_STATUS(st, ATTN_OK);
    if (st == ATTN_OK) st = attn_additive_step_forward(NULL, &d, out, NULL, q, kp, v, wq, wv, work, fw);
    CHECK_STATUS(st, ATTN_OK);
    if (st == ATTN_OK) {
        compare(g, pass, Q_OUT, out, tout);
        st = attn_additive_step_backward(NULL, &d, dq, dkp, dv, dwq, dwv, dout, q, kp, v, wq, wv, work, bw);
        CHECK_STATUS(st, ATTN_OK);
        if (st == ATTN_OK) st = attn_additive_keys_backward(NULL, &d, dk, dwk, dkp, k, wk);
        CHECK_STATUS(st, ATTN_OK);
        if (st == ATTN_OK) {
            const float *got[6] = {dq, dk, dv, dwq, dwk, dwv};
            for (int i = 0; i < 6; i++) compare(g, pass, grad_q[i], got[i], grad_t[i]);
        }
    }
    free(kp); free(dkp);
    g_cases_run[pass]++;
    free(work); free(q); free(k); free(v); free(wq); free(wk); free(wv); free(dout); free(out); free(w);
    free(dq); free(dk); free(dv); free(dwq); free(dwk); free(dwv); free(mp.bias);
}

/* ---------------------------------------------------------------------------------------------------
 * Files and passes.
 */
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs every case of one file in one pass. Returns the number of cases. */
static int run_file(const char *dir, const char *name, attn_isa pass, int with_weights) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    golden g;
    memset(&g, 0, sizeof g);
    g.file = name;
    attn_status st = attn_st_read(&g.f, path, 0, err, sizeof err);
    CHECK_STATUS(st, ATTN_OK);
    if (st != ATTN_OK) { fprintf(stderr, "  %s\n", err); return 0; }
    const char *cases = attn_st_meta(&g.f, "cases");
    CHECK(cases != NULL && cases[0] != 0);
    int n = 0;
    char *list = strdup(cases ? cases : "");
    for (char *save = NULL, *c = strtok_r(list, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
        char key[256];
        snprintf(key, sizeof key, "%s/kind", c);
        const char *kind = attn_st_meta(&g.f, key);
        g.cs = c;
        g.ok = 1;
        if (kind && strcmp(kind, "sdpa") == 0) run_sdpa(&g, pass, with_weights);
        else if (kind && strcmp(kind, "additive") == 0) run_additive(&g, pass, with_weights);
        else { fprintf(stderr, "  %s: case %s has kind %s\n", name, c, kind ? kind : "(none)"); CHECK(0); }
        n++;
    }
    free(list);
    attn_st_free(&g.f);
    return n;
}

int main(void) {
    const char *dir = getenv("ATTN_GOLDEN_DIR") ? getenv("ATTN_GOLDEN_DIR") : ATTN_GOLDEN_DIR;   /* override: for mutation checks */
    DIR *dp = opendir(dir);
    if (!dp) { fprintf(stderr, "cannot open %s\n", dir); return 1; }
    char *files[64];
    int nf = 0;
    for (struct dirent *e; (e = readdir(dp)) && nf < 64;) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "mech_", 5) == 0 && len > 12 && strcmp(e->d_name + len - 12, ".safetensors") == 0)
            files[nf++] = strdup(e->d_name);
    }
    closedir(dp);
    qsort(files, (size_t)nf, sizeof files[0], cmp_str);
    printf("%d golden files in %s; tolerance atol %.0e + rtol %.0e\n", nf, dir, ATOL, RTOL);
    CHECK(nf >= 4);

    const attn_isa passes[] = {ATTN_ISA_REF, ATTN_ISA_SCALAR, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    int ran[ATTN_ISA_COUNT] = {0};
    for (size_t p = 0; p < sizeof passes / sizeof passes[0]; p++) {
        attn_isa isa = passes[p];
        if (!attn_cpu_supports(isa)) { printf("== pass %s: CPU lacks it, skipped\n", attn_isa_name(isa)); continue; }
        attn_status st = attn_set_isa(isa);
        if (st == ATTN_ERR_UNSUPPORTED) { printf("== pass %s: not built in, skipped\n", attn_isa_name(isa)); continue; }
        CHECK_STATUS(st, ATTN_OK);
        CHECK(attn_get_isa() == isa);
        int with_weights = isa == ATTN_ISA_REF;
        printf("== pass %s (%s weights)\n", attn_isa_name(isa), with_weights ? "with" : "without");
        for (int i = 0; i < nf; i++) run_file(dir, files[i], isa, with_weights);
        ran[isa] = 1;
    }
    attn_set_isa(ATTN_ISA_AUTO);

    printf("worst errors over all cases (abs / rel where |want| > atol):\n");
    for (int p = 0; p < ATTN_ISA_COUNT; p++) {
        if (!ran[p]) continue;
        printf("  %-7s %3d cases:", attn_isa_name((attn_isa)p), g_cases_run[p]);
        for (int q = 0; q < Q_COUNT; q++)
            if (g_compared[p][q]) printf(" %s %.2g/%.2g", q_names[q], g_worst_abs[p][q], g_worst_rel[p][q]);
        printf("\n");
    }
    CHECK(ran[ATTN_ISA_REF] && g_cases_run[ATTN_ISA_REF] >= 20);
    for (int p = 0; p < ATTN_ISA_COUNT; p++) CHECK(!ran[p] || g_cases_run[p] == g_cases_run[ATTN_ISA_REF]);
    for (int i = 0; i < nf; i++) free(files[i]);
    return tu_finish("test_golden");
}
