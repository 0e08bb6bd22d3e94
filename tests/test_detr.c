/*
 * test_detr.c — the detection pieces of attn/detr.h: the Hungarian matcher against brute force over
 * random cost matrices of every size up to 6x6 (ties included, non-finite costs refused), and the box
 * losses (L1, generalized IoU) against PyTorch golden files (tools/golden/gen_detr.py) and finite
 * differences in double, degenerate boxes included; DETR's set criterion against PyTorch; the canvases.
 */
#include "attn.h"
#include "attn/detr.h"
#include "layers/detr_internal.h"
#include "testutil.h"

#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Hungarian matching.
 */

/* The least total over every assignment of min(n,m) pairs, by enumerating injective maps of the smaller
 * side into the larger one. */
static double brute_min(const float *cost, int n, int m) {
    const int small = n < m ? n : m, large = n < m ? m : n;
    int pick[6], used[6] = {0};
    double best = INFINITY;
    /* depth-first over pick[0..small) with an explicit stack */
    int d = 0;
    pick[0] = -1;
    while (d >= 0) {
        if (d == small) {
            double s = 0;
            for (int i = 0; i < small; i++)
                s += n <= m ? cost[i * m + pick[i]] : cost[pick[i] * m + i];
            if (s < best) best = s;
            d--;
            if (d >= 0) used[pick[d]] = 0;
            continue;
        }
        int j = pick[d] + 1;
        while (j < large && used[j]) j++;
        if (j >= large) {
            d--;
            if (d >= 0) used[pick[d]] = 0;
            continue;
        }
        pick[d] = j;
        used[j] = 1;
        d++;
        if (d < small) pick[d] = -1;
    }
    return small ? best : 0;
}

static void test_hungarian_brute(void) {
    uint64_t s = 15;
    int bad = 0, runs = 0;
    double worst = 0;
    float cost[36];
    int r2c[6], c2r[6];
    unsigned char work[4096];
    for (int rep = 0; rep < 40; rep++)
        for (int n = 1; n <= 6; n++)
            for (int m = 1; m <= 6; m++) {
                /* kinds: continuous, small integers (many ties), all equal, large magnitudes */
                const int kind = rep % 4;
                for (int k = 0; k < n * m; k++)
                    cost[k] = kind == 0 ? tu_rnd_f(&s) * 3.0f
                            : kind == 1 ? (float)tu_rnd_int(&s, 0, 2)
                            : kind == 2 ? 1.5f
                            : tu_rnd_f(&s) * 1e30f;
                size_t bytes;
                CHECK_STATUS(attn_hungarian_work_bytes(n, m, &bytes), ATTN_OK);
                CHECK(bytes <= sizeof work);
                CHECK_STATUS(attn_hungarian(r2c, c2r, cost, n, m, work, bytes), ATTN_OK);
                /* a valid assignment: min(n,m) pairs, each side used once, both maps agree */
                int pairs = 0, ok = 1;
                double total = 0;
                for (int i = 0; i < n; i++) {
                    if (r2c[i] < 0) continue;
                    if (r2c[i] >= m || c2r[r2c[i]] != i) ok = 0;
                    else { pairs++; total += cost[i * m + r2c[i]]; }
                }
                for (int j = 0; j < m; j++)
                    if (c2r[j] >= 0 && (c2r[j] >= n || r2c[c2r[j]] != j)) ok = 0;
                if (pairs != (n < m ? n : m)) ok = 0;
                const double want = brute_min(cost, n, m);
                const double err = fabs(total - want) / (fabs(want) > 1 ? fabs(want) : 1);
                if (err > worst) worst = err;
                if (!ok || err > 1e-6) {
                    if (bad++ < 5)
                        fprintf(stderr, "  hungarian %dx%d kind %d: total %.9g, brute force %.9g%s\n", n, m,
                                kind, total, want, ok ? "" : " (not an assignment)");
                }
                /* the same cost gives the same answer */
                int again[6];
                CHECK_STATUS(attn_hungarian(again, NULL, cost, n, m, work, bytes), ATTN_OK);
                CHECK(memcmp(again, r2c, sizeof(int) * (size_t)n) == 0);
                runs++;
            }
    tu_checks++;
    if (bad) tu_failures++;
    printf("  %-40s runs=%d worst_rel=%.3g %s\n", "hungarian vs brute force", runs, worst, bad ? "FAIL" : "ok");
}

