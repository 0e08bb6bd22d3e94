/*
 * ring.c — ring attention over MPI: the scaled dot-product attention of a sequence cut over the ranks of a
 * communicator, each rank calling the library's fused kernel on its queries against one key/value block at
 * a time while the next block is on its way (Liu et al. 2023, "Ring Attention with Blockwise Transformers").
 *
 * Forward, on rank r of N: the local K, V are packed into buffer 0; at step j the block of rank (r − j)
 * mod N is in hand; it is sent on to r + 1 and the next one received from r − 1 (MPI_Isend / MPI_Irecv into
 * the other buffer) while the fused forward runs the local queries against it; each partial (out, stats)
 * is merged into the running one by its row statistics (exact: see mpi.h and DESIGN "MPI").
 * Backward: the same tour of K, V; the fused backward, given the merged out and stats of the whole row,
 * computes each block's exact share of dQ (added in place) and of that block's dK, dV (into a scratch
 * block). Those shares join the block's accumulator, which follows the block one step behind: received
 * from r − 1, added to, sent to r + 1, each transfer overlapped with the next step's kernel. After the
 * tour one last hop brings every accumulator home.
 *
 * Causal masks use the zig-zag shards (chunks r and 2N−1−r on rank r): a pair of chunks is either wholly
 * visible (key chunk before query chunk), causal on its diagonal (same chunk, only at step 0), or skipped.
 *
 * Memory per rank: two key/value blocks, the kernel's workspace, one chunk's partial out and stats; in the
 * backward also three dK/dV blocks. Nothing grows with the global T or S.
 */
#include "attn/mpi.h"

#include <limits.h>
#include <math.h>
#include <string.h>

enum { TAG_KV = 0x6174, TAG_DKV = 0x6175 };

#define ALIGN 64

static size_t round_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* ---- the shards ----------------------------------------------------------------------------------- */

int64_t attn_ring_global_row(int len, int causal, int n, int rank, int64_t local) {
    if (n <= 0 || rank < 0 || rank >= n || len <= 0) return -1;
    int64_t per = len / n;
    if (local < 0 || local >= per) return -1;
    if (!causal) return (int64_t)rank * per + local;
    int64_t c = len / (2 * n);               /* chunk rows */
    if (c == 0) return -1;
    return local < c ? (int64_t)rank * c + local : (int64_t)(2 * n - 1 - rank) * c + (local - c);
}

/* The plan of a call: local sizes and the chunking. */
typedef struct plan {
    int n, rank;
    int Tl, Sl;                  /* local rows of queries, of keys */
    int nq, nk;                  /* chunks per rank (2 when causal, else 1) */
    int Tc, Sc;                  /* rows per chunk */
    size_t kv_floats;            /* one key/value block: (B,Hkv,Sl,D) then (B,Hkv,Sl,Dv) */
    size_t kern_bytes;           /* the fused kernel's workspace (largest of the chunk calls) */
    size_t part_out, part_stats, vl_bytes;
} plan;

/* The descriptor of one chunk call: Tc queries against Sc keys, contiguous K and V (the packed block),
 * the caller's q and out layouts; diag nonzero: the causal diagonal chunk. */
static attn_sdpa_desc chunk_desc(const attn_sdpa_desc *d, const plan *p, int diag) {
    attn_sdpa_desc c = *d;
    c.T = p->Tc; c.S = p->Sc;
    c.k = (attn_layout){(int64_t)d->Hkv * p->Sl * d->D, (int64_t)p->Sl * d->D, d->D};
    c.v = (attn_layout){(int64_t)d->Hkv * p->Sl * d->Dv, (int64_t)p->Sl * d->Dv, d->Dv};
    c.mask.causal = diag;
    return c;
}

