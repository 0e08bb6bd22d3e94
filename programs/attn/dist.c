/*
 * dist.c — the program's side of data-parallel training: whether it was started by mpirun (then MPI is
 * initialized, with every rank a shard of each batch), the rank and the number of ranks, the fixed-order
 * gradient sum of attn/mpi.h, and sums of a training's counters. Built without MPI, or started without
 * mpirun, the program is one rank and these calls do nothing; MPI_Init is never called for a command
 * that does not train.
 */
#include "cli.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

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

void dist_stop(void) {
    if (g_on) MPI_Finalize();
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
        if (MPI_Recv(loss, 1, MPI_FLOAT, 0, TAG_SHARD, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS ||
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
            if (MPI_Recv(&lk, 1, MPI_FLOAT, owner, TAG_SHARD, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS ||
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
int dist_barrier(void) { return 0; }
void dist_abort(int code) { (void)code; }
attn_status dist_combine_shards(void *user, float *grads, size_t n_params, float *const *shard_grads,
                                const float *losses, int first, int count, int n_used, float *loss) {
    (void)user; (void)grads; (void)n_params; (void)shard_grads; (void)losses; (void)first; (void)count;
    (void)n_used; (void)loss;
    return ATTN_ERR_UNSUPPORTED;
}

#endif
