/*
 * linear.c — linear attention (Katharopoulos et al. 2020): the public calls, validation, and the fast
 * path, which sums by chunks in time and memory linear in the sequence length.
 *
 * With f_t = φ(q_t), g_s = φ(k_s), φ(x) = elu(x) + 1:
 *   out_t = f_tᵀ M / (f_t · z + eps),  M = Σ g_s v_sᵀ (D,Dv),  z = Σ g_s (D)
 * over all keys, or, causal, over s <= t. The causal forward walks the rows in chunks of LIN_CHUNK: a
 * chunk's queries take the running sums M, z of every earlier chunk (one (D,Dv) product per row) plus
 * their own chunk's keys directly (a masked LIN_CHUNK-square block), then the chunk's keys join M and z.
 * The backward (dnum_t = dout_t / den_t, dden_t = -(dout_t · out_t) / den_t, w_ts = dnum_t · v_s + dden_t)
 * runs two such walks: forward in t for dq (df_t = Mᵀ-product with dnum_t + z dden_t + the chunk's own
 * Σ w_ts g_s), backward in s for dk and dv (running R = Σ f_t dnum_tᵀ, r = Σ f_t dden_t over later
 * queries, plus the chunk's own). Not causal, the running sums are simply the totals.
 *
 * Every product of a chunk is a plain GEMM (a chunk's rows against the running sums, the chunk's own
 * LIN_CHUNK-square block computed whole and its upper triangle cleared), so they go through CBLAS.
 * Items are (b, h), one per thread at a time, each with its own part of the workspace; an item's
 * arithmetic depends on the shape only (the BLAS calls are small and made from inside the parallel
 * region, where OpenBLAS runs them on the calling thread), so results are the same bits for any thread
 * count.
 */
#include "internal.h"
#include "ref/ref.h"

#include <cblas.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define LIN_CHUNK 64
#define LIN_ALIGN 64

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }   /* floats, to 64 bytes */

static int size_ok(int n) { return n >= 1 && n <= ATTN_MAX_DIM; }

/* ---- validation ------------------------------------------------------------------------------------ */

/* Nonnegative strides, the last element's offset in int64; an input row stride below the row width
 * (rows that partly overlap) refused unless 0; an output never maps two elements to one address. */
static attn_status check_layout(const attn_layout *l, int B, int H, int T, int inner, int output) {
    const int64_t ext[3] = {B, H, T}, str[3] = {l->b, l->h, l->t};
    int64_t end = inner - 1;
    for (int i = 0; i < 3; i++) {
        if (str[i] < 0) return ATTN_ERR_STRIDE;
        if (ext[i] > 1 && str[i] > (INT64_MAX - end) / (ext[i] - 1)) return ATTN_ERR_STRIDE;
        end += (ext[i] - 1) * str[i];
    }
    if (T > 1 && l->t != 0 && l->t < inner) return ATTN_ERR_STRIDE;
    if (output && !attn__layout_disjoint(l, B, H, T, inner)) return ATTN_ERR_STRIDE;
    return ATTN_OK;
}

attn_status attn_linear_attn_desc_init(attn_linear_attn_desc *d, int B, int H, int T, int S, int D, int Dv) {
    if (!d) return ATTN_ERR_NULL;
    *d = (attn_linear_attn_desc){0};
    d->B = B; d->H = H; d->T = T; d->S = S; d->D = D; d->Dv = Dv;
    if (!size_ok(B) || !size_ok(H) || !size_ok(T) || !size_ok(S) || !size_ok(D) || !size_ok(Dv))
        return ATTN_ERR_SIZE;
    if ((double)B * H * (T > S ? T : S) * (D > Dv ? D : Dv) > 4.0e18) return ATTN_ERR_SIZE;
    d->eps = 1e-6f;
    d->q = (attn_layout){(int64_t)H * T * D, (int64_t)T * D, D};
    d->k = (attn_layout){(int64_t)H * S * D, (int64_t)S * D, D};
    d->v = (attn_layout){(int64_t)H * S * Dv, (int64_t)S * Dv, Dv};
    d->out = (attn_layout){(int64_t)H * T * Dv, (int64_t)T * Dv, Dv};
    return ATTN_OK;
}

