/*
 * layers_impl.h — the layers' per-ISA loops, written once over the vector abstraction of fused_impl.h
 * (fz_v, fz_exp2, ...) and compiled by each kernel path after it: one row of GRU gates forward and
 * backward, and additive (Bahdanau) attention against projected keys, forward and backward. Not a public
 * header; everything is static and reaches the library through the path's table (kernels_impl.h).
 *
 * The transcendental functions come from the path's exp2, the one polynomial each path has:
 *   σ(x)    = 1 / (1 + 2^(-x·log2 e))
 *   tanh(x) = 2 / (1 + 2^(-2x·log2 e)) - 1      (absolute error about 1e-7; exactly ±1 far out)
 * so every path's GRU and additive attention agree with the reference (libm) to a few ulps, and the
 * choice of path never changes which weights a mask zeroes.
 */
#ifndef FZ_TABLE
#error "layers_impl.h: include after the path's vector operations and fused_impl.h"
#endif

FZ_INLINE fz_v fz_sigmoid(fz_v x) {
    return fz_div(fz_set1(1.0f), fz_add(fz_set1(1.0f), fz_exp2(fz_mul(x, fz_set1(-FZ_LOG2E)))));
}

FZ_INLINE fz_v fz_tanh(fz_v x) {
    const fz_v e = fz_exp2(fz_mul(x, fz_set1(-2.0f * FZ_LOG2E)));
    return fz_sub(fz_div(fz_set1(2.0f), fz_add(fz_set1(1.0f), e)), fz_set1(1.0f));
}

/* ---------------------------------------------------------------------------------------------------
 * GRU gates of one row (src/layers/gru.c; the reference in src/ref/layers_ref.c):
 *   r = σ(ir + gr), z = σ(iz + gz), n = tanh(in + r·gn), h' = (1 - z)·n + z·h;  gr, gz, gn <- r, z, n,
 *   ghn <- gn (the hidden-side n sum, saved for the backward).
 */
static void fz_gru_gates(int H, const float *ir, const float *iz, const float *in, float *gr, float *gz, float *gn,
                         const float *hp, float *hn, float *ghn) {
    for (int j = 0; j < H; j += FZ_VW) {
        const fz_m tm = fz_tailmask(H - j);
        const fz_v r = fz_sigmoid(fz_add(fz_loadm(ir + j, tm), fz_loadm(gr + j, tm)));
        const fz_v z = fz_sigmoid(fz_add(fz_loadm(iz + j, tm), fz_loadm(gz + j, tm)));
        const fz_v a = fz_loadm(gn + j, tm);
        const fz_v n = fz_tanh(fz_fma(r, a, fz_loadm(in + j, tm)));
        const fz_v h = fz_fma(z, fz_sub(fz_loadm(hp + j, tm), n), n);      /* (1 - z)·n + z·h */
        fz_storem(ghn + j, a, tm);
        fz_storem(gr + j, r, tm);
        fz_storem(gz + j, z, tm);
        fz_storem(gn + j, n, tm);
        fz_storem(hn + j, h, tm);
    }
}

