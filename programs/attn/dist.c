/*
 * dist.c — the program's side of data-parallel training: whether it was started by mpirun (then MPI is
 * initialized, with every rank a shard of each batch), the rank and the number of ranks, the fixed-order
 * gradient sum of attn/mpi.h, and sums of a training's counters. Built without MPI, or started without
 * mpirun, the program is one rank and these calls do nothing; MPI_Init is never called for a command
 * that does not train.
 */
#include "cli.h"
#include "rowsum.h"

#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef ATTN_WITH_MPI
#include "attn/mpi.h"

static int g_on, g_rank, g_size = 1;

/* Open MPI's, MPICH's and PMIx's launchers set these in every rank they start. */
static int under_launcher(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int dist_start(void) {
    if (g_on || !under_launcher()) return 0;
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        fprintf(stderr, "attn: MPI_Init failed\n");
        return 1;
    }
    /* a failed call returns an error (then the program stops all ranks with a message) */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_on = 1;
    return 0;
}

static int finish_sends(int turn);
static void free_sends(void);

void dist_stop(void) {
    if (g_on) {
        finish_sends(0);
        finish_sends(1);
        free_sends();
        MPI_Finalize();
    }
    g_on = 0;
}

int dist_on(void) { return g_on; }
int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

int dist_sum_ordered(float *x, int64_t n, float *scratch) {
    if (!g_on) return 0;
    return cli_fail(attn_mpi_sum_ordered(x, n, scratch, n, MPI_COMM_WORLD), "the gradient sum over the ranks");
}

int dist_sum_doubles(double *x, int n) {
    if (!g_on || n <= 0) return 0;
    if (MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) {
        fprintf(stderr, "attn: rank %d: a sum over the ranks failed\n", g_rank);
        return 1;
    }
    return 0;
}

enum { TAG_ROWS = 0x6179 };

/* Waits for a message from `from`: probes for up to 1 ms (a partner that is nearly done answers within it),
 * then sleeps 20 µs between probes so that a rank with a long wait gives its core back. MPI_Probe would
 * spin, or with more ranks than cores call sched_yield, which on a machine shared with other work hands
 * the waiting rank's core to no one in particular for long. */
static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int probe_sleeping(int from, int tag, MPI_Status *status) {
    const double t0 = now_s();
    for (;;) {
        int flag = 0;
        if (MPI_Iprobe(from, tag, MPI_COMM_WORLD, &flag, status) != MPI_SUCCESS) return 1;
        if (flag) return 0;
        if (now_s() - t0 >= 1e-3) nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 20000}, NULL);
    }
}

/* Waits for a send to complete, as probe_sleeping waits for a message. */
static int wait_sleeping(MPI_Request *req) {
    const double t0 = now_s();
    for (;;) {
        int flag = 0;
        if (MPI_Test(req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return 1;
        if (flag) return 0;
        if (now_s() - t0 >= 1e-3) nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 20000}, NULL);
    }
}