static attn_status make_plan(const attn_ctx *ctx, const attn_sdpa_desc *d, MPI_Comm comm, attn_pass pass,
                             plan *p) {
    attn_status st;
    if (!d) return ATTN_ERR_NULL;
    if (d->T <= 0 || d->S <= 0) return ATTN_ERR_SIZE;
    if (MPI_Comm_size(comm, &p->n) != MPI_SUCCESS || MPI_Comm_rank(comm, &p->rank) != MPI_SUCCESS)
        return ATTN_ERR_IO;
    attn_ctx c0;
    if (!ctx) {
        if ((st = attn_ctx_init(&c0, ATTN_ISA_AUTO, 0)) != ATTN_OK) return st;
        ctx = &c0;
    }
    /* the reference backward recomputes its softmax from the block alone: only fused paths merge */
    if (ctx->isa == ATTN_ISA_REF) return ATTN_ERR_UNSUPPORTED;
    if (d->dtype != ATTN_DTYPE_F32 || d->compute != ATTN_DTYPE_F32 || d->dropout != 0.0f ||
        d->mask.allow || d->mask.bias)
        return ATTN_ERR_UNSUPPORTED;
    const int n = p->n, causal = d->mask.causal != 0;
    if (causal && d->T != d->S) return ATTN_ERR_SHAPE;
    const int parts = causal ? 2 * n : n;
    if (d->T % parts != 0 || d->S % parts != 0) return ATTN_ERR_SHAPE;
    p->Tl = d->T / n; p->Sl = d->S / n;
    p->nq = p->nk = causal ? 2 : 1;
    p->Tc = d->T / parts; p->Sc = d->S / parts;
    p->kv_floats = (size_t)d->B * d->Hkv * p->Sl * (size_t)(d->D + d->Dv);
    if (p->kv_floats > (size_t)INT_MAX) return ATTN_ERR_SIZE;   /* one message per block */
    /* the local tensors' descriptor: every field but the lengths checked as the single-process call does */
    attn_sdpa_desc loc = *d;
    loc.T = p->Tl; loc.S = p->Sl;
    loc.mask.causal = 0;
    if ((st = attn_sdpa_validate(&loc)) != ATTN_OK) return st;
    p->kern_bytes = 0;
    for (int diag = 0; diag <= causal; diag++) {
        attn_sdpa_desc c = chunk_desc(d, p, diag);
        size_t b;
        if ((st = attn_sdpa_workspace_size(ctx, &c, pass, &b)) != ATTN_OK) return st;
        if (b > p->kern_bytes) p->kern_bytes = b;
    }
    p->part_out = (size_t)d->B * d->H * p->Tc * (size_t)d->Dv * sizeof(float);
    p->part_stats = (size_t)d->B * d->H * p->Tc * (size_t)ATTN_SDPA_STATS * sizeof(float);
    p->vl_bytes = d->mask.valid_lens_kind == ATTN_VALID_LENS_NONE ? 0
                : (size_t)d->B * (d->mask.valid_lens_kind == ATTN_VALID_LENS_PER_QUERY ? p->Tc : 1) * sizeof(int32_t);
    return ATTN_OK;
}

/* Workspace: kernel | kv block ×2 | forward: partial out, partial stats | backward: dkv scratch, dkv ×2 |
 * valid lengths of one chunk call. */
static size_t plan_bytes(const plan *p, attn_pass pass) {
    size_t kv = round_up(p->kv_floats * sizeof(float));
    size_t b = round_up(p->kern_bytes) + 2 * kv + round_up(p->vl_bytes);
    if (pass == ATTN_PASS_FORWARD) b += round_up(p->part_out) + round_up(p->part_stats);
    else b += 3 * kv + round_up((size_t)p->nq * p->part_stats);
    return b;
}

attn_status attn_ring_desc_init(attn_sdpa_desc *d, MPI_Comm comm, int B, int H, int T, int S, int D, int Dv) {
    if (!d) return ATTN_ERR_NULL;
    int n;
    if (MPI_Comm_size(comm, &n) != MPI_SUCCESS) return ATTN_ERR_IO;
    attn_status st = attn_sdpa_desc_init(d, B, H, T, S, D, Dv);
    if (st != ATTN_OK) return st;
    int64_t Tl = T / n, Sl = S / n;
    d->q   = (attn_layout){(int64_t)H * Tl * D,  Tl * D,  D};
    d->k   = (attn_layout){(int64_t)H * Sl * D,  Sl * D,  D};
    d->v   = (attn_layout){(int64_t)H * Sl * Dv, Sl * Dv, Dv};
    d->out = (attn_layout){(int64_t)H * Tl * Dv, Tl * Dv, Dv};
    return ATTN_OK;
}