static void fz_gru_gates_backward(int H, const float *r_, const float *z_, const float *n_, const float *ghn,
                                  const float *hp, const float *dh, const float *dout, float *dir, float *diz,
                                  float *din, float *dhr, float *dhz, float *dhn, float *dhp) {
    const fz_v one = fz_set1(1.0f);
    for (int j = 0; j < H; j += FZ_VW) {
        const fz_m tm = fz_tailmask(H - j);
        const fz_v dhv = fz_add(fz_loadm(dh + j, tm), fz_loadm(dout + j, tm));
        const fz_v r = fz_loadm(r_ + j, tm), z = fz_loadm(z_ + j, tm), n = fz_loadm(n_ + j, tm);
        const fz_v dn = fz_mul(dhv, fz_sub(one, z));
        const fz_v dz = fz_mul(dhv, fz_sub(fz_loadm(hp + j, tm), n));
        const fz_v dnp = fz_mul(dn, fz_sub(one, fz_mul(n, n)));
        const fz_v drp = fz_mul(fz_mul(dnp, fz_loadm(ghn + j, tm)), fz_mul(r, fz_sub(one, r)));
        const fz_v dzp = fz_mul(dz, fz_mul(z, fz_sub(one, z)));
        fz_storem(dir + j, drp, tm); fz_storem(diz + j, dzp, tm); fz_storem(din + j, dnp, tm);
        fz_storem(dhr + j, drp, tm); fz_storem(dhz + j, dzp, tm); fz_storem(dhn + j, fz_mul(dnp, r), tm);
        fz_storem(dhp + j, fz_mul(dhv, z), tm);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Additive attention against projected keys kp = k W_kᵀ (B,S,Dh) (src/core/additive.c sizes the work):
 *   a = q W_qᵀ (B,T,Dh) (CBLAS);  x_ts = Σ_j wv_j tanh(a_tj + kp_sj) (+ bias), masked keys -inf;
 *   P_ts = softmax_s(x_ts);  out_t = Σ_s m_ts P_ts v_s (m the dropout factor of weight (b·T + t)·S + s).
 * The backward recomputes the scores and tanh values (nothing saved):
 *   dP_s = m_s dout·v_s, Δ = Σ P dP, dx_s = P_s (dP_s - Δ);  dv_s += m_s P_s dout;  with u = tanh(..):
 *   dwv += dx_s u, da_t += dx_s wv ∘ (1 - u²), dkp_s += the same;  dq += da W_q, dW_q += daᵀ q (CBLAS).
 * Rows are handled one at a time in order, so sums into dkp, dv and dwv have a fixed order.
 *
 * bf16 compute (d->compute BF16, which src/core/additive.c leaves set only on the paths with bf16 units):
 * the operands of the attention's products are rounded to bf16 — w_v and V once per call into the work,
 * the tanh values u as they are made, the dropped-out weights m_s P_s, dout's row, and dx_s — and every
 * sum stays fp32. A product of two bf16 values is exact in fp32, so each FMA here adds what a vdpbf16ps
 * lane or a tile adds; only the order of the sums differs. The elementwise parts (a + kp, the tanh and
 * its derivative 1 - u², the softmax) stay fp32, as the tiles paths keep the softmax in fp32.
 */
typedef struct fz_add_work {
    float *a, *da;               /* (B,T,Dh) */
    float *x, *g;                /* (S + FZ_VW) scores / probabilities, and m_s dout·v_s */
    float *wvr, *vr, *gr;        /* bf16 compute: w_v (Dh), V (B,S,Dv) and one dout row (Dv), rounded */
} fz_add_work;

static fz_add_work fz_add_carve(const attn_additive_desc *d, void *work) {
    const size_t n = (size_t)d->B * d->T * d->Dh, S = (size_t)d->S + FZ_VW;
    float *w = (float *)(((uintptr_t)work + FZ_ALIGN - 1) & ~(uintptr_t)(FZ_ALIGN - 1));
    fz_add_work k = {w, w + n, w + 2 * n, w + 2 * n + S, NULL, NULL, NULL};
    if (d->compute == ATTN_DTYPE_BF16) {
        k.wvr = k.g + S;
        k.vr = k.wvr + d->Dh + FZ_VW;
        k.gr = k.vr + (size_t)d->B * d->S * d->Dv;
    }
    return k;
}

/* x rounded to bf16 (to nearest even, NaN kept), as fp32. A path may define its own (FZ_HAVE_BFR). */
#ifndef FZ_HAVE_BFR
FZ_INLINE fz_v fz_bfr(fz_v x) {
    float b[FZ_VW];
    fz_store(b, x);
    for (int i = 0; i < FZ_VW; i++) b[i] = attn__f32(attn__bf16(b[i]));
    return fz_load(b);
}
#endif

static float fz_bf1(float x) { return attn__f32(attn__bf16(x)); }

/* dst (n) = src rounded to bf16 */
static void fz_add_round(float *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + FZ_VW <= n; i += FZ_VW) fz_store(dst + i, fz_bfr(fz_load(src + i)));
    for (; i < n; i++) dst[i] = fz_bf1(src[i]);
}

/* w_v · tanh(a_t + kp_s) over Dh; bf (a constant where it is inlined) rounds the tanh values to bf16. */
FZ_INLINE float fz_add_dot(const float *at, const float *cs, const float *wv, int Dh, const int bf) {
    fz_v acc = fz_zero();
    for (int j = 0; j < Dh; j += FZ_VW) {
        const fz_m tm = fz_tailmask(Dh - j);
        const fz_v u = fz_tanh(fz_add(fz_loadm(at + j, tm), fz_loadm(cs + j, tm)));
        acc = fz_fma(fz_loadm(wv + j, tm), bf ? fz_bfr(u) : u, acc);
    }
    return fz_hsum(acc);
}

/* x (S) = the scores of row (b,t) against the keys it may see (the rest -inf); returns their max. With
 * bf16 compute wv is rounded already and the tanh values are rounded here. */
static float fz_add_scores(const attn_additive_desc *d, float *x, const float *at, const float *kpb, const float *wv,
                           int b, int t) {
    const int bf = d->compute == ATTN_DTYPE_BF16;
    const int S = d->S, Dh = d->Dh, n = attn__key_limit(&d->mask, b, t, d->T, S);
    const uint8_t *allow = attn__allow_row(&d->mask, b, 0, t);
    const float *bias = attn__bias_row(&d->mask, b, 0, t);
    float mx = -INFINITY;
    for (int s = 0; s < S; s++) {
        float xs = -INFINITY;
        if (s < n && (!allow || allow[s])) {
            const float *cs = kpb + (int64_t)s * Dh;
            xs = bf ? fz_add_dot(at, cs, wv, Dh, 1) : fz_add_dot(at, cs, wv, Dh, 0);
            if (bias) xs += bias[s];
        }
        x[s] = xs;
        if (xs > mx || xs != xs) mx = xs;                /* once NaN, stays NaN */
    }
    return mx;
}

/* x (S) <- softmax of the scores whose max is mx; returns 0 when every key is excluded. */
static int fz_add_softmax(float *x, int S, float mx) {
    if (mx == -INFINITY) return 0;
    float sum = 0.0f;
    for (int s = 0; s < S; s++) {
        x[s] = x[s] == -INFINITY ? 0.0f : expf(x[s] - mx);
        sum += x[s];
    }
    const float inv = 1.0f / sum;
    for (int s = 0; s < S; s++) x[s] *= inv;
    return 1;
}

static float fz_add_drop(const attn_additive_desc *d, int b, int t, int s) {
    if (d->dropout <= 0.0f) return 1.0f;
    const uint64_t i = ((uint64_t)b * (uint64_t)d->T + (uint64_t)t) * (uint64_t)d->S + (uint64_t)s;
    return attn__dropout_keep(d->seed, i, d->dropout) ? 1.0f / (1.0f - d->dropout) : 0.0f;
}

static void fz_additive_forward(const attn_additive_desc *d, float *out, float *weights, const float *q,
                                const float *kp, const float *v, const float *wq, const float *wv, void *work) {
    const int B = d->B, T = d->T, S = d->S, Dh = d->Dh, Dv = d->Dv, bf = d->compute == ATTN_DTYPE_BF16;
    const fz_add_work w = fz_add_carve(d, work);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B * T, Dh, d->Dq, 1.0f, q, d->Dq, wq, d->Dq, 0.0f, w.a, Dh);
    if (bf) {
        fz_add_round(w.wvr, wv, Dh);
        fz_add_round(w.vr, v, (int64_t)B * S * Dv);
        wv = w.wvr;
        v = w.vr;
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int64_t row = (int64_t)b * T + t;
            float *ot = out + row * Dv;
            const int any = fz_add_softmax(w.x, S, fz_add_scores(d, w.x, w.a + row * Dh, kp + (int64_t)b * S * Dh, wv, b, t));
            if (weights) {
                float *wt = weights + row * S;
                for (int s = 0; s < S; s++) wt[s] = any ? w.x[s] : 0.0f;
            }
            if (!any) { memset(ot, 0, sizeof(float) * (size_t)Dv); continue; }
            for (int s = 0; s < S; s++) w.g[s] = w.x[s] * fz_add_drop(d, b, t, s);
            if (bf) fz_add_round(w.g, w.g, S);
            fz_small_combine(ot, Dv, w.g, v + (int64_t)b * S * Dv, Dv, S);
        }
}