attn_status attn_linear_attn_validate(const attn_linear_attn_desc *d) {
    if (!d) return ATTN_ERR_NULL;
    if (!size_ok(d->B) || !size_ok(d->H) || !size_ok(d->T) || !size_ok(d->S) || !size_ok(d->D) ||
        !size_ok(d->Dv))
        return ATTN_ERR_SIZE;
    if (d->causal && d->T != d->S) return ATTN_ERR_SHAPE;
    if (!(d->eps >= 0.0f) || !isfinite(d->eps)) return ATTN_ERR_ARG;
    attn_status st;
    if ((st = check_layout(&d->q, d->B, d->H, d->T, d->D, 0)) != ATTN_OK) return st;
    if ((st = check_layout(&d->k, d->B, d->H, d->S, d->D, 0)) != ATTN_OK) return st;
    if ((st = check_layout(&d->v, d->B, d->H, d->S, d->Dv, 0)) != ATTN_OK) return st;
    return check_layout(&d->out, d->B, d->H, d->T, d->Dv, 1);
}

/* ---- the chunked kernel -------------------------------------------------------------------------- */

/* One thread's scratch, in floats (C = LIN_CHUNK, E = max(D, Dv)). */
typedef struct lin_buf {
    float *F, *G;                /* (C,D) φ of a chunk's query rows, of its key rows */
    float *V, *DN;               /* (C,Dv) a chunk's value rows; its dnum rows */
    float *DD;                   /* (C) a chunk's dden */
    float *A, *W;                /* (C,C) a chunk's f_t · g_s and w_ts, masked to s <= t */
    float *M;                    /* (D,Dv) the running Σ g vᵀ (R = Σ f dnumᵀ in the dk walk) */
    float *z;                    /* (D) the running Σ g (r = Σ f dden in the dk walk) */
    float *X, *Y;                /* (C,E) a chunk's row results */
} lin_buf;

static size_t buf_floats(const attn_linear_attn_desc *d) {
    const size_t C = LIN_CHUNK, D = (size_t)d->D, Dv = (size_t)d->Dv, E = D > Dv ? D : Dv;
    return 2 * round16(C * D) + 2 * round16(C * Dv) + round16(C) + 2 * round16(C * C) + round16(D * Dv) +
           round16(D) + 2 * round16(C * E);
}

static lin_buf carve(const attn_linear_attn_desc *d, float *p) {
    const size_t C = LIN_CHUNK, D = (size_t)d->D, Dv = (size_t)d->Dv, E = D > Dv ? D : Dv;
    lin_buf b;
    b.F = p; p += round16(C * D);
    b.G = p; p += round16(C * D);
    b.V = p; p += round16(C * Dv);
    b.DN = p; p += round16(C * Dv);
    b.DD = p; p += round16(C);
    b.A = p; p += round16(C * C);
    b.W = p; p += round16(C * C);
    b.M = p; p += round16(D * Dv);
    b.z = p; p += round16(D);
    b.X = p; p += round16(C * E);
    b.Y = p;
    return b;
}

static inline float phi(float x) { return x > 0.0f ? x + 1.0f : expf(x); }

static const float *row_of(const float *x, const attn_layout *l, int b, int h, int t) {
    return x + b * l->b + h * l->h + t * l->t;
}

/* dst (n,inner) = rows [t0, t0+n) of (b, h), through φ when use_phi */
static void load_rows(float *dst, const float *x, const attn_layout *l, int b, int h, int t0, int n, int inner,
                      int use_phi) {
    for (int i = 0; i < n; i++) {
        const float *r = row_of(x, l, b, h, t0 + i);
        float *o = dst + (size_t)i * inner;
        if (use_phi) for (int j = 0; j < inner; j++) o[j] = phi(r[j]);
        else memcpy(o, r, sizeof(float) * (size_t)inner);
    }
}

/* C (m,n) = alpha·op(A)·op(B) + beta·C, row-major, leading dimensions given */
static void gemm(int ta, int tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, A, lda,
                B, ldb, beta, C, ldc);
}

/* Keeps the lower triangle (s <= t) of a chunk's (n,n) block in a LIN_CHUNK-wide array. */
static void mask_upper(float *A, int n) {
    for (int t = 0; t < n; t++)
        for (int s = t + 1; s < n; s++) A[(size_t)t * LIN_CHUNK + s] = 0.0f;
}

