/*
 * sum.c — the data-parallel gradient sum in a fixed order: a binary tree over the ranks written with
 * point-to-point messages (MPI_Allreduce promises no order, so its bits could change with N or the run).
 *
 * Round s = 1, 2, 4, ...: rank r with r mod 2s == 0 adds the vector of rank r + s (when it exists) to its
 * own; rank r with r mod 2s == s sends its vector to r − s and is done. Rank 0 ends with the sum, which is
 * then broadcast. For N a power of two this is the balanced tree ((x0 + x1) + (x2 + x3)) ..., so a caller
 * that cuts its work into G = 2^k equal groups, sums each rank's G/N groups by the same tree locally and
 * then calls this, gets the same bits for every N that divides G.
 */
#include "attn/mpi.h"

enum { TAG_SUM = 0x6176, PIECE = 16384 };

attn_status attn_mpi_sum_ordered(float *x, int64_t n, MPI_Comm comm) {
    if (n < 0) return ATTN_ERR_SIZE;
    if (n > 0 && !x) return ATTN_ERR_NULL;
    int size, rank;
    if (MPI_Comm_size(comm, &size) != MPI_SUCCESS || MPI_Comm_rank(comm, &rank) != MPI_SUCCESS) return ATTN_ERR_IO;
    float piece[PIECE];          /* received in pieces: no allocation */
    for (int s = 1; s < size; s *= 2) {
        if (rank % (2 * s) == 0) {
            if (rank + s >= size) continue;
            for (int64_t i = 0; i < n; i += PIECE) {
                int c = (int)(n - i < PIECE ? n - i : PIECE);
                if (MPI_Recv(piece, c, MPI_FLOAT, rank + s, TAG_SUM, comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                    return ATTN_ERR_IO;
                for (int j = 0; j < c; j++) x[i + j] += piece[j];
            }
        } else if (rank % (2 * s) == s) {
            for (int64_t i = 0; i < n; i += PIECE) {
                int c = (int)(n - i < PIECE ? n - i : PIECE);
                if (MPI_Send(x + i, c, MPI_FLOAT, rank - s, TAG_SUM, comm) != MPI_SUCCESS) return ATTN_ERR_IO;
            }
            break;
        }
    }
    for (int64_t i = 0; i < n; i += (int64_t)1 << 28) {
        int c = (int)(n - i < ((int64_t)1 << 28) ? n - i : ((int64_t)1 << 28));
        if (MPI_Bcast(x + i, c, MPI_FLOAT, 0, comm) != MPI_SUCCESS) return ATTN_ERR_IO;
    }
    return ATTN_OK;
}
