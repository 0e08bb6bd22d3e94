/*
 * dist.c — the program's side of data-parallel training: whether it was started by mpirun (then MPI is
 * initialized, with every rank a shard of each batch), the rank and the number of ranks, the fixed-order
 * gradient sum of attn/mpi.h, and sums of a training's counters. Built without MPI, or started without
 * mpirun, the program is one rank and these calls do nothing; MPI_Init is never called for a command
 * that does not train.
 */
#include "cli.h"

#include <stdlib.h>

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

#endif
