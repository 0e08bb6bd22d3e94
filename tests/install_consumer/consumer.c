/* A program built against an installed attn: softmax of the walk-through's scores, and a layer bound to
 * a slab of the program's own (attn/layers.h, which includes attn.h). */
#include <attn.h>
#include <attn/layers.h>
#include <stdio.h>

int main(void) {
    float x[4] = {927, 397, 148, 929};
    if (attn_softmax(x, 4) != ATTN_OK) return 1;
    printf("attn %s: %.4f %.4f %.4f %.4f\n", attn_version(), x[0], x[1], x[2], x[3]);
    float params[2 * 4];
    attn_layernorm ln;
    if (attn_layernorm_n_params(4) != 8 || attn_layernorm_bind(&ln, 4, params, NULL) != ATTN_OK ||
        attn_layernorm_init_weights(&ln, NULL) != ATTN_OK || params[0] != 1.0f || params[4] != 0.0f)
        return 1;
    return (x[3] > 0.88f && x[3] < 0.881f) ? 0 : 1;
}