/* The keys of a chunk (G, V: n rows) join the running sums: M += Gᵀ V, z += Σ G. */
static void add_keys(const attn_linear_attn_desc *d, lin_buf *bf, int n) {
    gemm(1, 0, d->D, d->Dv, n, bf->G, d->D, bf->V, d->Dv, 1.0f, bf->M, d->Dv);
    for (int s = 0; s < n; s++)
        for (int i = 0; i < d->D; i++) bf->z[i] += bf->G[(size_t)s * d->D + i];
}

/* The queries of a chunk (F, DN, DD: n rows) join the dk walk's sums: R += Fᵀ DN, r += Fᵀ DD. */
static void add_queries(const attn_linear_attn_desc *d, lin_buf *bf, int n) {
    gemm(1, 0, d->D, d->Dv, n, bf->F, d->D, bf->DN, d->Dv, 1.0f, bf->M, d->Dv);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < d->D; i++) bf->z[i] += bf->DD[t] * bf->F[(size_t)t * d->D + i];
}

/* A chunk's dnum (n,Dv) and dden (n) from dout, out and den. */
static void load_dnum(const attn_linear_attn_desc *d, lin_buf *bf, const float *dout, const float *out,
                      const float *den, int b, int h, int t0, int n) {
    const int Dv = d->Dv;
    for (int t = 0; t < n; t++) {
        const float *go = row_of(dout, &d->out, b, h, t0 + t), *o = row_of(out, &d->out, b, h, t0 + t);
        const float z = den[((int64_t)b * d->H + h) * d->T + t0 + t];
        float *dn = bf->DN + (size_t)t * Dv, dd = 0;
        for (int j = 0; j < Dv; j++) {
            dn[j] = go[j] / z;
            dd -= dn[j] * o[j];
        }
        bf->DD[t] = dd;
    }
}

/* The whole sequence's keys (queries 0) or queries (1) summed first (not causal), chunk by chunk in order. */
static void totals(const attn_linear_attn_desc *d, lin_buf *bf, int queries, const float *q, const float *k,
                   const float *v, const float *dout, const float *out, const float *den, int b, int h) {
    const int L = queries ? d->T : d->S;
    for (int c0 = 0; c0 < L; c0 += LIN_CHUNK) {
        const int n = L - c0 < LIN_CHUNK ? L - c0 : LIN_CHUNK;
        if (queries) {
            load_rows(bf->F, q, &d->q, b, h, c0, n, d->D, 1);
            load_dnum(d, bf, dout, out, den, b, h, c0, n);
            add_queries(d, bf, n);
        } else {
            load_rows(bf->G, k, &d->k, b, h, c0, n, d->D, 1);
            load_rows(bf->V, v, &d->v, b, h, c0, n, d->Dv, 0);
            add_keys(d, bf, n);
        }
    }
}

/* A walk's running sums start at zero, or (not causal) at the totals of every key (queries 0) or query (1). */
static void begin_walk(const attn_linear_attn_desc *d, lin_buf *bf, int queries, const float *q, const float *k,
                       const float *v, const float *dout, const float *out, const float *den, int b, int h) {
    memset(bf->M, 0, sizeof(float) * (size_t)d->D * d->Dv);
    memset(bf->z, 0, sizeof(float) * (size_t)d->D);
    if (!d->causal) totals(d, bf, queries, q, k, v, dout, out, den, b, h);
}

/* Forward of item (b, h): per chunk of queries, num = F M (+ A V, A = F Gᵀ masked, causal), den = F z
 * (+ Σ_s A), out = num / (den + eps). */