/* The score's gradient dx into the tanh layer: with u = tanh(a_t + kp_s), dw_v += dx u, and
 * du = dx w_v (1 - u²) added to da_t and dkp_s; bf (a constant where it is inlined) rounds u for dw_v. */
FZ_INLINE void fz_add_dtanh(float dxs, const float *at, const float *cs, const float *wv, float *dwv, float *dat,
                            float *dcs, int Dh, const int bf) {
    const fz_v dx = fz_set1(dxs);
    for (int j = 0; j < Dh; j += FZ_VW) {
        const fz_m tm = fz_tailmask(Dh - j);
        const fz_v u = fz_tanh(fz_add(fz_loadm(at + j, tm), fz_loadm(cs + j, tm)));
        const fz_v du = fz_mul(fz_mul(dx, fz_loadm(wv + j, tm)), fz_sub(fz_set1(1.0f), fz_mul(u, u)));
        fz_storem(dwv + j, fz_fma(dx, bf ? fz_bfr(u) : u, fz_loadm(dwv + j, tm)), tm);
        fz_storem(dat + j, fz_add(fz_loadm(dat + j, tm), du), tm);
        fz_storem(dcs + j, fz_add(fz_loadm(dcs + j, tm), du), tm);
    }
}

static void fz_additive_backward(const attn_additive_desc *d, float *dq, float *dkp, float *dv, float *dwq,
                                 float *dwv, const float *dout, const float *q, const float *kp, const float *v,
                                 const float *wq, const float *wv, void *work) {
    const int B = d->B, T = d->T, S = d->S, Dh = d->Dh, Dv = d->Dv, bf = d->compute == ATTN_DTYPE_BF16;
    const fz_add_work w = fz_add_carve(d, work);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B * T, Dh, d->Dq, 1.0f, q, d->Dq, wq, d->Dq, 0.0f, w.a, Dh);
    memset(w.da, 0, sizeof(float) * (size_t)B * T * Dh);
    if (bf) {
        fz_add_round(w.wvr, wv, Dh);
        fz_add_round(w.vr, v, (int64_t)B * S * Dv);
        wv = w.wvr;
        v = w.vr;
    }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int64_t row = (int64_t)b * T + t;
            const float *at = w.a + row * Dh, *kpb = kp + (int64_t)b * S * Dh, *gt = dout + row * Dv;
            float *dat = w.da + row * Dh;
            if (!fz_add_softmax(w.x, S, fz_add_scores(d, w.x, at, kpb, wv, b, t))) continue;   /* no gradient */
            if (bf) {
                fz_add_round(w.gr, gt, Dv);
                gt = w.gr;
            }
            /* dP_s = m_s dout·v_s, Δ = Σ_s P_s dP_s;  dv_s += m_s P_s dout */
            float delta = 0.0f;
            for (int s = 0; s < S; s++) {
                w.g[s] = 0.0f;
                const float m = w.x[s] == 0.0f ? 0.0f : fz_add_drop(d, b, t, s);
                if (m == 0.0f) continue;
                const float *vs = v + ((int64_t)b * S + s) * Dv;
                float *dvs = dv + ((int64_t)b * S + s) * Dv;
                const fz_v pm = fz_set1(bf ? fz_bf1(m * w.x[s]) : m * w.x[s]);
                fz_v acc = fz_zero();
                for (int j = 0; j < Dv; j += FZ_VW) {
                    const fz_m tm = fz_tailmask(Dv - j);
                    const fz_v g = fz_loadm(gt + j, tm);
                    acc = fz_fma(g, fz_loadm(vs + j, tm), acc);
                    fz_storem(dvs + j, fz_fma(pm, g, fz_loadm(dvs + j, tm)), tm);
                }
                w.g[s] = m * fz_hsum(acc);
                delta += w.x[s] * w.g[s];
            }
            /* through the softmax and the tanh layer into wv, a and kp */
            for (int s = 0; s < S; s++) {
                if (w.x[s] == 0.0f) continue;
                const float dxs = w.x[s] * (w.g[s] - delta);
                const float *cs = kpb + (int64_t)s * Dh;
                float *dcs = dkp + ((int64_t)b * S + s) * Dh;
                if (bf) fz_add_dtanh(fz_bf1(dxs), at, cs, wv, dwv, dat, dcs, Dh, 1);
                else fz_add_dtanh(dxs, at, cs, wv, dwv, dat, dcs, Dh, 0);
            }
        }
    /* dq += da W_q;  dW_q += daᵀ q */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B * T, d->Dq, Dh, 1.0f, w.da, Dh, wq, d->Dq, 1.0f, dq, d->Dq);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Dh, d->Dq, B * T, 1.0f, w.da, Dh, q, d->Dq, 1.0f, dwq, d->Dq);
}