static void test_hungarian_refuses(void) {
    float cost[6] = {1, 2, 3, 4, 5, 6};
    int r2c[3] = {7, 7, 7}, c2r[2];
    unsigned char work[1024];
    size_t bytes;
    CHECK_STATUS(attn_hungarian_work_bytes(3, 2, &bytes), ATTN_OK);
    cost[4] = NAN;
    CHECK_STATUS(attn_hungarian(r2c, c2r, cost, 3, 2, work, bytes), ATTN_ERR_ARG);
    CHECK(r2c[0] == 7);                                    /* nothing written */
    cost[4] = INFINITY;
    CHECK_STATUS(attn_hungarian(r2c, c2r, cost, 3, 2, work, bytes), ATTN_ERR_ARG);
    cost[4] = -INFINITY;
    CHECK_STATUS(attn_hungarian(r2c, c2r, cost, 3, 2, work, bytes), ATTN_ERR_ARG);
    cost[4] = 5;
    CHECK_STATUS(attn_hungarian(r2c, c2r, cost, 3, 2, work, bytes - 1), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_hungarian(r2c, c2r, cost, 3, 2, NULL, bytes), ATTN_ERR_NULL);
    CHECK_STATUS(attn_hungarian(r2c, c2r, cost, -1, 2, work, bytes), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_hungarian_work_bytes(2, 2, NULL), ATTN_ERR_NULL);
    /* no targets: every row unassigned */
    CHECK_STATUS(attn_hungarian(r2c, NULL, NULL, 3, 0, NULL, 0), ATTN_OK);
    CHECK(r2c[0] == -1 && r2c[1] == -1 && r2c[2] == -1);
    /* 3 rows {1,2} {3,4} {5,6}, 2 columns: rows 0 and 1 take them, 1 + 4 = 2 + 3 = 5; row 2 stays out */
    CHECK_STATUS(attn_hungarian_work_bytes(3, 2, &bytes), ATTN_OK);
    CHECK_STATUS(attn_hungarian(r2c, c2r, cost, 3, 2, work, bytes), ATTN_OK);
    CHECK(cost[c2r[0] * 2] + cost[c2r[1] * 2 + 1] == 5.0f && r2c[2] == -1);
}

/* ---------------------------------------------------------------------------------------------------
 * Box losses.
 */

/* Finite differences of the GIoU loss in double on random and degenerate pairs, away from the kinks
 * (a corner tie or an intersection edge at 0 moves less than h away). */
static void test_giou_fd(void) {
    uint64_t s = 99;
    const double h = 1e-6;
    double worst = 0;
    int pairs = 0;
    for (int rep = 0; rep < 400; rep++) {
        double p[4], t[4];
        for (int k = 0; k < 2; k++) { p[k] = 0.5 + 0.4 * tu_rnd_f(&s); t[k] = 0.5 + 0.4 * tu_rnd_f(&s); }
        for (int k = 2; k < 4; k++) { p[k] = 0.05 + 0.3 * (1 + tu_rnd_f(&s)); t[k] = 0.05 + 0.3 * (1 + tu_rnd_f(&s)); }
        if (rep % 5 == 1) p[2] = 0;                /* zero-width prediction */
        if (rep % 5 == 2) t[3] = 0;                /* zero-height target */
        if (rep % 5 == 3) { p[2] = 0; t[2] = 0; }  /* both of zero width */
        /* skip pairs within h of a kink of any coordinate */
        const double pc[4] = {p[0] - p[2] / 2, p[0] + p[2] / 2, p[1] - p[3] / 2, p[1] + p[3] / 2};
        const double tc[4] = {t[0] - t[2] / 2, t[0] + t[2] / 2, t[1] - t[3] / 2, t[1] + t[3] / 2};
        int kink = 0;
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                if ((a < 2) == (b < 2) && fabs(pc[a] - tc[b]) < 1e-3) kink = 1;
        for (int a = 0; a < 4; a += 2)
            if (fabs(pc[a] - pc[a + 1]) < 1e-3 && p[2 + a / 2] > 0) kink = 1;
        if (kink) continue;
        double d[4] = {0, 0, 0, 0};
        const double dl = 0.7;
        attn__box_giou_f64(p, t, dl, d);
        for (int k = 0; k < 4; k++) {
            if (k >= 2 && p[k] < h) continue;      /* w = 0: only the one-sided derivative exists */
            double pp[4], pm[4];
            memcpy(pp, p, sizeof p); memcpy(pm, p, sizeof p);
            pp[k] += h; pm[k] -= h;
            const double fd = dl * ((1 - attn__box_giou_f64(pp, t, 0, NULL)) - (1 - attn__box_giou_f64(pm, t, 0, NULL))) / (2 * h);
            const double err = fabs(fd - d[k]) / (1 + fabs(fd));
            if (err > worst) worst = err;
            if (!isfinite(d[k])) worst = INFINITY;
        }
        pairs++;
    }
    tu_checks++;
    const int bad = !(worst < 1e-5) || pairs < 200;
    if (bad) tu_failures++;
    printf("  %-40s pairs=%d max_rel=%.3g %s\n", "giou gradient vs finite differences", pairs, worst, bad ? "FAIL" : "ok");
}

