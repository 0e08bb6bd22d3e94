/*
 * ring.c — ring attention over MPI: the scaled dot-product attention of a sequence cut over the ranks of a
 * communicator, each rank calling the library's fused kernel on its queries against one key/value block at
 * a time while the next block is on its way (Liu et al. 2023, "Ring Attention with Blockwise Transformers").
 *
 * Forward, on rank r of N: at step j the block of rank (r − j) mod N is in hand; it is sent on to r + 1 and
 * the next one received from r − 1 (MPI_Isend / MPI_Irecv, K and V as two messages, into the other
 * buffer) while the fused forward runs the local queries against it, PIECE_ROWS query rows per call; each
 * call's (out, stats) is merged into the running ones by the row statistics (exact: DESIGN "MPI").
 * Backward: the same tour of K, V; the fused backward, given the merged out and stats of the whole row,
 * computes each block's exact share of dQ (added in place) and of that block's dK, dV, added straight
 * into the block's accumulator, which then moves on to r + 1 while the next block's comes from r − 1
 * (between steps, whole into the receive buffer the step left free when there is one). After N hops
 * every accumulator is home. Between kernel calls MPI_Testall lets the step's blocks move, so the ranks need not keep step.
 *
 * Causal masks use the zig-zag shards (chunks r and 2N−1−r on rank r): a pair of chunks is either wholly
 * visible (key chunk before query chunk), causal on its diagonal (same chunk, only at step 0), or skipped.
 *
 * Memory per rank, besides the caller's tensors: one received key/value block (two when N > 2; plus one
 * packed copy of the rank's own when the caller's k, v are not contiguous), the kernel's workspace for
 * PIECE_ROWS rows, one call's partial out and stats; in the backward one dK/dV accumulator block (and at
 * N = 2 an eighth of one) instead of the partial out. Nothing grows with the global T or S.
 */
#define _POSIX_C_SOURCE 200809L   /* nanosleep, clock_gettime */
#include "attn/mpi.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { TAG_K = 0x6174, TAG_V = 0x6175, TAG_ACC0 = 0x6176, TAG_ACC1 = 0x6177 };

#define PIECE_ROWS 8192          /* query rows per kernel call at most: bounds the backward's dQ slots */
#define SPIN_NS 1000000          /* a wait polls MPI this long, then naps NAP_NS between polls */
#define NAP_NS 100000
#define XCHG_MIN 65536           /* the accumulator's hop in pieces (N = 2): an eighth of it, at least 256 KiB */

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

/* The plan of a call: local sizes, the chunks, and what the workspace holds. */
typedef struct plan {
    int n, rank, causal;
    int Tl, Sl;                  /* local rows of queries, of keys */
    int nch;                     /* chunks per rank: 2 with a causal mask (zig-zag), else 1 */
    int Tc, Sc;                  /* rows per chunk */
    int P;                       /* query rows per kernel call at most */
    int packed;                  /* the caller's k and v are already in the block layout */
    int nrecv;                   /* receive buffers for blocks: 0 (N = 1), 1 (N = 2), else 2 */
    size_t kfl, vfl;             /* floats of a block's K (B,Hkv,Sl,D) and V (B,Hkv,Sl,Dv) */
    size_t kern_bytes;           /* the fused kernel's workspace (the largest call) */
    size_t xchg;                 /* floats per piece of the accumulator's hop when it goes in pieces */
} plan;

static attn_layout block_layout(const attn_sdpa_desc *d, int Sl, int W) {
    return (attn_layout){(int64_t)d->Hkv * Sl * W, (int64_t)Sl * W, W};
}

