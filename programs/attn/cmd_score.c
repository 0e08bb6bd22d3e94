/*
 * cmd_score.c — `attn score`, the scoring walk-through: one decoder state (the query) scored against
 * encoder states (the keys, also called annotations) by dot products, the naive softmax that overflows,
 * the stable one that does not, the weights and the context vector — by hand, step by step, then once
 * more through the library's dot-product attention to show it gives the same numbers. The query, keys
 * and values may be one's own (--query, --keys, --values). The weights are drawn in the terminal, and
 * with --png the walk-through's pictures go to one image.
 *
 * `attn score --masked-softmax` instead shows valid lengths at work on d2l's example: random (2, 2, 4)
 * scores, softmaxed with valid lengths [2, 3] per batch, then [[1, 3], [2, 4]] per query.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_S = 64, MAX_D = 64 };

/* The walk-through's own numbers, used when --query/--keys are not given. */
static const char *const default_query = "5,1,20";
static const char *const default_keys = "3,12,45;59,2,5;1,43,5;4,3,45.3";

static void print_vec(const char *name, const float *x, int n, const char *fmt) {
    printf("  %-22s [", name);
    for (int i = 0; i < n; i++) {
        printf(fmt, x[i]);
        printf(i + 1 < n ? ", " : "]\n");
    }
}

/* Parses "a,b,c" into x (at most max numbers); returns the count, or -1 after a message. */
static int parse_vector(const char *flag, const char *s, float *x, int max) {
    int n = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || fabs(v) > 3.4e38) {
            fprintf(stderr, "attn: score: %s \"%s\": expected finite numbers separated by commas\n", flag, s);
            return -1;
        }
        if (n == max) {
            fprintf(stderr, "attn: score: %s: more than %d numbers in a vector\n", flag, max);
            return -1;
        }
        x[n++] = (float)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == '\0') return n;
        if (*p != ',') {
            fprintf(stderr, "attn: score: %s \"%s\": unexpected '%c' (numbers are separated by commas)\n",
                    flag, s, *p);
            return -1;
        }
        p++;
    }
}

/* Parses "a,b;c,d;..." into rows of equal length (at most MAX_S rows of MAX_D): x is (rows, *cols).
 * Returns the number of rows, or -1 after a message. */
static int parse_matrix(const char *flag, const char *s, float *x, int *cols) {
    int rows = 0;
    *cols = 0;
    const char *p = s;
    char buf[4096];
    for (;;) {
        const char *semi = strchr(p, ';');
        size_t len = semi ? (size_t)(semi - p) : strlen(p);
        if (len >= sizeof buf) {
            fprintf(stderr, "attn: score: %s: a vector longer than %zu characters\n", flag, sizeof buf - 1);
            return -1;
        }
        if (rows == MAX_S) {
            fprintf(stderr, "attn: score: %s: more than %d vectors\n", flag, MAX_S);
            return -1;
        }
        memcpy(buf, p, len);
        buf[len] = '\0';
        int n = parse_vector(flag, buf, x + (size_t)rows * MAX_D, MAX_D);
        if (n < 0) return -1;
        if (rows > 0 && n != *cols) {
            fprintf(stderr, "attn: score: %s: vector %d has %d numbers, the first has %d\n", flag, rows + 1, n,
                    *cols);
            return -1;
        }
        *cols = n;
        rows++;
        if (!semi) break;
        p = semi + 1;
    }
    /* pack the rows (they were written MAX_D apart) */
    for (int r = 1; r < rows; r++) memmove(x + (size_t)r * *cols, x + (size_t)r * MAX_D, sizeof(float) * *cols);
    return rows;
}

/* The library's answer: dot-product attention (scale 1) with T = 1 query and S keys. */
static attn_status library_context(float *context, float *weights, const float *q, const float *k,
                                   const float *v, int S, int D, int Dv) {
    attn_sdpa_desc d;
    attn_status st = attn_sdpa_desc_init(&d, 1, 1, 1, S, D, Dv);
    if (st) return st;
    d.scale = 1.0f;
    size_t wb = 0;
    if ((st = attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &wb))) return st;
    void *work = malloc(wb ? wb : 1);
    if (!work) return ATTN_ERR_NOMEM;
    st = attn_sdpa_forward(NULL, &d, context, NULL, weights, q, k, v, work, wb);
    free(work);
    return st;
}