/* Degenerate boxes: finite losses and gradients, the values the formula gives. */
static void test_degenerate(void) {
    const float p[8] = {0.5f, 0.5f, 0.0f, 0.2f,    0.3f, 0.3f, 0.0f, 0.0f};
    const float t[8] = {0.5f, 0.5f, 0.0f, 0.2f,    0.6f, 0.6f, 0.0f, 0.1f};
    float loss, giou[2], dp[8] = {0};
    CHECK_STATUS(attn_box_giou_forward(&loss, giou, p, t, 2), ATTN_OK);
    CHECK_STATUS(attn_box_giou_backward(dp, p, t, 2, 1.0f), ATTN_OK);
    int finite = isfinite(loss);
    for (int k = 0; k < 8; k++) finite &= isfinite(dp[k]);
    CHECK(finite);
    CHECK(fabsf(giou[0]) < 1e-6f);       /* identical lines: I = U = C = 0 */
    CHECK(giou[1] < 0 && giou[1] >= -1); /* a point and a segment apart: iou 0, the enclosing box all empty */
    printf("  degenerate boxes: loss %.6g giou %.6g %.6g\n", loss, giou[0], giou[1]);
    float bad[4] = {0.5f, 0.5f, -0.1f, 0.2f};
    CHECK_STATUS(attn_box_giou_forward(&loss, NULL, bad, t, 1), ATTN_ERR_ARG);
    CHECK_STATUS(attn_box_l1_forward(&loss, bad, t, 1), ATTN_ERR_ARG);
    bad[2] = NAN;
    CHECK_STATUS(attn_box_giou_backward(dp, bad, t, 1, 1.0f), ATTN_ERR_ARG);
    CHECK_STATUS(attn_box_giou_pairwise(giou, p, 1, t, 0), ATTN_ERR_SIZE);
}

/* Against PyTorch: losses, per-pair GIoU, gradients and the pairwise matrix (tools/golden/gen_detr.py). */
static void test_golden(void) {
    attn_st_file f;
    tu_golden_open(&f, "detr_boxes.safetensors");
    const int n = (int)attn_st_find(&f, "pred")->shape[0];
    const float *pred = tu_golden_f32(&f, "pred", 2, n, 4, 0, 0), *target = tu_golden_f32(&f, "target", 2, n, 4, 0, 0);
    const float dl1 = tu_golden_f32(&f, "dl1", 1, 1, 0, 0, 0)[0], dgiou = tu_golden_f32(&f, "dgiou", 1, 1, 0, 0, 0)[0];
    float l1, lg, *giou = malloc(sizeof(float) * (size_t)n), *d = calloc(4 * (size_t)n, sizeof(float));
    float *pw = malloc(sizeof(float) * (size_t)n * (size_t)n);
    CHECK_STATUS(attn_box_l1_forward(&l1, pred, target, n), ATTN_OK);
    CHECK_STATUS(attn_box_giou_forward(&lg, giou, pred, target, n), ATTN_OK);
    tu_close_f32("l1 loss", &l1, tu_golden_f32(&f, "l1", 1, 1, 0, 0, 0), 1, 1e-5, 1e-6);
    tu_close_f32("giou loss", &lg, tu_golden_f32(&f, "giou_loss", 1, 1, 0, 0, 0), 1, 1e-5, 1e-6);
    tu_close_f32("giou per pair", giou, tu_golden_f32(&f, "giou", 1, n, 0, 0, 0), (size_t)n, 1e-6, 1e-5);
    CHECK_STATUS(attn_box_l1_backward(d, pred, target, n, dl1), ATTN_OK);
    tu_close_f32("l1 dpred", d, tu_golden_f32(&f, "l1.dpred", 2, n, 4, 0, 0), 4 * (size_t)n, 1e-6, 1e-6);
    memset(d, 0, sizeof(float) * 4 * (size_t)n);
    CHECK_STATUS(attn_box_giou_backward(d, pred, target, n, dgiou), ATTN_OK);
    tu_close_f32("giou dpred", d, tu_golden_f32(&f, "giou.dpred", 2, n, 4, 0, 0), 4 * (size_t)n, 1e-5, 1e-4);
    CHECK_STATUS(attn_box_giou_pairwise(pw, pred, n, target, n), ATTN_OK);
    tu_close_f32("giou pairwise", pw, tu_golden_f32(&f, "pairwise", 2, n, n, 0, 0), (size_t)n * n, 1e-6, 1e-5);
    free(giou); free(d); free(pw);
    attn_st_free(&f);
}