static int same_layout(attn_layout a, attn_layout b) { return a.b == b.b && a.h == b.h && a.t == b.t; }

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
    const int n = p->n;
    p->causal = d->mask.causal != 0;
    if (p->causal && d->T != d->S) return ATTN_ERR_SHAPE;
    const int parts = p->causal ? 2 * n : n;
    if (d->T % parts != 0 || d->S % parts != 0) return ATTN_ERR_SHAPE;
    p->Tl = d->T / n; p->Sl = d->S / n;
    p->nch = p->causal ? 2 : 1;
    p->Tc = d->T / parts; p->Sc = d->S / parts;
    /* ATTN_RING_PIECE_ROWS (a test knob) makes the pieces smaller, so that small tests cut chunks too, and
     * the accumulator's hop pieces that many floats */
    const char *env = getenv("ATTN_RING_PIECE_ROWS");
    const int piece = env && atoi(env) > 0 && atoi(env) < PIECE_ROWS ? atoi(env) : PIECE_ROWS;
    p->P = p->Tc < piece ? p->Tc : piece;
    /* the local tensors' descriptor: every field but the lengths checked as the single-process call does */
    attn_sdpa_desc loc = *d;
    loc.T = p->Tl; loc.S = p->Sl;
    loc.mask.causal = 0;
    if ((st = attn_sdpa_validate(&loc)) != ATTN_OK) return st;
    p->kfl = (size_t)d->B * d->Hkv * p->Sl * (size_t)d->D;
    p->vfl = (size_t)d->B * d->Hkv * p->Sl * (size_t)d->Dv;
    if (p->kfl > (size_t)INT_MAX || p->vfl > (size_t)INT_MAX) return ATTN_ERR_SIZE;   /* one message each */
    p->packed = same_layout(d->k, block_layout(d, p->Sl, d->D)) && same_layout(d->v, block_layout(d, p->Sl, d->Dv));
    p->nrecv = n == 1 ? 0 : n == 2 ? 1 : 2;
    /* the accumulator's hop when no whole block is free (N = 2, after step 0): few pieces (each costs a
     * handshake), little memory: an eighth of it, at least XCHG_MIN floats */
    const size_t all = p->kfl + p->vfl, x = piece < PIECE_ROWS ? (size_t)piece : (all + 7) / 8;
    p->xchg = x >= XCHG_MIN || piece < PIECE_ROWS ? x : all < XCHG_MIN ? all : XCHG_MIN;
    p->kern_bytes = 0;
    for (int diag = 0; diag <= p->causal; diag++) {
        attn_sdpa_desc c = *d;
        c.T = p->P; c.S = p->Sc;
        c.k = block_layout(d, p->Sl, d->D);
        c.v = block_layout(d, p->Sl, d->Dv);
        c.mask.causal = diag;
        size_t b;
        if ((st = attn_sdpa_workspace_size(ctx, &c, pass, &b)) != ATTN_OK) return st;
        if (b > p->kern_bytes) p->kern_bytes = b;
    }
    return ATTN_OK;
}

/* The workspace, in this order: kernel | own block packed (when the caller's is not) | receive buffers |
 * valid lengths of a call (B,P) | forward: a call's out (B,H,P,Dv) and stats (B,H,P,2) | backward: the
 * dK, dV accumulator (one block), at N = 2 the piece its first hop goes through, a call's stats (B,H,P,2). */
typedef struct carve {
    void *kern;
    float *own, *recv[2];
    int32_t *vl;
    float *po, *ps;              /* forward */
    float *acc, *xchg, *cst;     /* backward */
    size_t total;
} carve;

static carve carve_work(const attn_sdpa_desc *d, const plan *p, attn_pass pass, char *w) {
    carve c = {0};
    const size_t blk = round_up((p->kfl + p->vfl) * sizeof(float));
    const size_t rows = (size_t)d->B * d->H * p->P;
    size_t at = 0;
#define TAKE(ptr, type, bytes) do { if (w) ptr = (type)(w + at); at += round_up(bytes); } while (0)
    TAKE(c.kern, void *, p->kern_bytes);
    if (!p->packed) TAKE(c.own, float *, blk);
    for (int i = 0; i < p->nrecv; i++) TAKE(c.recv[i], float *, blk);
    TAKE(c.vl, int32_t *, (size_t)d->B * p->P * sizeof(int32_t));
    if (pass == ATTN_PASS_FORWARD) {
        TAKE(c.po, float *, rows * d->Dv * sizeof(float));
        TAKE(c.ps, float *, rows * ATTN_SDPA_STATS * sizeof(float));
    } else {
        TAKE(c.acc, float *, blk);
        TAKE(c.xchg, float *, p->n == 2 ? p->xchg * sizeof(float) : 0);
        TAKE(c.cst, float *, rows * ATTN_SDPA_STATS * sizeof(float));
    }
#undef TAKE
    c.total = at;
    return c;
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
    *bytes = carve_work(d, &p, pass, NULL).total;
    return ATTN_OK;
}

