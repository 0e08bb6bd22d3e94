/* A program built against an installed attn: softmax of the walk-through's scores. */
#include <attn.h>
#include <stdio.h>

int main(void) {
    float x[4] = {927, 397, 148, 929};
    if (attn_softmax(x, 4) != ATTN_OK) return 1;
    printf("attn %s: %.4f %.4f %.4f %.4f\n", attn_version(), x[0], x[1], x[2], x[3]);
    return (x[3] > 0.88f && x[3] < 0.881f) ? 0 : 1;
}