attn_status attn_ring_workspace_size(const attn_ctx *ctx, const attn_sdpa_desc *d, MPI_Comm comm,
                                     attn_pass pass, size_t *bytes) {
    if (!bytes) return ATTN_ERR_NULL;
    if (pass != ATTN_PASS_FORWARD && pass != ATTN_PASS_BACKWARD) return ATTN_ERR_ARG;
    plan p;
    attn_status st = make_plan(ctx, d, comm, pass, &p);
    if (st != ATTN_OK) return st;
    *bytes = plan_bytes(&p, pass);
    return ATTN_OK;
}

/* Every rank learns whether every rank's arguments passed: the worst status wins (statuses are <= 0). */
static attn_status agree(attn_status mine, MPI_Comm comm) {
    int s = (int)mine, worst;
    if (MPI_Allreduce(&s, &worst, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS) return ATTN_ERR_IO;
    if (mine != ATTN_OK) return mine;
    return worst == ATTN_OK ? ATTN_OK : ATTN_ERR_ARG;   /* another rank's arguments were refused */
}

/* ---- pieces of a step ----------------------------------------------------------------------------- */

/* Packs the local k (B,Hkv,Sl,D) and v (B,Hkv,Sl,Dv), caller's layouts, into one contiguous block. */
static void pack_kv(const attn_sdpa_desc *d, const plan *p, float *blk, const float *k, const float *v) {
    float *bk = blk, *bv = blk + (size_t)d->B * d->Hkv * p->Sl * d->D;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->Hkv; h++)
            for (int s = 0; s < p->Sl; s++) {
                size_t row = ((size_t)b * d->Hkv + h) * p->Sl + s;
                memcpy(bk + row * d->D, k + b * d->k.b + h * d->k.h + s * d->k.t, sizeof(float) * d->D);
                memcpy(bv + row * d->Dv, v + b * d->v.b + h * d->v.h + s * d->v.t, sizeof(float) * d->Dv);
            }
}

/* dk, dv (caller's layouts) += the contiguous block acc. */
static void unpack_add(const attn_sdpa_desc *d, const plan *p, float *dk, float *dv, const float *acc) {
    const float *ak = acc, *av = acc + (size_t)d->B * d->Hkv * p->Sl * d->D;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->Hkv; h++)
            for (int s = 0; s < p->Sl; s++) {
                size_t row = ((size_t)b * d->Hkv + h) * p->Sl + s;
                float *gk = dk + b * d->k.b + h * d->k.h + s * d->k.t;
                float *gv = dv + b * d->v.b + h * d->v.h + s * d->v.t;
                for (int i = 0; i < d->D; i++) gk[i] += ak[row * d->D + i];
                for (int i = 0; i < d->Dv; i++) gv[i] += av[row * d->Dv + i];
            }
}

/* Global first row of chunk c (0 .. nq-1) of rank `owner`. */
static int64_t chunk_start(const plan *p, int causal, int owner, int c, int rows_per_chunk) {
    if (!causal) return (int64_t)owner * rows_per_chunk;
    return (int64_t)(c == 0 ? owner : 2 * p->n - 1 - owner) * rows_per_chunk;
}

/* The chunk pair's relation: 0 skip, 1 every key visible, 2 causal diagonal. */
static int pair_kind(const plan *p, int causal, int qowner, int qc, int kowner, int kc) {
    if (!causal) return 1;
    int64_t qi = chunk_start(p, 1, qowner, qc, 1), ki = chunk_start(p, 1, kowner, kc, 1);
    return ki < qi ? 1 : ki == qi ? 2 : 0;
}

/* Valid lengths of one chunk call whose keys start at global row s0: clamp(len - s0, 0, Sc). Per query,
 * the rows of query chunk qc (local rows qc·Tc ...). */
static void chunk_lens(const attn_sdpa_desc *d, const plan *p, int32_t *vl, int qc, int64_t s0) {
    const int per_q = d->mask.valid_lens_kind == ATTN_VALID_LENS_PER_QUERY;
    const int rows = per_q ? p->Tc : 1;
    for (int b = 0; b < d->B; b++)
        for (int t = 0; t < rows; t++) {
            int64_t len = per_q ? d->mask.valid_lens[(int64_t)b * p->Tl + (int64_t)qc * p->Tc + t]
                                : d->mask.valid_lens[b];
            int64_t l = len - s0;
            vl[(int64_t)b * rows + t] = (int32_t)(l < 0 ? 0 : l > p->Sc ? p->Sc : l);
        }
}

