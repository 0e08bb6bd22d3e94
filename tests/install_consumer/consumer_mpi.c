/* A program built against an installed libattn_mpi (attn/mpi.h, which includes attn.h and mpi.h): where
 * local row 1 of rank 0 of 2 lies in a causal (zig-zag) sequence of 8 rows. Links MPI without starting it. */
#include <attn/mpi.h>
#include <stdio.h>

int main(void) {
    /* 8 rows in 4 chunks of 2: rank 0 holds chunks 0 and 3, rows 0, 1, 6, 7 */
    const int64_t a = attn_ring_global_row(8, 1, 2, 0, 1), b = attn_ring_global_row(8, 1, 2, 0, 2);
    printf("attn %s with MPI: rank 0 of 2 holds rows %lld and %lld\n", attn_version(), (long long)a, (long long)b);
    return a == 1 && b == 6 ? 0 : 1;
}
