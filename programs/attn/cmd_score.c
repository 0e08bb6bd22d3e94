/*
 * cmd_score.c — `attn score`, the scoring walk-through: one decoder state scored
 * against four encoder states by dot products, the naive softmax that overflows, the stable one that does
 * not, the weights and the context vector — by hand, step by step, then once more through the library's
 * dot-product attention to show it gives the same numbers. The weights are drawn in the terminal, and
 * with --png as an image.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { S = 4, D = 3 };

static const float decoder_state[D] = {5, 1, 20};
static const float encoder_states[S][D] = {{3, 12, 45}, {59, 2, 5}, {1, 43, 5}, {4, 3, 45.3f}};
static const char *const key_labels[S] = {"h1", "h2", "h3", "h4"};
static const char *const dim_labels[D] = {"c1", "c2", "c3"};

static void print_vec(const char *name, const float *x, int n, const char *fmt) {
    printf("  %-22s [", name);
    for (int i = 0; i < n; i++) {
        printf(fmt, x[i]);
        printf(i + 1 < n ? ", " : "]\n");
    }
}

/* The library's answer: dot-product attention (scale 1) with T = 1 query and S = 4 keys. */
static attn_status library_context(float *context, float *weights) {
    attn_sdpa_desc d;
    attn_status st = attn_sdpa_desc_init(&d, 1, 1, 1, S, D, D);
    if (st) return st;
    d.scale = 1.0f;
    size_t wb = 0;
    if ((st = attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &wb))) return st;
    void *work = malloc(wb ? wb : 1);
    if (!work) return ATTN_ERR_NOMEM;
    st = attn_sdpa_forward(NULL, &d, context, NULL, weights, decoder_state, &encoder_states[0][0],
                           &encoder_states[0][0], work, wb);
    free(work);
    return st;
}

int cmd_score(int argc, char **argv) {
    const char *png = NULL;
    int no_color = 0, annotate = 0;
    const cli_opt opts[] = {
        {"png", CLI_STR, &png, "FILE", "also draw the weights and the context vector as a PNG image"},
        {"no-color", CLI_BOOL, &no_color, NULL, "shaded characters instead of 24-bit colors"},
        {"annotate", CLI_BOOL, &annotate, NULL, "write each value in its cell in the PNG"},
    };
    const cli_cmd cmd = {"attn score [options]",
                         "Walks through attention scoring: dot-product scores of a decoder state against four\n"
                         "encoder states, a numerically stable softmax, the weights and the context vector.",
                         opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if (png && cli_check_out_file("score", "--png", png)) return 1;

    printf("Step 1. The decoder state (the query) and the encoder states (keys and values):\n");
    print_vec("decoder state s", decoder_state, D, "%g");
    for (int i = 0; i < S; i++) {
        char name[32];
        snprintf(name, sizeof name, "encoder state %s", key_labels[i]);
        print_vec(name, encoder_states[i], D, "%g");
    }

    printf("\nStep 2. Score each encoder state by its dot product with the decoder state:\n");
    float scores[S];
    for (int i = 0; i < S; i++) {
        double sc = 0;
        for (int j = 0; j < D; j++) sc += (double)decoder_state[j] * encoder_states[i][j];
        scores[i] = (float)sc;
        printf("  score(s, %s) = %g·%g + %g·%g + %g·%g = %g\n", key_labels[i], decoder_state[0],
               encoder_states[i][0], decoder_state[1], encoder_states[i][1], decoder_state[2],
               encoder_states[i][2], scores[i]);
    }

    printf("\nStep 3. The naive softmax exp(x_i) / Σ exp(x_j) overflows:\n");
    volatile double big = scores[0];   /* volatile: computed at run time, as a user's code would */
    double e = exp(big);
    double naive = e / (e + exp((double)scores[3]));
    printf("  exp(%g) = %g in double precision, so the weights would be inf/inf = %s\n", (double)big, e,
           isnan(naive) ? "NaN" : "a number (this machine did not overflow?)");

    printf("\nStep 4. The stable softmax subtracts the largest score (%g) first: exp(x_i - max) <= 1.\n",
           scores[3]);
    float weights[S];
    memcpy(weights, scores, sizeof weights);
    attn_status st = attn_softmax(weights, S);
    if (st) return cli_fail(st, "softmax");
    for (int i = 0; i < S; i++)
        printf("  weight(%s) = exp(%g - %g) / Σ = %.4f\n", key_labels[i], scores[i], scores[3], weights[i]);

    printf("\nStep 5. The context vector is the weighted sum of the encoder states:\n");
    float context[D];
    for (int j = 0; j < D; j++) {
        double c = 0;
        for (int i = 0; i < S; i++) c += (double)weights[i] * encoder_states[i][j];
        context[j] = (float)c;
    }
    print_vec("context", context, D, "%.4f");

    printf("\nStep 6. The library's dot-product attention on the same inputs gives:\n");
    float lib_context[D], lib_weights[S];
    if ((st = library_context(lib_context, lib_weights))) return cli_fail(st, "dot-product attention");
    print_vec("weights", lib_weights, S, "%.4f");
    print_vec("context", lib_context, D, "%.4f");
    double diff = 0;
    for (int j = 0; j < D; j++) diff = fmax(diff, fabs((double)lib_context[j] - context[j]));
    printf("  largest difference from step 5: %.2g\n", diff);

    printf("\nThe weights (rows: the decoder state; columns: the encoder states):\n");
    static const char *const row_label[1] = {"s"};
    attn_heatmap maps[2] = {
        {weights, 1, S, 0, row_label, key_labels, "attention weights", "query", "keys", 0.0f, 1.0f, 0},
        {context, 1, D, 0, row_label, dim_labels, "context vector", "query", "dimensions", 0.0f, 0.0f, 0},
    };
    maps[0].annotate = maps[1].annotate = annotate;
    int color = cli_use_color(no_color);
    if ((st = attn_heatmap_term(&maps[0], stdout, color))) return cli_fail(st, "terminal heatmap");
    if (png) {
        char err[512] = "";
        if ((st = attn_heatmap_png_grid(maps, 2, 1, png, err, sizeof err))) {
            fprintf(stderr, "attn: %s\n", err[0] ? err : attn_status_string(st));
            return 1;
        }
        printf("wrote %s\n", png);
    }
    return 0;
}