/* Merges a partial (po (B,H,Tc,Dv) contiguous, ps (B,H,Tc,2)) into the running out and stats at query
 * chunk qc: with weights w = l·exp(m − m') of each side against the larger m', the merged out is their
 * weighted mean and the merged (m', log Σ w). Exact up to rounding; computed in double. */
static void merge(const attn_sdpa_desc *d, const plan *p, float *out, float *stats, int qc,
                  const float *po, const float *ps) {
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int t = 0; t < p->Tc; t++) {
                int64_t tl = (int64_t)qc * p->Tc + t;
                size_t pr = ((size_t)b * d->H + h) * p->Tc + t;
                float *st = stats + (((size_t)b * d->H + h) * p->Tl + tl) * ATTN_SDPA_STATS;
                const float *bs = ps + pr * ATTN_SDPA_STATS;
                float *o = out + b * d->out.b + h * d->out.h + tl * d->out.t;
                const float *ob = po + pr * d->Dv;
                if (bs[0] == -INFINITY) continue;            /* the block gave this row nothing */
                if (st[0] == -INFINITY) {                    /* the first block that gives it anything */
                    st[0] = bs[0]; st[1] = bs[1];
                    memcpy(o, ob, sizeof(float) * d->Dv);
                    continue;
                }
                double m = st[0] > bs[0] ? st[0] : bs[0];
                double wa = exp((double)st[0] - m + (double)st[1]), wb = exp((double)bs[0] - m + (double)bs[1]);
                double w = wa + wb, fa = wa / w, fb = wb / w;
                for (int i = 0; i < d->Dv; i++) o[i] = (float)(fa * o[i] + fb * ob[i]);
                st[0] = (float)m;
                st[1] = (float)log(w);
            }
}

/* Starts the exchange of a step: block `send` to rank r + 1, the next into `recv` from r − 1. */
static int start_ring(const plan *p, MPI_Comm comm, const float *send, float *recv, int count, int tag,
                      MPI_Request req[2]) {
    int right = (p->rank + 1) % p->n, left = (p->rank + p->n - 1) % p->n;
    if (MPI_Irecv(recv, count, MPI_FLOAT, left, tag, comm, &req[0]) != MPI_SUCCESS) return 0;
    if (MPI_Isend(send, count, MPI_FLOAT, right, tag, comm, &req[1]) != MPI_SUCCESS) return 0;
    return 1;
}

/* ---- forward -------------------------------------------------------------------------------------- */