static int write_png_grid(const attn_heatmap *maps, int n, int grid_cols, const char *png) {
    char err[512] = "";
    attn_status st = attn_heatmap_png_grid(maps, n, grid_cols, png, err, sizeof err);
    if (st) {
        fprintf(stderr, "attn: %s\n", err[0] ? err : attn_status_string(st));
        return 1;
    }
    printf("wrote %s\n", png);
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * d2l's masked_softmax: the weights of random scores under valid lengths, through the library (the
 * scores go in as the bias of a dot-product attention whose Q Kᵀ is zero, so the weights are exactly
 * masked_softmax(scores)).
 */
enum { MB = 2, MT = 2, MS = 4 };

static attn_status masked_weights(float *weights, const float *scores, attn_valid_lens_kind kind,
                                  const int32_t *lens) {
    attn_sdpa_desc d;
    attn_status st = attn_sdpa_desc_init(&d, MB, 1, MT, MS, 1, 1);
    if (st) return st;
    static const float zeros[MB * MS] = {0};
    float out[MB * MT];
    d.mask.valid_lens_kind = kind;
    d.mask.valid_lens = lens;
    d.mask.bias = scores;
    d.mask.bias_stride[0] = MT * MS;
    d.mask.bias_stride[1] = MT * MS;
    d.mask.bias_stride[2] = MS;
    size_t wb = 0;
    if ((st = attn_sdpa_workspace_size(NULL, &d, ATTN_PASS_FORWARD, &wb))) return st;
    void *work = malloc(wb ? wb : 1);
    if (!work) return ATTN_ERR_NOMEM;
    st = attn_sdpa_forward(NULL, &d, out, NULL, weights, zeros, zeros, zeros, work, wb);
    free(work);
    return st;
}

static void print_tensor(const float *x) {
    printf("  [");
    for (int b = 0; b < MB; b++) {
        printf(b ? "   [" : "[");
        for (int t = 0; t < MT; t++) {
            printf(t ? "    [" : "[");
            for (int s = 0; s < MS; s++) printf("%.4f%s", x[(b * MT + t) * MS + s], s + 1 < MS ? ", " : "]");
            printf(t + 1 < MT ? ",\n" : "]");
        }
        printf(b + 1 < MB ? ",\n" : "]\n");
    }
}

static int masked_softmax_demo(uint64_t seed, const char *png, int color, int annotate, attn_palette palette) {
    float scores[MB * MT * MS];        /* (B,T,S) */
    attn_rng rng;
    attn_rng_seed(&rng, seed);
    attn_rng_fill_uniform(&rng, scores, MB * MT * MS, 0.0f, 1.0f);
    printf("masked_softmax: a softmax over the last axis that gives zero weight to the keys past each\n"
           "valid length (d2l, 10.3). Random scores of shape (2, 2, 4), uniform in [0, 1), seed %llu:\n",
           (unsigned long long)seed);
    print_tensor(scores);

    static const int32_t per_batch[MB] = {2, 3};
    static const int32_t per_query[MB * MT] = {1, 3, 2, 4};
    float w1[MB * MT * MS], w2[MB * MT * MS];
    attn_status st = masked_weights(w1, scores, ATTN_VALID_LENS_PER_BATCH, per_batch);
    if (st) return cli_fail(st, "masked softmax");
    if ((st = masked_weights(w2, scores, ATTN_VALID_LENS_PER_QUERY, per_query)))
        return cli_fail(st, "masked softmax");
    printf("\nmasked_softmax(scores, valid_lens = [2, 3]): batch 0 sees 2 keys, batch 1 sees 3:\n");
    print_tensor(w1);
    printf("\nmasked_softmax(scores, valid_lens = [[1, 3], [2, 4]]): one length per query:\n");
    print_tensor(w2);

    static const char *const rows[MT] = {"q1", "q2"};
    static const char *const cols[MS] = {"k1", "k2", "k3", "k4"};
    static const char *const titles[4] = {"batch 0, valid_lens 2", "batch 1, valid_lens 3",
                                          "batch 0, valid_lens [1, 3]", "batch 1, valid_lens [2, 4]"};
    attn_heatmap maps[4];
    for (int i = 0; i < 4; i++) {
        const float *w = (i < 2 ? w1 : w2) + (i % 2) * MT * MS;
        maps[i] = (attn_heatmap){w, MT, MS, 0, rows, cols, titles[i], "queries", "keys", 0.0f, 1.0f, annotate,
                                 palette};
    }
    for (int i = 0; i < 4; i++) {
        printf("\n%s:\n", titles[i]);
        if ((st = attn_heatmap_term(&maps[i], stdout, color))) return cli_fail(st, "terminal heatmap");
    }
    return png ? write_png_grid(maps, 4, 2, png) : 0;
}