static void forward_item(const attn_linear_attn_desc *d, lin_buf *bf, float *out, float *den, const float *q,
                         const float *k, const float *v, int b, int h) {
    const int D = d->D, Dv = d->Dv;
    begin_walk(d, bf, 0, q, k, v, NULL, NULL, NULL, b, h);
    for (int t0 = 0; t0 < d->T; t0 += LIN_CHUNK) {
        const int n = d->T - t0 < LIN_CHUNK ? d->T - t0 : LIN_CHUNK;
        float *num = bf->X;                                   /* (n,Dv) */
        load_rows(bf->F, q, &d->q, b, h, t0, n, D, 1);
        /* the earlier chunks' keys, through the running sums */
        gemm(0, 0, n, Dv, D, bf->F, D, bf->M, Dv, 0.0f, num, Dv);
        if (d->causal) {
            /* the chunk's own keys s <= t */
            load_rows(bf->G, k, &d->k, b, h, t0, n, D, 1);
            load_rows(bf->V, v, &d->v, b, h, t0, n, Dv, 0);
            gemm(0, 1, n, n, D, bf->F, D, bf->G, D, 0.0f, bf->A, LIN_CHUNK);
            mask_upper(bf->A, n);
            gemm(0, 0, n, Dv, n, bf->A, LIN_CHUNK, bf->V, Dv, 1.0f, num, Dv);
        }
        for (int t = 0; t < n; t++) {
            const float *f = bf->F + (size_t)t * D;
            float dn = 0;
            for (int i = 0; i < D; i++) dn += f[i] * bf->z[i];
            if (d->causal)
                for (int s = 0; s <= t; s++) dn += bf->A[(size_t)t * LIN_CHUNK + s];
            dn += d->eps;
            float *o = out + b * d->out.b + h * d->out.h + (int64_t)(t0 + t) * d->out.t;
            for (int j = 0; j < Dv; j++) o[j] = num[(size_t)t * Dv + j] / dn;
            if (den) den[((int64_t)b * d->H + h) * d->T + t0 + t] = dn;
        }
        if (d->causal) add_keys(d, bf, n);
    }
}

/* W (n,n) = DN Vᵀ + dden_t on row t, masked to s <= t: w_ts = dnum_t · v_s + dden_t */
static void chunk_w(const attn_linear_attn_desc *d, lin_buf *bf, int n) {
    gemm(0, 1, n, n, d->Dv, bf->DN, d->Dv, bf->V, d->Dv, 0.0f, bf->W, LIN_CHUNK);
    for (int t = 0; t < n; t++)
        for (int s = 0; s <= t; s++) bf->W[(size_t)t * LIN_CHUNK + s] += bf->DD[t];
    mask_upper(bf->W, n);
}

/* dq of item (b, h): df = DN Mᵀ + DD zᵀ (+ W G, causal); dq += df ∘ φ'(q), φ'(x) = 1 for x > 0 and
 * exp(x) = φ(x) otherwise: min(1, φ(x)). */
static void dq_item(const attn_linear_attn_desc *d, lin_buf *bf, float *dq, const float *dout, const float *q,
                    const float *k, const float *v, const float *out, const float *den, int b, int h) {
    const int D = d->D, Dv = d->Dv;
    begin_walk(d, bf, 0, q, k, v, NULL, NULL, NULL, b, h);
    for (int t0 = 0; t0 < d->T; t0 += LIN_CHUNK) {
        const int n = d->T - t0 < LIN_CHUNK ? d->T - t0 : LIN_CHUNK;
        float *df = bf->X;                                    /* (n,D) */
        load_rows(bf->F, q, &d->q, b, h, t0, n, D, 1);
        load_dnum(d, bf, dout, out, den, b, h, t0, n);
        gemm(0, 1, n, D, Dv, bf->DN, Dv, bf->M, Dv, 0.0f, df, D);
        if (d->causal) {
            load_rows(bf->G, k, &d->k, b, h, t0, n, D, 1);
            load_rows(bf->V, v, &d->v, b, h, t0, n, Dv, 0);
            chunk_w(d, bf, n);
            gemm(0, 0, n, D, n, bf->W, LIN_CHUNK, bf->G, D, 1.0f, df, D);
        }
        for (int t = 0; t < n; t++) {
            const float *f = bf->F + (size_t)t * D, *dfr = df + (size_t)t * D, dd = bf->DD[t];
            float *g = dq + b * d->q.b + h * d->q.h + (int64_t)(t0 + t) * d->q.t;
            for (int i = 0; i < D; i++) g[i] += (dfr[i] + dd * bf->z[i]) * (f[i] < 1.0f ? f[i] : 1.0f);
        }
        if (d->causal) add_keys(d, bf, n);
    }
}

/* dk, dv of item (b, h), keys from the last chunk back, with R = Σ f_t dnum_tᵀ (in M) and r = Σ f_t dden_t
 * (in z) over the later chunks' queries (all queries, not causal):
 *   dg = V Rᵀ + 1 rᵀ (+ Wᵀ F),  dv += G R (+ Aᵀ DN),  dk += dg ∘ φ'(k). */