/* the packed sum from `from` into wire; *v views it (shaped as x). 0, or 1 after a message */
static int recv_rows(rowsum *v, const rowsum *x, void *wire, size_t wire_bytes, int from) {
    MPI_Status status;
    int count;
    if (probe_sleeping(from, TAG_ROWS, &status) ||
        MPI_Get_count(&status, MPI_BYTE, &count) != MPI_SUCCESS || count < 0 || (size_t)count > wire_bytes ||
        MPI_Recv(wire, count, MPI_BYTE, from, TAG_ROWS, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        fprintf(stderr, "attn: rank %d: receiving the gradient of rank %d failed\n", g_rank, from);
        return 1;
    }
    *v = (rowsum){.width = x->width, .n_tail = x->n_tail};
    if (rowsum_view(v, wire, (size_t)count)) {
        fprintf(stderr, "attn: rank %d: rank %d sent a gradient of %d bytes, not rows of %d floats after %" PRId64
                " floats\n", g_rank, from, count, x->width, x->n_tail);
        return 1;
    }
    return 0;
}

static int send_rows(const rowsum *x, void *wire, size_t wire_bytes, int to, uint64_t *bytes_sent) {
    const size_t bytes = rowsum_packed_bytes(x);
    if (bytes > wire_bytes || bytes > INT_MAX) {
        fprintf(stderr, "attn: rank %d: a gradient of %zu bytes does not fit the buffer of %zu\n", g_rank, bytes,
                wire_bytes);
        return 1;
    }
    rowsum_pack(x, wire);
    if (MPI_Send(wire, (int)bytes, MPI_BYTE, to, TAG_ROWS, MPI_COMM_WORLD) != MPI_SUCCESS) {
        fprintf(stderr, "attn: rank %d: sending the gradient to rank %d failed\n", g_rank, to);
        return 1;
    }
    *bytes_sent += bytes;
    return 0;
}

static int add_rows(rowsum *out, const rowsum *a, const rowsum *b) {
    if (rowsum_add(out, a, b) == 0) return 0;
    fprintf(stderr, "attn: rank %d: the summed gradient has more rows than a batch has words\n", g_rank);
    return 1;
}

static void swap_rows(rowsum *a, rowsum *b) {
    rowsum t = *a;
    *a = *b;
    *b = t;
}

/* The butterfly's outgoing messages: a buffer and a request per round, two sets used in turn by
 * successive sums, so that a send is waited for only two sums later (long complete by then) and never in
 * the step that posted it: a rank then waits only for its partner's message, not also for the partner to
 * have taken its own (which needs the partner to be running). dist_stop completes them. */
enum { MAX_ROUNDS = 31 };
static MPI_Request g_sends[2][MAX_ROUNDS];
static int g_sending[2][MAX_ROUNDS];
static char *g_out[2][MAX_ROUNDS];
static size_t g_out_bytes[2][MAX_ROUNDS];
static int g_turn;

static int finish_sends(int turn) {
    int bad = 0;
    for (int k = 0; k < MAX_ROUNDS; k++)
        if (g_sending[turn][k]) {
            bad |= wait_sleeping(&g_sends[turn][k]);
            g_sending[turn][k] = 0;
        }
    return bad;
}

static void free_sends(void) {
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < MAX_ROUNDS; k++) {
            free(g_out[t][k]);
            g_out[t][k] = NULL;
            g_out_bytes[t][k] = 0;
        }
}

/* N a power of two: the butterfly. Round s = 1, 2, 4, ...: rank r and its partner r XOR s exchange their
 * partial sums at once and both add them, the lower rank's first: the additions of the balanced tree below,
 * done on both sides, so every rank ends with its bits after log2 N rounds of one message each way (the
 * tree's up and down are 2·log2 N messages one after another, with the receiver adding in between). */
static int rowsum_butterfly(rowsum *x, rowsum *spare, void *wire, size_t wire_bytes, uint64_t *bytes_sent,
                            void (*idle)(void *), void *user) {
    g_turn ^= 1;
    if (finish_sends(g_turn)) {
        fprintf(stderr, "attn: rank %d: an earlier gradient message did not complete\n", g_rank);
        return 1;
    }
    for (int s = 1, k = 0; s < g_size; s *= 2, k++) {
        const int partner = g_rank ^ s;
        const size_t bytes = rowsum_packed_bytes(x);
        if (bytes > wire_bytes || bytes > INT_MAX) {
            fprintf(stderr, "attn: rank %d: a gradient of %zu bytes does not fit the buffer of %zu\n", g_rank, bytes,
                    wire_bytes);
            return 1;
        }
        if (g_out_bytes[g_turn][k] < bytes) {
            free(g_out[g_turn][k]);
            g_out_bytes[g_turn][k] = 0;
            if (!(g_out[g_turn][k] = malloc(wire_bytes))) {
                fprintf(stderr, "attn: rank %d: out of memory for a gradient message\n", g_rank);
                return 1;
            }
            g_out_bytes[g_turn][k] = wire_bytes;
        }
        rowsum_pack(x, g_out[g_turn][k]);
        rowsum v;
        if (MPI_Isend(g_out[g_turn][k], (int)bytes, MPI_BYTE, partner, TAG_ROWS, MPI_COMM_WORLD,
                      &g_sends[g_turn][k]) != MPI_SUCCESS) {
            fprintf(stderr, "attn: rank %d: sending the gradient to rank %d failed\n", g_rank, partner);
            return 1;
        }
        g_sending[g_turn][k] = 1;
        *bytes_sent += bytes;
        if (s == 1 && idle) idle(user);
        if (recv_rows(&v, x, wire, wire_bytes, partner)) return 1;
        if (g_rank < partner ? add_rows(spare, x, &v) : add_rows(spare, &v, x)) return 1;
        swap_rows(x, spare);
    }
    return 0;
}