/* Waits for n requests without holding a core: Open MPI's own waits poll without end, and a rank waiting
 * for a slower neighbour then takes half the CPU its neighbour needs whenever the machine has fewer free
 * cores than ranks (other jobs; several ranks per core). So: poll for SPIN_NS (a message on its way
 * completes within it), then poll every NAP_NS, sleeping between. 0 on an MPI failure. */
static int wait_all(int n, MPI_Request *req) {
    struct timespec t0, now;
    const struct timespec nap = {0, NAP_NS};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int done;
        if (MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) return 0;
        if (done) return 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1000000000L + (now.tv_nsec - t0.tv_nsec) > SPIN_NS) nanosleep(&nap, NULL);
    }
}

/* Every rank learns whether every rank's arguments passed: the worst status wins (statuses are <= 0). */
static attn_status agree(attn_status mine, MPI_Comm comm) {
    int s = (int)mine, worst;
    MPI_Request req;
    if (MPI_Iallreduce(&s, &worst, 1, MPI_INT, MPI_MIN, comm, &req) != MPI_SUCCESS || !wait_all(1, &req))
        return ATTN_ERR_IO;
    if (mine != ATTN_OK) return mine;
    return worst == ATTN_OK ? ATTN_OK : ATTN_ERR_ARG;   /* another rank's arguments were refused */
}

/* ---- pieces of a step ----------------------------------------------------------------------------- */

/* Copies the rows (B,Hkv,Sl,W) of the caller's tensor (layout L) into the contiguous block (to_block), or
 * adds the block's rows into the caller's. */
static void copy_rows(const attn_sdpa_desc *d, const plan *p, int W, attn_layout L, float *caller,
                      float *blk, int to_block) {
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->Hkv; h++)
            for (int s = 0; s < p->Sl; s++) {
                float *g = caller + b * L.b + h * L.h + s * L.t;
                float *x = blk + (((size_t)b * d->Hkv + h) * p->Sl + s) * W;
                if (to_block) memcpy(x, g, sizeof(float) * W);
                else for (int i = 0; i < W; i++) g[i] += x[i];
            }
}

/* Global first row of chunk c of rank `owner`, for chunks of `rows` rows. */
static int64_t chunk_start(const plan *p, int owner, int c, int rows) {
    if (!p->causal) return (int64_t)owner * rows;
    return (int64_t)(c == 0 ? owner : 2 * p->n - 1 - owner) * rows;
}

/* One kernel call: rows [qo, qo + c.T) of the local queries against keys [ko, ko + c.S) of the block. */
typedef struct call {
    attn_sdpa_desc c;
    int64_t qo, ko;
} call;

/* Sets up the call of piece `piece` of local query chunk qc against key chunk kc of rank owner's block.
 * Returns 0 when the causal mask hides every key of it. The pair is wholly visible (key chunk before
 * the query chunk), or the causal diagonal: then the piece starting at row a of the chunk sees the
 * chunk's first a + rows keys, bottom-right aligned, which is the kernel's own causal mask. */
static int make_call(const attn_sdpa_desc *d, const plan *p, int owner, int qc, int kc, int piece, int32_t *vl,
                     call *k) {
    int64_t qg = chunk_start(p, p->rank, qc, p->Tc), kg = chunk_start(p, owner, kc, p->Sc);
    if (p->causal && kg > qg) return 0;
    const int diag = p->causal && kg == qg;
    const int r0 = piece * p->P, rows = p->Tc - r0 < p->P ? p->Tc - r0 : p->P;
    k->c = *d;
    k->c.T = rows;
    k->c.S = diag ? r0 + rows : p->Sc;
    k->c.k = block_layout(d, p->Sl, d->D);
    k->c.v = block_layout(d, p->Sl, d->Dv);
    k->c.mask.causal = diag;
    k->qo = (int64_t)qc * p->Tc + r0;
    k->ko = (int64_t)kc * p->Sc;
    if (d->mask.valid_lens_kind != ATTN_VALID_LENS_NONE) {
        /* each length less the block's first global key, clamped to [0, S of the call] */
        const int per_q = d->mask.valid_lens_kind == ATTN_VALID_LENS_PER_QUERY, nr = per_q ? rows : 1;
        for (int b = 0; b < d->B; b++)
            for (int t = 0; t < nr; t++) {
                int64_t len = per_q ? d->mask.valid_lens[(int64_t)b * p->Tl + k->qo + t] : d->mask.valid_lens[b];
                int64_t l = len - kg;
                vl[(int64_t)b * nr + t] = (int32_t)(l < 0 ? 0 : l > k->c.S ? k->c.S : l);
            }
        k->c.mask.valid_lens = vl;
    }
    return 1;
}