static void dkv_item(const attn_linear_attn_desc *d, lin_buf *bf, float *dk, float *dv, const float *dout,
                     const float *q, const float *k, const float *v, const float *out, const float *den, int b,
                     int h) {
    const int D = d->D, Dv = d->Dv;
    begin_walk(d, bf, 1, q, k, v, dout, out, den, b, h);
    const int last = (d->S - 1) / LIN_CHUNK * LIN_CHUNK;
    for (int s0 = last; s0 >= 0; s0 -= LIN_CHUNK) {
        const int n = d->S - s0 < LIN_CHUNK ? d->S - s0 : LIN_CHUNK;
        float *dg = bf->X, *dvr = bf->Y;                       /* (n,D) (n,Dv) */
        load_rows(bf->G, k, &d->k, b, h, s0, n, D, 1);
        load_rows(bf->V, v, &d->v, b, h, s0, n, Dv, 0);
        gemm(0, 1, n, D, Dv, bf->V, Dv, bf->M, Dv, 0.0f, dg, D);
        gemm(0, 0, n, Dv, D, bf->G, D, bf->M, Dv, 0.0f, dvr, Dv);
        if (d->causal) {
            /* the chunk's own queries t >= s (T == S: the same rows) */
            load_rows(bf->F, q, &d->q, b, h, s0, n, D, 1);
            load_dnum(d, bf, dout, out, den, b, h, s0, n);
            chunk_w(d, bf, n);
            gemm(0, 1, n, n, D, bf->F, D, bf->G, D, 0.0f, bf->A, LIN_CHUNK);
            mask_upper(bf->A, n);
            gemm(1, 0, n, D, n, bf->W, LIN_CHUNK, bf->F, D, 1.0f, dg, D);
            gemm(1, 0, n, Dv, n, bf->A, LIN_CHUNK, bf->DN, Dv, 1.0f, dvr, Dv);
        }
        for (int s = 0; s < n; s++) {
            const float *g = bf->G + (size_t)s * D, *dgr = dg + (size_t)s * D, *dvs = dvr + (size_t)s * Dv;
            float *gk = dk + b * d->k.b + h * d->k.h + (int64_t)(s0 + s) * d->k.t;
            float *gv = dv + b * d->v.b + h * d->v.h + (int64_t)(s0 + s) * d->v.t;
            for (int i = 0; i < D; i++) gk[i] += (dgr[i] + bf->z[i]) * (g[i] < 1.0f ? g[i] : 1.0f);
            for (int j = 0; j < Dv; j++) gv[j] += dvs[j];
        }
        if (d->causal) add_queries(d, bf, n);
    }
}

/* ---- public calls -------------------------------------------------------------------------------- */

static int threads_for(const attn_linear_attn_desc *d, const attn_ctx *c) {
    const int64_t items = (int64_t)d->B * d->H;
    return items < c->threads ? (int)items : c->threads;
}

static attn_status workspace_for(const attn_linear_attn_desc *d, const attn_ctx *c, size_t *bytes) {
    if (c->isa == ATTN_ISA_REF) {
        *bytes = sizeof(float) * ((size_t)d->D + 2 * (size_t)d->Dv) + LIN_ALIGN;
        return ATTN_OK;
    }
    const size_t per = buf_floats(d);
    if (per > SIZE_MAX / 8 / sizeof(float) / (size_t)ATTN_MAX_THREADS) return ATTN_ERR_SIZE;
    *bytes = per * sizeof(float) * (size_t)threads_for(d, c) + LIN_ALIGN;
    return ATTN_OK;
}

attn_status attn_linear_attn_workspace_size(const attn_ctx *ctx, const attn_linear_attn_desc *d, attn_pass pass,
                                       size_t *bytes) {
    attn_ctx c;
    const attn_kernels *kern;
    attn_status st = attn__ctx_resolve(ctx, &c, &kern);
    if (st != ATTN_OK) return st;
    if ((st = attn_linear_attn_validate(d)) != ATTN_OK) return st;
    if (!bytes) return ATTN_ERR_NULL;
    if ((int)pass < 0 || pass >= ATTN_PASS_COUNT) return ATTN_ERR_ARG;
    return workspace_for(d, &c, bytes);
}

