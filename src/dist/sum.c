/*
 * sum.c — the data-parallel gradient sum in a fixed order: a binary tree over the ranks written with
 * point-to-point messages (MPI_Allreduce promises no order, so its bits could change with N or the run).
 *
 * Round s = 1, 2, 4, ...: rank r with r mod 2s == 0 adds the vector of rank r + s (when it exists) to its
 * own; rank r with r mod 2s == s sends its vector to r − s and is done. Rank 0 ends with the sum, which
 * goes back down the same tree. For N a power of two this is the balanced tree ((x0 + x1) + (x2 + x3)) ...,
 * so a caller that cuts its work into G = 2^k equal groups, sums each rank's G/N groups by the same tree
 * locally and then calls this, gets the same bits for every N that divides G.
 *
 * Messages are as large as the caller's scratch allows (one per tree edge when it holds n floats): each
 * message costs a handshake, and on an oversubscribed machine a waiting rank yields its core for a time
 * slice, so many small pieces were measured to cost more than the arithmetic.
 */
#include "attn/mpi.h"

#include <limits.h>

enum { TAG_SUM = 0x6176 };

static int64_t piece_of(int64_t n, int64_t i, int64_t cap) { return n - i < cap ? n - i : cap; }

attn_status attn_mpi_sum_ordered(float *x, int64_t n, float *scratch, int64_t scratch_n, MPI_Comm comm) {
    if (n < 0 || scratch_n < 0) return ATTN_ERR_SIZE;
    if (n > 0 && (!x || !scratch || scratch_n == 0)) return ATTN_ERR_NULL;
    int size, rank;
    if (MPI_Comm_size(comm, &size) != MPI_SUCCESS || MPI_Comm_rank(comm, &rank) != MPI_SUCCESS) return ATTN_ERR_IO;
    const int64_t cap = scratch_n < INT_MAX ? scratch_n : INT_MAX;
    int top = 1;                         /* the highest round */
    while (top < size) top *= 2;
    /* up: sums into rank 0 */
    for (int s = 1; s < size; s *= 2) {
        if (rank % (2 * s) == 0) {
            if (rank + s >= size) continue;
            for (int64_t i = 0; i < n; i += cap) {
                int c = (int)piece_of(n, i, cap);
                if (MPI_Recv(scratch, c, MPI_FLOAT, rank + s, TAG_SUM, comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                    return ATTN_ERR_IO;
                for (int j = 0; j < c; j++) x[i + j] += scratch[j];
            }
        } else if (rank % (2 * s) == s) {
            for (int64_t i = 0; i < n; i += cap)
                if (MPI_Send(x + i, (int)piece_of(n, i, cap), MPI_FLOAT, rank - s, TAG_SUM, comm) != MPI_SUCCESS)
                    return ATTN_ERR_IO;
            break;
        }
    }
    /* down: the sum from rank 0 along the same edges (no arithmetic: every rank gets rank 0's bits) */
    for (int s = top / 2; s >= 1; s /= 2) {
        if (rank % (2 * s) == 0 && rank + s < size) {
            for (int64_t i = 0; i < n; i += INT_MAX)
                if (MPI_Send(x + i, (int)piece_of(n, i, INT_MAX), MPI_FLOAT, rank + s, TAG_SUM, comm) != MPI_SUCCESS)
                    return ATTN_ERR_IO;
        } else if (rank % (2 * s) == s) {
            for (int64_t i = 0; i < n; i += INT_MAX)
                if (MPI_Recv(x + i, (int)piece_of(n, i, INT_MAX), MPI_FLOAT, rank - s, TAG_SUM, comm,
                             MPI_STATUS_IGNORE) != MPI_SUCCESS)
                    return ATTN_ERR_IO;
        }
    }
    return ATTN_OK;
}