attn_status attn_ring_sdpa_forward(const attn_ctx *ctx, const attn_sdpa_desc *d, MPI_Comm comm,
                                   float *out, float *stats,
                                   const float *q, const float *k, const float *v,
                                   void *work, size_t work_bytes, uint64_t *bytes_sent) {
    plan p;
    attn_status st = make_plan(ctx, d, comm, ATTN_PASS_FORWARD, &p);
    if (st == ATTN_OK && (!out || !stats || !q || !k || !v || !work)) st = ATTN_ERR_NULL;
    if (st == ATTN_OK && d->mask.valid_lens_kind != ATTN_VALID_LENS_NONE && !d->mask.valid_lens) st = ATTN_ERR_NULL;
    if (st == ATTN_OK && work_bytes < plan_bytes(&p, ATTN_PASS_FORWARD)) st = ATTN_ERR_WORKSPACE;
    if ((st = agree(st, comm)) != ATTN_OK) return st;

    /* carve the workspace */
    char *w = work;
    void *kern = w;                     w += round_up(p.kern_bytes);
    float *kvb[2];
    kvb[0] = (float *)w;                w += round_up(p.kv_floats * sizeof(float));
    kvb[1] = (float *)w;                w += round_up(p.kv_floats * sizeof(float));
    int32_t *vl = (int32_t *)w;         w += round_up(p.vl_bytes);
    float *po = (float *)w;             w += round_up(p.part_out);
    float *ps = (float *)w;

    /* the running result starts empty: (−∞, 0) and zeros, as a fully masked row */
    const int causal = d->mask.causal != 0;
    for (size_t r = 0; r < (size_t)d->B * d->H * p.Tl; r++) {
        stats[2 * r] = -INFINITY;
        stats[2 * r + 1] = 0.0f;
    }
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int t = 0; t < p.Tl; t++)
                memset(out + b * d->out.b + h * d->out.h + (int64_t)t * d->out.t, 0, sizeof(float) * d->Dv);

    pack_kv(d, &p, kvb[0], k, v);
    const size_t kfl = (size_t)d->B * d->Hkv * p.Sl * d->D;
    uint64_t sent = 0;
    for (int j = 0; j < p.n; j++) {
        float *cur = kvb[j & 1];
        MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
        if (j + 1 < p.n) {
            if (!start_ring(&p, comm, cur, kvb[(j + 1) & 1], (int)p.kv_floats, TAG_KV, req)) return ATTN_ERR_IO;
            sent += p.kv_floats * sizeof(float);
        }
        const int owner = (p.rank - j + p.n) % p.n;     /* whose keys are in hand */
        for (int qc = 0; qc < p.nq && st == ATTN_OK; qc++)
            for (int kc = 0; kc < p.nk && st == ATTN_OK; kc++) {
                int kind = pair_kind(&p, causal, p.rank, qc, owner, kc);
                if (kind == 0) continue;
                attn_sdpa_desc c = chunk_desc(d, &p, kind == 2);
                int64_t s0 = chunk_start(&p, causal, owner, kc, p.Sc);
                if (c.mask.valid_lens_kind != ATTN_VALID_LENS_NONE) {
                    chunk_lens(d, &p, vl, qc, s0);
                    c.mask.valid_lens = vl;
                }
                c.out = (attn_layout){(int64_t)d->H * p.Tc * d->Dv, (int64_t)p.Tc * d->Dv, d->Dv};
                const float *qq = q + (int64_t)qc * p.Tc * d->q.t;
                const float *kk = cur + (size_t)kc * p.Sc * d->D;
                const float *vv = cur + kfl + (size_t)kc * p.Sc * d->Dv;
                st = attn_sdpa_forward(ctx, &c, po, ps, NULL, qq, kk, vv, kern, p.kern_bytes);
                if (st == ATTN_OK) merge(d, &p, out, stats, qc, po, ps);
            }
        if (MPI_Waitall(2, req, MPI_STATUSES_IGNORE) != MPI_SUCCESS) return ATTN_ERR_IO;
    }
    if (bytes_sent) *bytes_sent += sent;
    return agree(st, comm);
}

/* ---- backward ------------------------------------------------------------------------------------- */