static attn_status begin(const attn_ctx *ctx, const attn_linear_attn_desc *d, void *work, size_t work_bytes,
                         attn_ctx *c, float **base) {
    const attn_kernels *kern;
    attn_status st = attn__ctx_resolve(ctx, c, &kern);
    if (st != ATTN_OK) return st;
    if ((st = attn_linear_attn_validate(d)) != ATTN_OK) return st;
    size_t need;
    if ((st = workspace_for(d, c, &need)) != ATTN_OK) return st;
    if (!work || work_bytes < need) return ATTN_ERR_WORKSPACE;
    uintptr_t u = ((uintptr_t)work + (LIN_ALIGN - 1)) & ~(uintptr_t)(LIN_ALIGN - 1);
    *base = (float *)u;
    return ATTN_OK;
}

/* The tensors of a pass, so that one parallel loop runs either. */
typedef struct lin_args {
    float *out, *den, *dq, *dk, *dv;
    const float *dout, *q, *k, *v, *cout, *cden;
} lin_args;

/* Items (b, h) on the context's threads, each with its own part of the workspace at base. */
static void run_items(const attn_linear_attn_desc *d, const attn_ctx *c, attn_pass pass, const lin_args *a,
                      float *base) {
    const int nth = threads_for(d, c);
    const int64_t items = (int64_t)d->B * d->H;
    const size_t per = buf_floats(d);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nth) schedule(dynamic, 1) if (nth > 1)
#endif
    for (int64_t it = 0; it < items; it++) {
        int ith = 0;
#ifdef _OPENMP
        ith = omp_get_thread_num();
#endif
        lin_buf bf = carve(d, base + per * (size_t)ith);
        const int b = (int)(it / d->H), h = (int)(it % d->H);
        if (pass == ATTN_PASS_FORWARD) {
            forward_item(d, &bf, a->out, a->den, a->q, a->k, a->v, b, h);
        } else {
            dq_item(d, &bf, a->dq, a->dout, a->q, a->k, a->v, a->cout, a->cden, b, h);
            dkv_item(d, &bf, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->cout, a->cden, b, h);
        }
    }
}

attn_status attn_linear_attn_forward(const attn_ctx *ctx, const attn_linear_attn_desc *d, float *out,
                                     float *den, const float *q, const float *k, const float *v, void *work,
                                     size_t work_bytes) {
    attn_ctx c;
    float *base;
    attn_status st = begin(ctx, d, work, work_bytes, &c, &base);
    if (st != ATTN_OK) return st;
    if (!out || !q || !k || !v) return ATTN_ERR_NULL;
    if (c.isa == ATTN_ISA_REF) {
        attn__linear_ref_forward(d, out, den, q, k, v, base);
        return ATTN_OK;
    }
    const lin_args a = {.out = out, .den = den, .q = q, .k = k, .v = v};
    run_items(d, &c, ATTN_PASS_FORWARD, &a, base);
    return ATTN_OK;
}

attn_status attn_linear_attn_backward(const attn_ctx *ctx, const attn_linear_attn_desc *d, float *dq,
                                      float *dk, float *dv, const float *dout, const float *q, const float *k,
                                      const float *v, const float *out, const float *den, void *work,
                                      size_t work_bytes) {
    attn_ctx c;
    float *base;
    attn_status st = begin(ctx, d, work, work_bytes, &c, &base);
    if (st != ATTN_OK) return st;
    /* the gradients take the inputs' layouts: they must not overlap themselves */
    if ((st = check_layout(&d->q, d->B, d->H, d->T, d->D, 1)) != ATTN_OK) return st;
    if ((st = check_layout(&d->k, d->B, d->H, d->S, d->D, 1)) != ATTN_OK) return st;
    if ((st = check_layout(&d->v, d->B, d->H, d->S, d->Dv, 1)) != ATTN_OK) return st;
    if (!dq || !dk || !dv || !dout || !q || !k || !v || !out || !den) return ATTN_ERR_NULL;
    if (c.isa == ATTN_ISA_REF) {
        attn__linear_ref_backward(d, dq, dk, dv, dout, q, k, v, base);
        return ATTN_OK;
    }
    const lin_args a = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k, .v = v, .cout = out,
                        .cden = den};
    run_items(d, &c, ATTN_PASS_BACKWARD, &a, base);
    return ATTN_OK;
}