/* DETR's set criterion against PyTorch: the matching, the three losses and the gradients. */
static void test_criterion(void) {
    attn_st_file f;
    tu_golden_open(&f, "detr_boxes.safetensors");
    enum { B = 3, Q = 5, K = 4, NT = 5 };
    const int32_t *nt = tu_golden_i32(&f, "crit.n_targets", B), *lab = tu_golden_i32(&f, "crit.labels", NT);
    const int32_t *want_match = tu_golden_i32(&f, "crit.match", B * Q);
    int n_targets[B], labels[NT], match[B * Q];
    for (int i = 0; i < B; i++) n_targets[i] = nt[i];
    for (int i = 0; i < NT; i++) labels[i] = lab[i];
    const float *logits = tu_golden_f32(&f, "crit.logits", 3, B, Q, K + 1, 0);
    const float *boxes = tu_golden_f32(&f, "crit.boxes", 3, B, Q, 4, 0);
    const float *tboxes = tu_golden_f32(&f, "crit.tboxes", 2, NT, 4, 0, 0);
    const float dloss = tu_golden_f32(&f, "crit.dloss", 1, 1, 0, 0, 0)[0];
    attn_detr_criterion c;
    attn_detr_criterion_default(&c, K);
    size_t bytes;
    CHECK_STATUS(attn_detr_loss_work_bytes(&c, Q, 3, &bytes), ATTN_OK);
    void *work = malloc(bytes);
    float loss, losses[3], dlogits[B * Q * (K + 1)], dboxes[B * Q * 4];
    CHECK_STATUS(attn_detr_loss(&c, &loss, losses, match, dlogits, dboxes, dloss, logits, boxes, n_targets, labels,
                                tboxes, B, Q, work, bytes), ATTN_OK);
    int same = 1;
    for (int i = 0; i < B * Q; i++) same &= match[i] == want_match[i];
    CHECK(same);
    tu_close_f32("criterion loss", &loss, tu_golden_f32(&f, "crit.loss", 1, 1, 0, 0, 0), 1, 1e-5, 1e-5);
    tu_close_f32("criterion ce, l1, giou", losses, tu_golden_f32(&f, "crit.losses", 1, 3, 0, 0, 0), 3, 1e-5, 1e-5);
    tu_close_f32("criterion dlogits", dlogits, tu_golden_f32(&f, "crit.dlogits", 3, B, Q, K + 1, 0),
                 B * Q * (K + 1), 1e-6, 1e-4);
    tu_close_f32("criterion dboxes", dboxes, tu_golden_f32(&f, "crit.dboxes", 3, B, Q, 4, 0), B * Q * 4, 1e-6, 1e-4);
    /* refusals: a label out of range, a workspace too small */
    labels[0] = K;
    CHECK_STATUS(attn_detr_loss(&c, &loss, losses, match, NULL, NULL, 1, logits, boxes, n_targets, labels, tboxes,
                                B, Q, work, bytes), ATTN_ERR_ARG);
    labels[0] = lab[0];
    CHECK_STATUS(attn_detr_loss(&c, &loss, losses, match, NULL, NULL, 1, logits, boxes, n_targets, labels, tboxes,
                                B, Q, work, bytes - 1), ATTN_ERR_WORKSPACE);
    free(work);
    attn_st_free(&f);
}

/* Canvases on a synthetic split (a bright rectangle per image): deterministic, every item's box tight
 * around its pixels, every lit pixel inside a box, overlaps bounded, 1, 2 and 3 items all occurring. */