/* Merges a call's (po (B,H,rows,Dv) contiguous, ps (B,H,rows,2)) into the running out and stats at local
 * rows [qo, qo + rows): with w = l·exp(m − m') for each side against the larger m', out is the w-weighted
 * mean and the stats (m', log Σ w). Exact up to rounding; computed in double. */
static void merge(const attn_sdpa_desc *d, const plan *p, float *out, float *stats, int64_t qo, int rows,
                  const float *po, const float *ps) {
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int t = 0; t < rows; t++) {
                size_t pr = ((size_t)b * d->H + h) * rows + t;
                float *st = stats + (((size_t)b * d->H + h) * p->Tl + qo + t) * ATTN_SDPA_STATS;
                const float *bs = ps + pr * ATTN_SDPA_STATS;
                float *o = out + b * d->out.b + h * d->out.h + (qo + t) * d->out.t;
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

/* Lets MPI move the step's blocks between kernel calls. Open MPI's shared-memory and TCP transports move
 * a large message only inside an MPI call of both ranks (the receiver pulls it after a handshake): without
 * this the block would move in the step's final wait, after the slower rank's last kernel call, and
 * the ranks would run in lockstep; with it the next block is in hand early, so a rank that got more of the
 * machine in this step starts the next one without waiting for its neighbour to finish. 0 on an MPI failure. */
static int progress(MPI_Request req[4]) {
    int done;
    return MPI_Testall(4, req, &done, MPI_STATUSES_IGNORE) == MPI_SUCCESS;
}

/* Starts a step's exchange: the block in hand (kb, vb) to rank r + 1, the next into (nk, nv) from r − 1. */
static int start_ring(const plan *p, MPI_Comm comm, const float *kb, const float *vb, float *nk, float *nv,
                      MPI_Request req[4]) {
    int right = (p->rank + 1) % p->n, left = (p->rank + p->n - 1) % p->n;
    return MPI_Irecv(nk, (int)p->kfl, MPI_FLOAT, left, TAG_K, comm, &req[0]) == MPI_SUCCESS &&
           MPI_Irecv(nv, (int)p->vfl, MPI_FLOAT, left, TAG_V, comm, &req[1]) == MPI_SUCCESS &&
           MPI_Isend(kb, (int)p->kfl, MPI_FLOAT, right, TAG_K, comm, &req[2]) == MPI_SUCCESS &&
           MPI_Isend(vb, (int)p->vfl, MPI_FLOAT, right, TAG_V, comm, &req[3]) == MPI_SUCCESS;
}

/* The rank's own block in the block layout: the caller's k and v when they are in it, else a packed copy. */
static void own_block(const attn_sdpa_desc *d, const plan *p, const carve *w, const float *k, const float *v,
                      const float **kb, const float **vb) {
    if (p->packed) {
        *kb = k; *vb = v;
        return;
    }
    copy_rows(d, p, d->D, d->k, (float *)k, w->own, 1);
    copy_rows(d, p, d->Dv, d->v, (float *)v, w->own + p->kfl, 1);
    *kb = w->own; *vb = w->own + p->kfl;
}

/* Step j begins: the block in hand becomes the one received during step j − 1 (the rank's own at step 0,
 * already in *kb, *vb), and unless it is the last step, that block leaves for r + 1 while the next one
 * comes from r − 1 into the other buffer. 0 on an MPI failure. */
static int begin_step(const plan *p, const carve *w, MPI_Comm comm, int j, const float **kb, const float **vb,
                      MPI_Request req[4], uint64_t *sent) {
    for (int i = 0; i < 4; i++) req[i] = MPI_REQUEST_NULL;
    if (j > 0) {
        *kb = w->recv[(j - 1) % p->nrecv];
        *vb = *kb + p->kfl;
    }
    if (j + 1 >= p->n) return 1;
    float *nb = w->recv[j % p->nrecv];
    *sent += (p->kfl + p->vfl) * sizeof(float);
    return start_ring(p, comm, *kb, *vb, nb, nb + p->kfl, req);
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
    if (st == ATTN_OK && work_bytes < carve_work(d, &p, ATTN_PASS_FORWARD, NULL).total) st = ATTN_ERR_WORKSPACE;
    if ((st = agree(st, comm)) != ATTN_OK) return st;
    carve w = carve_work(d, &p, ATTN_PASS_FORWARD, work);

    /* the running result starts empty, as a fully masked row: stats (−∞, 0), out zeros */
    for (size_t r = 0; r < (size_t)d->B * d->H * p.Tl; r++) {
        stats[2 * r] = -INFINITY;
        stats[2 * r + 1] = 0.0f;
    }
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int t = 0; t < p.Tl; t++)
                memset(out + b * d->out.b + h * d->out.h + (int64_t)t * d->out.t, 0, sizeof(float) * d->Dv);

    const float *kb, *vb;
    own_block(d, &p, &w, k, v, &kb, &vb);
    const int npieces = (p.Tc + p.P - 1) / p.P;
    uint64_t sent = 0;
    for (int j = 0; j < p.n; j++) {
        MPI_Request req[4];
        if (!begin_step(&p, &w, comm, j, &kb, &vb, req, &sent)) return ATTN_ERR_IO;
        const int owner = (p.rank - j + p.n) % p.n;     /* whose keys are in hand */
        for (int qc = 0; qc < p.nch; qc++)
            for (int kc = 0; kc < p.nch; kc++)
                for (int pc = 0; pc < npieces && st == ATTN_OK; pc++) {
                    call c;
                    if (!make_call(d, &p, owner, qc, kc, pc, w.vl, &c)) continue;
                    c.c.out = (attn_layout){(int64_t)d->H * c.c.T * d->Dv, (int64_t)c.c.T * d->Dv, d->Dv};
                    st = attn_sdpa_forward(ctx, &c.c, w.po, w.ps, NULL, q + c.qo * d->q.t, kb + c.ko * d->D,
                                           vb + c.ko * d->Dv, w.kern, p.kern_bytes);
                    if (st == ATTN_OK) merge(d, &p, out, stats, c.qo, c.c.T, w.po, w.ps);
                    if (!progress(req)) return ATTN_ERR_IO;
                }
        /* a failed call leaves the result undone but keeps the ring turning: no rank is left waiting */
        if (!wait_all(4, req)) return ATTN_ERR_IO;
    }
    if (bytes_sent) *bytes_sent += sent;
    return agree(st, comm);
}

