/*
 * softmax.c — attn_softmax, the numerically stable softmax of one row, in place.
 *
 * exp(927) overflows even in double; softmax is unchanged by subtracting a constant from every score,
 * so subtract the max first: the largest term becomes exp(0) = 1 and nothing overflows. The sum is
 * accumulated in double.
 *
 * Special values: a row of all -inf (every entry "masked") gives all zeros, as a fully masked attention
 * row does; any NaN, or a +inf entry, gives NaN in every entry (there is no meaningful distribution).
 */
#include "internal.h"

attn_status attn_softmax(float *x, int n) {
    if (!x) return ATTN_ERR_NULL;
    if (n < 1) return ATTN_ERR_SIZE;

    /* pass 1: the max (NaN, once seen, stays) */
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > mx || isnan(x[i])) mx = x[i];
    if (mx == -INFINITY) {
        for (int i = 0; i < n; i++) x[i] = 0.0f;
        return ATTN_OK;
    }
    if (isnan(mx) || mx == INFINITY) {
        for (int i = 0; i < n; i++) x[i] = NAN;
        return ATTN_OK;
    }

    /* pass 2: exp(x - max) and the sum; pass 3: normalize */
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        double e = exp((double)x[i] - (double)mx);
        x[i] = (float)e;
        sum += e;
    }
    for (int i = 0; i < n; i++) x[i] = (float)((double)x[i] / sum);
    return ATTN_OK;
}