static void test_canvas(void) {
    enum { N = 40, R = 28, S = 56 };
    static uint8_t images[N * R * R];
    int32_t labels[N];
    uint64_t s = 7;
    memset(images, 0, sizeof images);
    for (int i = 0; i < N; i++) {
        const int x0 = tu_rnd_int(&s, 0, 20), y0 = tu_rnd_int(&s, 0, 20);
        const int x1 = tu_rnd_int(&s, x0, 27), y1 = tu_rnd_int(&s, y0, 27);
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) images[(size_t)i * R * R + y * R + x] = (uint8_t)tu_rnd_int(&s, 1, 255);
        labels[i] = i % 10;
    }
    attn_fmnist_split split = {N, R, R, images, labels};
    static uint8_t canvas[S * S], again[S * S];
    attn_detr_scene sc, sc2;
    int counts[4] = {0}, bad = 0, differ = 0;
    double worst_iou = 0;
    for (int idx = 0; idx < 300; idx++) {
        CHECK_STATUS(attn_detr_canvas(canvas, &sc, &split, S, 3, 42, (uint64_t)idx), ATTN_OK);
        CHECK_STATUS(attn_detr_canvas(again, &sc2, &split, S, 3, 42, (uint64_t)idx), ATTN_OK);
        if (memcmp(canvas, again, sizeof canvas) || memcmp(&sc, &sc2, sizeof sc)) bad++;
        CHECK_STATUS(attn_detr_canvas(again, &sc2, &split, S, 3, 43, (uint64_t)idx), ATTN_OK);
        differ += memcmp(canvas, again, sizeof canvas) != 0;
        if (sc.n < 1 || sc.n > 3) { bad++; continue; }
        counts[sc.n]++;
        int px[3][4];
        for (int i = 0; i < sc.n; i++) {
            const float *b = sc.boxes[i];
            px[i][0] = (int)lroundf((b[0] - b[2] / 2) * S); px[i][2] = (int)lroundf((b[0] + b[2] / 2) * S) - 1;
            px[i][1] = (int)lroundf((b[1] - b[3] / 2) * S); px[i][3] = (int)lroundf((b[1] + b[3] / 2) * S) - 1;
            if (px[i][0] < 0 || px[i][1] < 0 || px[i][2] >= S || px[i][3] >= S || sc.labels[i] < 0 || sc.labels[i] > 9) {
                bad++;
                continue;
            }
            /* tight: each edge of the box has a lit pixel */
            int l = 0, r = 0, t = 0, u = 0;
            for (int y = px[i][1]; y <= px[i][3]; y++) { l |= canvas[y * S + px[i][0]]; r |= canvas[y * S + px[i][2]]; }
            for (int x = px[i][0]; x <= px[i][2]; x++) { t |= canvas[px[i][1] * S + x]; u |= canvas[px[i][3] * S + x]; }
            if (!l || !r || !t || !u) bad++;
            for (int j = 0; j < i; j++) {
                const int iw = (px[i][2] < px[j][2] ? px[i][2] : px[j][2]) - (px[i][0] > px[j][0] ? px[i][0] : px[j][0]) + 1;
                const int ih = (px[i][3] < px[j][3] ? px[i][3] : px[j][3]) - (px[i][1] > px[j][1] ? px[i][1] : px[j][1]) + 1;
                const double in = iw > 0 && ih > 0 ? (double)iw * ih : 0;
                const double ai = (double)(px[i][2] - px[i][0] + 1) * (px[i][3] - px[i][1] + 1);
                const double aj = (double)(px[j][2] - px[j][0] + 1) * (px[j][3] - px[j][1] + 1);
                const double iou = in / (ai + aj - in);
                if (iou > worst_iou) worst_iou = iou;
            }
        }
        /* every lit pixel lies in some box */
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                if (!canvas[y * S + x]) continue;
                int in = 0;
                for (int i = 0; i < sc.n; i++) in |= x >= px[i][0] && x <= px[i][2] && y >= px[i][1] && y <= px[i][3];
                if (!in) { bad++; y = S; break; }
            }
    }
    CHECK(bad == 0);
    CHECK(worst_iou <= ATTN_DETR_MAX_OVERLAP + 1e-9);
    CHECK(counts[1] > 50 && counts[2] > 50 && counts[3] > 50);
    CHECK(differ > 290);
    printf("  canvases: 300 drawn, items 1/2/3: %d/%d/%d, worst overlap IoU %.3f, %d bad\n", counts[1], counts[2],
           counts[3], worst_iou, bad);
    CHECK_STATUS(attn_detr_canvas(canvas, &sc, &split, 27, 3, 1, 0), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_detr_canvas(canvas, &sc, &split, S, 4, 1, 0), ATTN_ERR_ARG);
    CHECK_STATUS(attn_detr_canvas(canvas, &sc, NULL, S, 3, 1, 0), ATTN_ERR_NULL);
}

int main(void) {
    test_hungarian_brute();
    test_hungarian_refuses();
    test_giou_fd();
    test_degenerate();
    test_golden();
    test_criterion();
    test_canvas();
    return tu_finish("test_detr");
}