/* ---- backward ------------------------------------------------------------------------------------- */

/* n floats from `from` to rank r + 1 and n from rank r − 1 into `to`, each as two messages (a count is an
 * int; K's and V's floats each fit one). 0 on an MPI failure. */
static int swap_with_neighbours(const plan *p, MPI_Comm comm, const float *from, float *to, size_t n) {
    int right = (p->rank + 1) % p->n, left = (p->rank + p->n - 1) % p->n;
    const size_t h = n / 2;
    MPI_Request req[4];
    return MPI_Irecv(to, (int)h, MPI_FLOAT, left, TAG_ACC0, comm, &req[0]) == MPI_SUCCESS &&
           MPI_Irecv(to + h, (int)(n - h), MPI_FLOAT, left, TAG_ACC1, comm, &req[1]) == MPI_SUCCESS &&
           MPI_Isend(from, (int)h, MPI_FLOAT, right, TAG_ACC0, comm, &req[2]) == MPI_SUCCESS &&
           MPI_Isend(from + h, (int)(n - h), MPI_FLOAT, right, TAG_ACC1, comm, &req[3]) == MPI_SUCCESS &&
           wait_all(4, req);
}

/* After step j: the accumulator goes to rank r + 1 and rank r − 1's takes its place. Whole, in one hop,
 * when a receive buffer is free: the one that held step j's block (j >= 1), or at j = 0 the second one
 * (N > 2), still unused; never the one holding step j + 1's block. The two then swap roles: the arrival
 * is the accumulator, the sent one receives a later block. Only at N = 2 after step 0 is no block free
 * (a second one would be a whole block more per rank): there the hop goes in eighths through w->xchg.
 * Few handshakes: on a loaded machine each can cost both ranks a time slice. 0 on an MPI failure. */