/* Other N: the tree of attn_mpi_sum_ordered (src/dist/sum.c), one message per edge: up, rank r with
 * r mod 2s == 0 adds the sum of r + s after its own (x + received, the order of the groups); down, rank
 * 0's bits. */
int dist_rowsum_ordered(rowsum *x, rowsum *spare, void *wire, size_t wire_bytes, uint64_t *bytes_sent,
                        void (*idle)(void *), void *user) {
    if (g_on && g_size > 1 && (g_size & (g_size - 1)) == 0)
        return rowsum_butterfly(x, spare, wire, wire_bytes, bytes_sent, idle, user);
    if (idle) idle(user);
    if (!g_on) return 0;
    int top = 1;
    while (top < g_size) top *= 2;
    for (int s = 1; s < g_size; s *= 2) {
        if (g_rank % (2 * s) == 0) {
            if (g_rank + s >= g_size) continue;
            rowsum v;
            if (recv_rows(&v, x, wire, wire_bytes, g_rank + s) || add_rows(spare, x, &v)) return 1;
            swap_rows(x, spare);
        } else if (g_rank % (2 * s) == s) {
            if (send_rows(x, wire, wire_bytes, g_rank - s, bytes_sent)) return 1;
            break;
        }
    }
    for (int s = top / 2; s >= 1; s /= 2) {
        if (g_rank % (2 * s) == 0 && g_rank + s < g_size) {
            if (send_rows(x, wire, wire_bytes, g_rank + s, bytes_sent)) return 1;
        } else if (g_rank % (2 * s) == s) {
            rowsum v;
            if (recv_rows(&v, x, wire, wire_bytes, g_rank - s) || rowsum_unpack(x, wire, rowsum_packed_bytes(&v)))
                return 1;
        }
    }
    return 0;
}

/* Row-owned optimizer state (cmd_imdb.c): the rows of a table this rank owns that another rank will read,
 * and back. Every message goes out and comes in at once (receives posted first); both sides list the same
 * rows in the same order, so only the values travel, n·width floats, a message per pair of ranks even when
 * empty. */
enum { TAG_FRESH = 0x617a };