int cmd_score(int argc, char **argv) {
    const char *png = NULL, *query = default_query, *keys = default_keys, *values = NULL, *palette_name = NULL;
    attn_palette palette;
    int no_color = 0, annotate = 1, masked = 0;
    uint64_t seed = 0;
    const cli_opt opts[] = {
        {"query", CLI_STR, &query, "\"A,B,...\"", "the decoder state: numbers separated by commas"},
        {"keys", CLI_STR, &keys, "\"A,B;C,D;...\"",
         "the encoder states: vectors separated by semicolons, as long as the query"},
        {"values", CLI_STR, &values, "\"A,B;C,D;...\"",
         "the vectors averaged into the context, one per key, any length (default: the keys)"},
        {"png", CLI_STR, &png, "FILE",
         "also draw the pictures, with their values in the cells, as one PNG image"},
        {"masked-softmax", CLI_BOOL, &masked, NULL,
         "show d2l's masked_softmax of random (2,2,4) scores with valid lengths instead"},
        {"seed", CLI_U64, &seed, "N", "the random scores' seed for --masked-softmax"},
        {"no-color", CLI_BOOL, &no_color, NULL, "shaded characters instead of 24-bit colors"},
        {"annotate", CLI_BOOL, &annotate, NULL, "write each value in its cell in the PNG (always on here)"},
        {"palette", CLI_STR, &palette_name, "NAME", CLI_PALETTE_HELP},
    };
    const cli_cmd cmd = {
        "attn score [options]",
        "Walks through attention scoring: dot-product scores of a decoder state against encoder states,\n"
        "a numerically stable softmax, the weights and the context vector. Give your own with\n"
        "  attn score --query \"1,0,2\" --keys \"1,1,1;0,2,1;3,0,0\" [--values \"1,0;0,1;1,1\"]\n"
        "--png FILE draws, in one image of six panels, the walk-through's pictures: the decoder state, one\n"
        "annotation (the first key), all the annotations, the weights, the applied attention (each value\n"
        "times its weight) and the context vector (their sum).\n"
        "--masked-softmax shows valid lengths instead (d2l's example); --png then draws its four maps.",
        opts, (int)(sizeof opts / sizeof opts[0]), 0, 0};
    int rc = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (rc >= 0) return rc;
    if ((rc = cli_palette("score", &cmd, palette_name, &palette))) return rc;
    if (png && cli_check_out_file("score", "--png", png)) return 1;
    int color = cli_use_color(no_color);
    if (masked && (query != default_query || keys != default_keys || values)) {
        fprintf(stderr, "attn: score: --masked-softmax draws its own random scores: it takes no --query, --keys "
                "or --values\n\n");
        cli_usage(&cmd, stderr);
        return 2;
    }
    if (masked) return masked_softmax_demo(seed, png, color, annotate, palette);

    static float q[MAX_D], k[MAX_S * MAX_D], v[MAX_S * MAX_D];
    int D = parse_vector("--query", query, q, MAX_D);
    if (D < 0) return 2;
    int Dk = 0, Dv = 0;
    int S = parse_matrix("--keys", keys, k, &Dk);
    if (S < 0) return 2;
    if (Dk != D) {
        fprintf(stderr, "attn: score: the keys have %d numbers each, the query %d: they must match\n", Dk, D);
        return 2;
    }
    if (values) {
        int Sv = parse_matrix("--values", values, v, &Dv);
        if (Sv < 0) return 2;
        if (Sv != S) {
            fprintf(stderr, "attn: score: %d values for %d keys: give one value per key\n", Sv, S);
            return 2;
        }
    } else {
        memcpy(v, k, sizeof(float) * S * D);
        Dv = D;
    }
    char key_names[MAX_S][16], dim_names[MAX_D][16];
    const char *key_labels[MAX_S], *dim_labels[MAX_D];
    for (int i = 0; i < S; i++) {
        snprintf(key_names[i], sizeof key_names[i], "h%d", i + 1);
        key_labels[i] = key_names[i];
    }
    for (int j = 0; j < MAX_D; j++) {
        snprintf(dim_names[j], sizeof dim_names[j], "c%d", j + 1);
        dim_labels[j] = dim_names[j];
    }

    printf("Step 1. The decoder state (the query) and the encoder states (keys%s):\n", values ? "" : " and values");
    print_vec("decoder state s", q, D, "%g");
    for (int i = 0; i < S; i++) {
        char name[32];
        snprintf(name, sizeof name, "encoder state %s", key_labels[i]);
        print_vec(name, k + (size_t)i * D, D, "%g");
    }
    if (values)
        for (int i = 0; i < S; i++) {
            char name[32];
            snprintf(name, sizeof name, "value %s", key_labels[i]);
            print_vec(name, v + (size_t)i * Dv, Dv, "%g");
        }

    printf("\nStep 2. Score each encoder state by its dot product with the decoder state:\n");
    float scores[MAX_S] = {0};
    int imax = 0;
    for (int i = 0; i < S; i++) {
        double sc = 0;
        printf("  score(s, %s) = ", key_labels[i]);
        for (int j = 0; j < D; j++) {
            sc += (double)q[j] * k[(size_t)i * D + j];
            if (D <= 8) printf("%g·%g%s", q[j], k[(size_t)i * D + j], j + 1 < D ? " + " : "");
        }
        scores[i] = (float)sc;
        printf("%s%g\n", D <= 8 ? " = " : "", scores[i]);
        if (scores[i] > scores[imax]) imax = i;
    }

    printf("\nStep 3. The naive softmax exp(x_i) / Σ exp(x_j) ");
    volatile double big = scores[imax];   /* volatile: computed at run time, as a user's code would */
    double e = exp(big), sum = 0;
    for (int i = 0; i < S; i++) sum += exp((double)scores[i]);
    double naive = e / sum;
    if (isnan(naive))
        printf("overflows:\n  exp(%g) = %g in double precision, so the weights would be inf/inf = NaN\n",
               (double)big, e);
    else
        printf("does not overflow on these scores (exp(%g) = %g),\n  but would past 709: the stable form is "
               "safe for every score.\n", (double)big, e);

    printf("\nStep 4. The stable softmax subtracts the largest score (%g) first: exp(x_i - max) <= 1.\n",
           scores[imax]);
    float weights[MAX_S];
    memcpy(weights, scores, sizeof(float) * S);
    attn_status st = attn_softmax(weights, S);
    if (st) return cli_fail(st, "softmax");
    for (int i = 0; i < S; i++)
        printf("  weight(%s) = exp(%g - %g) / Σ = %.4f\n", key_labels[i], scores[i], scores[imax], weights[i]);

    printf("\nStep 5. The context vector is the weighted sum of the %s:\n", values ? "values" : "encoder states");
    float context[MAX_D], applied[MAX_S * MAX_D];
    for (int i = 0; i < S; i++)
        for (int j = 0; j < Dv; j++) applied[(size_t)i * Dv + j] = weights[i] * v[(size_t)i * Dv + j];
    for (int j = 0; j < Dv; j++) {
        double c = 0;
        for (int i = 0; i < S; i++) c += (double)weights[i] * v[(size_t)i * Dv + j];
        context[j] = (float)c;
    }
    print_vec("context", context, Dv, "%.4f");

    printf("\nStep 6. The library's dot-product attention on the same inputs gives:\n");
    float lib_context[MAX_D], lib_weights[MAX_S];
    if ((st = library_context(lib_context, lib_weights, q, k, v, S, D, Dv)))
        return cli_fail(st, "dot-product attention");
    print_vec("weights", lib_weights, S, "%.4f");
    print_vec("context", lib_context, Dv, "%.4f");
    double diff = 0;
    for (int j = 0; j < Dv; j++) diff = fmax(diff, fabs((double)lib_context[j] - context[j]));
    printf("  largest difference from step 5: %.2g\n", diff);

    printf("\nThe weights (rows: the decoder state; columns: the encoder states):\n");
    static const char *const row_label[1] = {"s"};
    const char *const *value_rows = key_labels;
    attn_heatmap w_map = {weights, 1, S, 0, row_label, key_labels, "attention weights", "query", "keys",
                          0.0f, 1.0f, annotate, palette};
    if ((st = attn_heatmap_term(&w_map, stdout, color))) return cli_fail(st, "terminal heatmap");
    if (!png) return 0;
    /* the walk-through's pictures: each in its own colour range, as the tutorial's seaborn heatmaps */
    attn_heatmap maps[6] = {
        {q, 1, D, 0, row_label, dim_labels, "1. decoder state", "query", "dimensions", 0, 0, annotate, palette},
        {k, 1, D, 0, key_labels, dim_labels, "2. one annotation", "key", "dimensions", 0, 0, annotate, palette},
        {k, S, D, 0, key_labels, dim_labels, "3. all annotations", "keys", "dimensions", 0, 0, annotate, palette},
        w_map,
        {applied, S, Dv, 0, value_rows, dim_labels, "5. applied attention (weight x value)", "keys",
         "dimensions", 0, 0, annotate, palette},
        {context, 1, Dv, 0, row_label, dim_labels, "6. context vector (their sum)", "query", "dimensions", 0, 0,
         annotate, palette},
    };
    maps[3].title = "4. attention weights";
    return write_png_grid(maps, 6, 2, png);
}