static int pass_accumulator(const plan *p, carve *w, MPI_Comm comm, int j) {
    const size_t all = p->kfl + p->vfl;
    float **fr = j >= 1 ? &w->recv[(j - 1) % p->nrecv] : p->nrecv == 2 ? &w->recv[1] : NULL;
    if (!fr) {
        const size_t piece = p->xchg;
        for (size_t i = 0; i < all; i += piece) {
            size_t c = all - i < piece ? all - i : piece;
            if (!swap_with_neighbours(p, comm, w->acc + i, w->xchg, c)) return 0;
            memcpy(w->acc + i, w->xchg, sizeof(float) * c);
        }
        return 1;
    }
    float *in = *fr;
    if (!swap_with_neighbours(p, comm, w->acc, in, all)) return 0;
    *fr = w->acc;
    w->acc = in;
    return 1;
}


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
    if (st == ATTN_OK && work_bytes < carve_work(d, &p, ATTN_PASS_BACKWARD, NULL).total) st = ATTN_ERR_WORKSPACE;
    if ((st = agree(st, comm)) != ATTN_OK) return st;
    carve w = carve_work(d, &p, ATTN_PASS_BACKWARD, work);

    const float *kb, *vb;
    own_block(d, &p, &w, k, v, &kb, &vb);
    /* the accumulator of the block in hand: zeros for the rank's own block at step 0; after each step it
     * moves on to r + 1 and the next block's comes from r − 1 (between steps, not under the kernel: one
     * block of memory instead of three, and a step's kernel time is far longer than the copy) */
    memset(w.acc, 0, (p.kfl + p.vfl) * sizeof(float));
    const int npieces = (p.Tc + p.P - 1) / p.P;
    uint64_t sent = 0;
    for (int j = 0; j < p.n; j++) {
        MPI_Request req[4];
        if (!begin_step(&p, &w, comm, j, &kb, &vb, req, &sent)) return ATTN_ERR_IO;
        const int owner = (p.rank - j + p.n) % p.n;
        for (int qc = 0; qc < p.nch; qc++)
            for (int kc = 0; kc < p.nch; kc++)
                for (int pc = 0; pc < npieces && st == ATTN_OK; pc++) {
                    call c;
                    if (!make_call(d, &p, owner, qc, kc, pc, w.vl, &c)) continue;
                    /* the merged stats of the call's rows, contiguous (B,H,rows,2) */
                    for (size_t bh = 0; bh < (size_t)d->B * d->H; bh++)
                        memcpy(w.cst + bh * c.c.T * ATTN_SDPA_STATS, stats + (bh * p.Tl + c.qo) * ATTN_SDPA_STATS,
                               sizeof(float) * ATTN_SDPA_STATS * c.c.T);
                    st = attn_sdpa_backward(ctx, &c.c, dq + c.qo * d->q.t, w.acc + c.ko * d->D,
                                            w.acc + p.kfl + c.ko * d->Dv, dout + c.qo * d->out.t,
                                            q + c.qo * d->q.t, kb + c.ko * d->D, vb + c.ko * d->Dv,
                                            out + c.qo * d->out.t, w.cst, w.kern, p.kern_bytes);
                    if (!progress(req)) return ATTN_ERR_IO;
                }
        if (!wait_all(4, req)) return ATTN_ERR_IO;
        if (p.n > 1) {
            if (!pass_accumulator(&p, &w, comm, j)) return ATTN_ERR_IO;
            sent += (p.kfl + p.vfl) * sizeof(float);
        }
    }
    /* after N hops every accumulator is home, with every rank's shares in it */
    if (st == ATTN_OK) {
        copy_rows(d, &p, d->D, d->k, dk, w.acc, 0);
        copy_rows(d, &p, d->Dv, d->v, dv, w.acc + p.kfl, 0);
    }
    if (bytes_sent) *bytes_sent += sent;
    return agree(st, comm);
}