int dist_swap_rows(float *table, int width, int32_t *const *send_ids, const int *n_send, int32_t *const *recv_ids,
                   const int *n_recv, float *buf, uint64_t *bytes_sent) {
    if (!g_on || g_size < 2) return 0;
    if (g_size > 64) {
        fprintf(stderr, "attn: rank %d: at most 64 ranks refresh rows (%d)\n", g_rank, g_size);
        return 1;
    }
    MPI_Request req[128];
    float *in[64], *out[64];
    int n_req = 0, bad = 0;
    float *at = buf;
    for (int p = 0; p < g_size; p++) {
        if (p == g_rank) continue;
        in[p] = at;
        at += (size_t)n_recv[p] * (size_t)width;
        out[p] = at;
        at += (size_t)n_send[p] * (size_t)width;
        if ((int64_t)n_recv[p] * width > INT_MAX || (int64_t)n_send[p] * width > INT_MAX) bad = 1;
    }
    for (int p = 0; p < g_size && !bad; p++)
        if (p != g_rank && MPI_Irecv(in[p], n_recv[p] * width, MPI_FLOAT, p, TAG_FRESH, MPI_COMM_WORLD,
                                     &req[n_req++]) != MPI_SUCCESS)
            bad = 1;
    for (int p = 0; p < g_size && !bad; p++) {
        if (p == g_rank) continue;
        for (int i = 0; i < n_send[p]; i++)
            memcpy(out[p] + (size_t)i * (size_t)width, table + (size_t)send_ids[p][i] * (size_t)width,
                   sizeof(float) * (size_t)width);
        if (MPI_Isend(out[p], n_send[p] * width, MPI_FLOAT, p, TAG_FRESH, MPI_COMM_WORLD, &req[n_req++]) !=
            MPI_SUCCESS)
            bad = 1;
        else
            *bytes_sent += sizeof(float) * (uint64_t)n_send[p] * (uint64_t)width;
    }
    for (int i = 0; i < n_req && !bad; i++) bad |= wait_sleeping(&req[i]);
    if (bad) {
        fprintf(stderr, "attn: rank %d: exchanging the parameter rows the next step reads failed\n", g_rank);
        return 1;
    }
    for (int p = 0; p < g_size; p++) {
        if (p == g_rank) continue;
        for (int i = 0; i < n_recv[p]; i++)
            memcpy(table + (size_t)recv_ids[p][i] * (size_t)width, in[p] + (size_t)i * (size_t)width,
                   sizeof(float) * (size_t)width);
    }
    return 0;
}

int dist_gather_owned(float *x, int width, int64_t rows, int all, uint64_t *bytes_sent) {
    if (!g_on || g_size < 2) return 0;
    int counts[64], displs[64];
    if (g_size > 64) return 1;
    for (int k = 0; k < g_size; k++) {
        const int64_t lo = (int64_t)k * rows / g_size, hi = (int64_t)(k + 1) * rows / g_size;
        if (hi * width > INT_MAX) {
            fprintf(stderr, "attn: rank %d: a table of %" PRId64 " rows of %d floats is too large to gather\n", g_rank,
                    rows, width);
            return 1;
        }
        counts[k] = (int)((hi - lo) * width);
        displs[k] = (int)(lo * width);
    }
    const int lead = g_rank == 0;
    const int rc = all ? MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, x, counts, displs, MPI_FLOAT, MPI_COMM_WORLD)
                       : MPI_Gatherv(lead ? MPI_IN_PLACE : x + displs[g_rank], counts[g_rank], MPI_FLOAT, x, counts,
                                     displs, MPI_FLOAT, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        fprintf(stderr, "attn: rank %d: gathering the table's rows to %s failed\n", g_rank, all ? "every rank" : "rank 0");
        return 1;
    }
    /* what this rank's rows need to reach (the collective's own routing may differ) */
    if (all) *bytes_sent += sizeof(float) * (uint64_t)counts[g_rank] * (uint64_t)(g_size - 1);
    else if (!lead) *bytes_sent += sizeof(float) * (uint64_t)counts[g_rank];
    return 0;
}

int dist_barrier(void) {
    if (!g_on) return 0;
    return MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS;
}

void dist_abort(int code) {
    if (g_on) MPI_Abort(MPI_COMM_WORLD, code);
}

enum { TAG_SHARD = 0x6178 };

/* The translators' combiner (attn_shard_combine_fn): every rank sends its shards' losses and gradients to
 * rank 0, which adds all of them to zeros in shard order, as one process does; rank 0 then sends the sum
 * and the loss to every rank. Rank r holds shards [r·count, (r+1)·count). */