attn_status attn_ring_sdpa_backward(const attn_ctx *ctx, const attn_sdpa_desc *d, MPI_Comm comm,
                                    float *dq, float *dk, float *dv,
                                    const float *dout,
                                    const float *q, const float *k, const float *v,
                                    const float *out, const float *stats,
                                    void *work, size_t work_bytes, uint64_t *bytes_sent) {
    plan p;
    attn_status st = make_plan(ctx, d, comm, ATTN_PASS_BACKWARD, &p);
    if (st == ATTN_OK && (!dq || !dk || !dv || !dout || !q || !k || !v || !out || !stats || !work))
        st = ATTN_ERR_NULL;
    if (st == ATTN_OK && d->mask.valid_lens_kind != ATTN_VALID_LENS_NONE && !d->mask.valid_lens) st = ATTN_ERR_NULL;
    if (st == ATTN_OK && work_bytes < plan_bytes(&p, ATTN_PASS_BACKWARD)) st = ATTN_ERR_WORKSPACE;
    if ((st = agree(st, comm)) != ATTN_OK) return st;

    const size_t kvb_bytes = round_up(p.kv_floats * sizeof(float));
    char *w = work;
    void *kern = w;                     w += round_up(p.kern_bytes);
    float *kvb[2], *acc[2];
    kvb[0] = (float *)w;                w += kvb_bytes;
    kvb[1] = (float *)w;                w += kvb_bytes;
    int32_t *vl = (int32_t *)w;         w += round_up(p.vl_bytes);
    float *scratch = (float *)w;        w += kvb_bytes;
    acc[0] = (float *)w;                w += kvb_bytes;
    acc[1] = (float *)w;                w += kvb_bytes;
    float *cstats = (float *)w;         /* the stats re-laid out by query chunk: (nq,B,H,Tc,2) */

    const int causal = d->mask.causal != 0;
    const size_t kfl = (size_t)d->B * d->Hkv * p.Sl * d->D;
    const size_t chunk_rows = (size_t)d->B * d->H * p.Tc;
    for (int qc = 0; qc < p.nq; qc++)
        for (size_t bh = 0; bh < (size_t)d->B * d->H; bh++)
            memcpy(cstats + (qc * chunk_rows + bh * p.Tc) * ATTN_SDPA_STATS,
                   stats + (bh * p.Tl + (size_t)qc * p.Tc) * ATTN_SDPA_STATS,
                   sizeof(float) * ATTN_SDPA_STATS * p.Tc);
    pack_kv(d, &p, kvb[0], k, v);

    const int count = (int)p.kv_floats;
    uint64_t sent = 0;
    /* the accumulator of the block in hand is acc[j & 1]: zeros at step 0, else received from r − 1
     * during step j − 1 while acc[(j − 1) & 1] left for r + 1 */
    MPI_Request acc_req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    for (int j = 0; j < p.n; j++) {
        float *cur = kvb[j & 1];
        MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
        if (j + 1 < p.n) {
            if (!start_ring(&p, comm, cur, kvb[(j + 1) & 1], count, TAG_KV, req)) return ATTN_ERR_IO;
            sent += p.kv_floats * sizeof(float);
        }
        /* this step's shares: dK, dV of the block into the scratch block, dQ in place */
        memset(scratch, 0, p.kv_floats * sizeof(float));
        const int owner = (p.rank - j + p.n) % p.n;
        for (int qc = 0; qc < p.nq && st == ATTN_OK; qc++)
            for (int kc = 0; kc < p.nk && st == ATTN_OK; kc++) {
                int kind = pair_kind(&p, causal, p.rank, qc, owner, kc);
                if (kind == 0) continue;
                attn_sdpa_desc c = chunk_desc(d, &p, kind == 2);
                if (c.mask.valid_lens_kind != ATTN_VALID_LENS_NONE) {
                    chunk_lens(d, &p, vl, qc, chunk_start(&p, causal, owner, kc, p.Sc));
                    c.mask.valid_lens = vl;
                }
                const int64_t qo = (int64_t)qc * p.Tc;
                st = attn_sdpa_backward(ctx, &c, dq + qo * d->q.t,
                                        scratch + (size_t)kc * p.Sc * d->D, scratch + kfl + (size_t)kc * p.Sc * d->Dv,
                                        dout + qo * d->out.t, q + qo * d->q.t,
                                        cur + (size_t)kc * p.Sc * d->D, cur + kfl + (size_t)kc * p.Sc * d->Dv,
                                        out + qo * d->out.t, cstats + qc * chunk_rows * ATTN_SDPA_STATS,
                                        kern, p.kern_bytes);
            }
        /* join the block's accumulator and pass it on */
        float *a = acc[j & 1];
        if (j == 0) {
            memcpy(a, scratch, p.kv_floats * sizeof(float));
        } else {
            if (MPI_Waitall(2, acc_req, MPI_STATUSES_IGNORE) != MPI_SUCCESS) return ATTN_ERR_IO;
            for (size_t i = 0; i < p.kv_floats; i++) a[i] += scratch[i];
        }
        if (p.n > 1) {
            if (!start_ring(&p, comm, a, acc[(j + 1) & 1], count, TAG_DKV, acc_req)) return ATTN_ERR_IO;
            sent += p.kv_floats * sizeof(float);
        }
        if (MPI_Waitall(2, req, MPI_STATUSES_IGNORE) != MPI_SUCCESS) return ATTN_ERR_IO;
    }
    /* the last hop has brought this rank's own block home, every rank's shares in it */
    if (MPI_Waitall(2, acc_req, MPI_STATUSES_IGNORE) != MPI_SUCCESS) return ATTN_ERR_IO;
    if (st == ATTN_OK) unpack_add(d, &p, dk, dv, p.n == 1 ? acc[0] : acc[p.n & 1]);
    if (bytes_sent) *bytes_sent += sent;
    return agree(st, comm);
}
