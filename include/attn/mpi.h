/*
 * attn/mpi.h — attention beyond one machine, over MPI: ring attention (sequence parallelism) and the
 * fixed-order gradient sum of data-parallel training. Built only when CMake finds MPI, as its own library
 * (libattn_mpi, linked with libattn); the core library never depends on MPI.
 *
 * Ring attention: a (B,H,T,S) scaled dot-product attention whose queries, keys and values are cut along
 * the sequence over the N ranks of a communicator. Each rank holds T/N query rows and S/N key/value rows;
 * the key/value blocks travel round the ring (rank r sends to r + 1) with non-blocking messages while the
 * fused kernel works on the block in hand, and the partial results are merged exactly by their row
 * statistics (m, log l). The backward sends the blocks round again with their dK, dV accumulators.
 *
 *   attn_sdpa_desc d;
 *   attn_ring_desc_init(&d, comm, B, H, T, S, D, Dv);   // global sizes, layouts of the local shards
 *   d.mask.causal = 1;                                   // zig-zag shards (below)
 *   size_t fw, bw;
 *   attn_ring_workspace_size(&ctx, &d, comm, ATTN_PASS_FORWARD, &fw);
 *   attn_ring_workspace_size(&ctx, &d, comm, ATTN_PASS_BACKWARD, &bw);   // one buffer of the larger serves both
 *   attn_ring_sdpa_forward(&ctx, &d, comm, out, stats, q, k, v, work, fw, NULL);
 *   attn_ring_sdpa_backward(&ctx, &d, comm, dq, dk, dv, dout, q, k, v, out, stats, work, bw, NULL);
 *
 * Which rows a rank holds: without a causal mask rank r holds the contiguous rows [r·T/N, (r+1)·T/N) of
 * the queries and [r·S/N, (r+1)·S/N) of the keys and values. With a causal mask (T == S), the sequence is
 * cut into 2N chunks of T/(2N) rows and rank r holds chunks r and 2N−1−r, in that order (the zig-zag:
 * every rank then does the same work). attn_ring_global_row maps a local row to its global index.
 * The calls allocate nothing: the workspace holds the received blocks and the kernel's own workspace.
 */
#ifndef ATTN_MPI_H
#define ATTN_MPI_H

#include "../attn.h"

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fills d like attn_sdpa_desc_init for the global sizes B, H, T, S, D, Dv, with contiguous layouts of the
 * local shards: q (B,H,T/N,D), k (B,H,S/N,D), v (B,H,S/N,Dv), out (B,H,T/N,Dv). N = the size of comm. */
attn_status attn_ring_desc_init(attn_sdpa_desc *d, MPI_Comm comm, int B, int H, int T, int S, int D, int Dv);

/* The global index of local row `local` (0 <= local < len/N) of rank `rank` of n, for a sequence of len
 * rows (T for queries, S for keys), sharded as above (causal nonzero: the zig-zag). -1 when out of range. */
int64_t attn_ring_global_row(int len, int causal, int n, int rank, int64_t local);

/* Bytes of workspace a pass needs on each rank (the same on every rank). */
attn_status attn_ring_workspace_size(const attn_ctx *ctx, const attn_sdpa_desc *d, MPI_Comm comm,
                                     attn_pass pass, size_t *bytes);

/* What the calls accept in d (the global problem; layouts are those of the local tensors):
 *   - fp32 tensors (dtype and compute F32), no dropout, no allow or bias mask (they are ATTN_ERR_UNSUPPORTED);
 *   - T and S multiples of N (of 2N with a causal mask, which also needs T == S);
 *   - valid lengths: per batch (B), the global lengths; per query (B, T/N), the rank's own rows in local
 *     order, each a global key length;
 *   - grouped-query heads (Hkv) as in the single-process call.
 * Every rank must call with the same d (its own tensors) and ctx isa. The ranks agree on the arguments
 * first (one small all-reduce), so a bad argument on any rank returns an error on all of them instead of a
 * hang. The ring uses message tags 0x6174, 0x6175 and 0x6177 on comm: no other message with those tags
 * may be in flight on it during a call. An MPI failure returns ATTN_ERR_IO (set comm's error handler to
 * MPI_ERRORS_RETURN to see it; MPI's default aborts the job).
 * bytes_sent, when not NULL, has the bytes this rank sent added to it: per pass, N−1 key/value blocks
 * (B·Hkv·(S/N)·(D + Dv) floats each) forward; in the backward also N hops of the dK, dV block of the
 * same size. */

/* Forward. out (B,H,T/N,Dv) layout d->out, written; stats (B,H,T/N,2) contiguous, written (the merged
 * row statistics of the whole row, as the single-process forward gives them). */
attn_status attn_ring_sdpa_forward(const attn_ctx *ctx, const attn_sdpa_desc *d, MPI_Comm comm,
                                   float *out, float *stats,
                                   const float *q, const float *k, const float *v,
                                   void *work, size_t work_bytes, uint64_t *bytes_sent);

/* Backward: accumulates (+=) into the local dq, dk, dv; out and stats are the ring forward's. */
attn_status attn_ring_sdpa_backward(const attn_ctx *ctx, const attn_sdpa_desc *d, MPI_Comm comm,
                                    float *dq, float *dk, float *dv,
                                    const float *dout,
                                    const float *q, const float *k, const float *v,
                                    const float *out, const float *stats,
                                    void *work, size_t work_bytes, uint64_t *bytes_sent);

/* Data parallelism: x[0..n) on every rank becomes the sum over the ranks of x, the same bits on every
 * rank, added in a fixed order: a binary tree over the ranks by point-to-point messages (rank r + s into
 * rank r for s = 1, 2, 4, ...), then sent back down the tree from rank 0. For N a power of two this is the
 * balanced tree, so work cut into G = 2^k groups, summed by the same tree within each rank first, gives
 * the same bits for every N dividing G. (MPI_Allreduce does not promise an order.) scratch holds
 * scratch_n floats (n for one message per tree edge; fewer: more, smaller messages). Message tag 0x6176.
 * ATTN_ERR_IO on an MPI failure. */
attn_status attn_mpi_sum_ordered(float *x, int64_t n, float *scratch, int64_t scratch_n, MPI_Comm comm);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_MPI_H */