attn_status dist_combine_shards(void *user, float *grads, size_t n_params, float *const *shard_grads,
                                const float *losses, int first, int count, int n_used, float *loss) {
    (void)user;
    if (n_params > (size_t)INT_MAX) return ATTN_ERR_SIZE;
    const int n = (int)n_params;
    if (g_rank != 0) {
        for (int k = first; k < first + count && k < n_used; k++)
            if (MPI_Send(&losses[k], 1, MPI_FLOAT, 0, TAG_SHARD, MPI_COMM_WORLD) != MPI_SUCCESS ||
                MPI_Send(shard_grads[k], n, MPI_FLOAT, 0, TAG_SHARD, MPI_COMM_WORLD) != MPI_SUCCESS)
                return ATTN_ERR_IO;
        MPI_Status status;
        if (probe_sleeping(0, TAG_SHARD, &status) ||
            MPI_Recv(loss, 1, MPI_FLOAT, 0, TAG_SHARD, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS ||
            MPI_Recv(grads, n, MPI_FLOAT, 0, TAG_SHARD, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return ATTN_ERR_IO;
        return ATTN_OK;
    }
    memset(grads, 0, sizeof(float) * n_params);
    double sum = 0.0;
    for (int k = 0; k < n_used; k++) {
        float lk = losses[k];
        if (k >= first + count) {        /* another rank's shard: into this model's idle buffer for it */
            int owner = k / count;
            MPI_Status status;
            if (probe_sleeping(owner, TAG_SHARD, &status) ||
                MPI_Recv(&lk, 1, MPI_FLOAT, owner, TAG_SHARD, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS ||
                MPI_Recv(shard_grads[k], n, MPI_FLOAT, owner, TAG_SHARD, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                return ATTN_ERR_IO;
        }
        const float *g = shard_grads[k];
        for (size_t i = 0; i < n_params; i++) grads[i] += g[i];
        sum += lk;
    }
    *loss = (float)sum;
    for (int r = 1; r < g_size; r++)
        if (MPI_Send(loss, 1, MPI_FLOAT, r, TAG_SHARD, MPI_COMM_WORLD) != MPI_SUCCESS ||
            MPI_Send(grads, n, MPI_FLOAT, r, TAG_SHARD, MPI_COMM_WORLD) != MPI_SUCCESS)
            return ATTN_ERR_IO;
    return ATTN_OK;
}

/* The detector's gather: every rank's rows to every rank with one all-gather (a copy, no arithmetic: its
 * order does not touch the bits). */
attn_status dist_gather_shards(void *user, float *x, size_t row_floats, int B, int per, int first, int count) {
    (void)user;
    (void)first;
    if (g_size > 64 || B < 1 || per < 1 || count < 1 || row_floats > (size_t)INT_MAX / (size_t)B) return ATTN_ERR_SIZE;
    int counts[64], displs[64];
    for (int r = 0; r < g_size; r++) {
        int64_t lo = (int64_t)r * count * per, hi = lo + (int64_t)count * per;
        lo = lo < B ? lo : B;
        hi = hi < B ? hi : B;
        displs[r] = (int)(lo * (int64_t)row_floats);
        counts[r] = (int)((hi - lo) * (int64_t)row_floats);
    }
    if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts, displs, MPI_FLOAT, MPI_COMM_WORLD) != MPI_SUCCESS)
        return ATTN_ERR_IO;
    return ATTN_OK;
}

#else

int dist_start(void) {
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK"))
        fprintf(stderr, "attn: note: started by an MPI launcher, but this attn was built without MPI: every rank "
                "runs alone\n");
    return 0;
}
void dist_stop(void) {}
int dist_on(void) { return 0; }
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
int dist_sum_ordered(float *x, int64_t n, float *scratch) { (void)x; (void)n; (void)scratch; return 0; }
int dist_sum_doubles(double *x, int n) { (void)x; (void)n; return 0; }
int dist_rowsum_ordered(struct rowsum *x, struct rowsum *spare, void *wire, size_t wire_bytes, uint64_t *bytes_sent,
                        void (*idle)(void *), void *user) {
    (void)x; (void)spare; (void)wire; (void)wire_bytes; (void)bytes_sent;
    if (idle) idle(user);
    return 0;
}
int dist_barrier(void) { return 0; }
int dist_swap_rows(float *table, int width, int32_t *const *send_ids, const int *n_send, int32_t *const *recv_ids,
                   const int *n_recv, float *buf, uint64_t *bytes_sent) {
    (void)table; (void)width; (void)send_ids; (void)n_send; (void)recv_ids; (void)n_recv; (void)buf; (void)bytes_sent;
    return 0;
}
int dist_gather_owned(float *x, int width, int64_t rows, int all, uint64_t *bytes_sent) {
    (void)x; (void)width; (void)rows; (void)all; (void)bytes_sent;
    return 0;
}
void dist_abort(int code) { (void)code; }
attn_status dist_combine_shards(void *user, float *grads, size_t n_params, float *const *shard_grads,
                                const float *losses, int first, int count, int n_used, float *loss) {
    (void)user; (void)grads; (void)n_params; (void)shard_grads; (void)losses; (void)first; (void)count;
    (void)n_used; (void)loss;
    return ATTN_ERR_UNSUPPORTED;
}
attn_status dist_gather_shards(void *user, float *x, size_t row_floats, int B, int per, int first, int count) {
    (void)user; (void)x; (void)row_floats; (void)B; (void)per; (void)first; (void)count;
    return ATTN_ERR_UNSUPPORTED;
}

#endif

/* The frame of every data-parallel training (MPI or not: the calls above do nothing without it). */
int dist_quiet_followers(void) {
    if (dist_on() && dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) return 1;   /* rank 0 logs */
    return 0;
}

int dist_finish(const char *who, int rc) {
    if (rc && rc != 2 && dist_on()) {
        fprintf(stderr, "attn: %s: rank %d of %d failed: stopping every rank (the last checkpoint is intact: it "
                "is replaced atomically)\n", who, dist_rank(), dist_size());
        fflush(stderr);
        dist_abort(rc);
    }
    dist_stop();
    return rc;
}

int dist_shards(const char *who, const char *ckpt, int resume, int *shards, int dflt, int *first, int *count) {
    int g = *shards ? *shards : dflt;
    if (resume) {
        static const char *const key[1] = {"shards"};
        double v = dflt;                 /* checkpoints before --shards were cut in the default */
        if (cli_has_meta(ckpt, key[0]) && cli_run_meta(who, ckpt, key, 1, &v)) return 1;
        if (*shards && *shards != (int)v) {
            if (dist_rank() == 0)
                fprintf(stderr, "attn: %s: --resume --shards %d: %s was trained with --shards %d (its bits depend on "
                        "it); leave the flag out to go on with it\n", who, *shards, ckpt, (int)v);
            return 2;
        }
        g = (int)v;
    }
    if (g < 1 || g > ATTN_MAX_SHARDS) {
        if (dist_rank() == 0) fprintf(stderr, "attn: %s: --shards %d: must be 1 .. %d\n", who, g, ATTN_MAX_SHARDS);
        return 2;
    }
    const int n = dist_size();
    if (g % n) {                         /* every rank finds it: rank 0 says it */
        if (dist_rank() == 0)
            fprintf(stderr, "attn: %s: %d ranks do not divide the %d shards of a batch (--shards %d%s): start a number "
                    "of ranks that divides %d%s\n", who, n, g, g, resume ? ", from the checkpoint" : "", g,
                    resume ? "" : ", or give a --shards that is a multiple of the ranks");
        return 2;
    }
    *shards = g;
    *count = dist_on() ? g / n : 0;
    *first = dist_rank() * *count;
    return 0;
}

void dist_test_die(int64_t step) {
    static int64_t at = -1;
    if (at < 0) {
        const char *v = getenv("ATTN_TEST_DIE_AT_STEP");
        at = dist_on() && v ? atoll(v) : 0;
    }
    if (at > 0 && step == at && dist_rank() == 1) raise(SIGKILL);
}
