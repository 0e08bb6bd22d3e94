/*
 * detr.c — what DETR-style detection needs besides attention: the Hungarian matching of predictions to
 * targets and the box losses (L1 and generalized IoU) with their gradients. Contracts in attn/detr.h;
 * everything computes in double and stores float.
 */
#include "attn/detr.h"
#include "detr_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Hungarian matching. The classic formulation with row potentials u and column potentials v (Kuhn-
 * Munkres as Jonker & Volgenant's shortest augmenting paths): rows are added one at a time; each grows a
 * Dijkstra-like tree over the columns on the reduced costs a(i,j) - u[i] - v[j] until it reaches a free
 * column, then flips the path. Needs rows <= columns, so a cost with more rows than columns is read
 * transposed. Indices are 1-based inside (column 0 is the virtual start of each search).
 */
typedef struct hung_work {
    double *u, *v, *minv;   /* (R+1) (C+1) (C+1) */
    int *p, *way;           /* (C+1) (C+1): p[j] the row holding column j (0: free) */
    unsigned char *used;    /* (C+1) */
} hung_work;

/* Bytes for R rows and C columns (R <= C), each array aligned to 8; 0 when it does not fit in size_t. */
static size_t hung_bytes(size_t R, size_t C) {
    const size_t c1 = C + 1, r1 = R + 1;
    if (c1 == 0 || c1 > SIZE_MAX / 64) return 0;
    return 8 * r1 + 8 * c1 * 2 + 8 * ((4 * c1 + 7) / 8) * 2 + 8 * ((c1 + 7) / 8);
}

attn_status attn_hungarian_work_bytes(int n, int m, size_t *bytes) {
    if (!bytes) return ATTN_ERR_NULL;
    if (n < 0 || m < 0) return ATTN_ERR_SIZE;
    if (n > 0 && (size_t)m > SIZE_MAX / sizeof(float) / (size_t)n) return ATTN_ERR_SIZE;
    const size_t R = (size_t)(n < m ? n : m), C = (size_t)(n < m ? m : n);
    const size_t b = hung_bytes(R, C);
    if (!b) return ATTN_ERR_SIZE;
    *bytes = b;
    return ATTN_OK;
}

attn_status attn_hungarian(int *row_to_col, int *col_to_row, const float *cost, int n, int m,
                           void *work, size_t work_bytes) {
    size_t need;
    attn_status st = attn_hungarian_work_bytes(n, m, &need);
    if (st != ATTN_OK) return st;
    if ((n > 0 && m > 0) && (!cost || !work)) return ATTN_ERR_NULL;
    if ((n > 0 && m > 0) && work_bytes < need) return ATTN_ERR_WORKSPACE;
    for (size_t k = 0; k < (size_t)n * (size_t)m; k++)
        if (!isfinite(cost[k])) return ATTN_ERR_ARG;
    if (row_to_col) for (int i = 0; i < n; i++) row_to_col[i] = -1;
    if (col_to_row) for (int j = 0; j < m; j++) col_to_row[j] = -1;
    if (n == 0 || m == 0) return ATTN_OK;

    const int trans = n > m;                 /* rows of the search = the smaller side */
    const int R = trans ? m : n, C = trans ? n : m;
    unsigned char *w = work;
    hung_work h;
    h.u = (double *)w;        w += 8 * (size_t)(R + 1);
    h.v = (double *)w;        w += 8 * (size_t)(C + 1);
    h.minv = (double *)w;     w += 8 * (size_t)(C + 1);
    h.p = (int *)w;           w += 8 * ((4 * (size_t)(C + 1) + 7) / 8);
    h.way = (int *)w;         w += 8 * ((4 * (size_t)(C + 1) + 7) / 8);
    h.used = w;
    for (int i = 0; i <= R; i++) h.u[i] = 0;
    for (int j = 0; j <= C; j++) { h.v[j] = 0; h.p[j] = 0; h.way[j] = 0; }

    for (int i = 1; i <= R; i++) {
        /* grow shortest paths from row i until a free column is reached */
        h.p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= C; j++) { h.minv[j] = INFINITY; h.used[j] = 0; }
        do {
            h.used[j0] = 1;
            const int i0 = h.p[j0];
            double delta = INFINITY;
            int j1 = 0;
            for (int j = 1; j <= C; j++) {
                if (h.used[j]) continue;
                const double a = trans ? cost[(size_t)(j - 1) * (size_t)m + (size_t)(i0 - 1)]
                                       : cost[(size_t)(i0 - 1) * (size_t)m + (size_t)(j - 1)];
                const double cur = a - h.u[i0] - h.v[j];
                if (cur < h.minv[j]) { h.minv[j] = cur; h.way[j] = j0; }
                if (h.minv[j] < delta || j1 == 0) { delta = h.minv[j]; j1 = j; }
            }
            /* move the potentials so the tree's reduced costs stay >= 0 and the new edge is tight */
            for (int j = 0; j <= C; j++) {
                if (h.used[j]) { h.u[h.p[j]] += delta; h.v[j] -= delta; }
                else h.minv[j] -= delta;
            }
            j0 = j1;
        } while (h.p[j0] != 0);
        /* flip the augmenting path */
        do {
            const int j1 = h.way[j0];
            h.p[j0] = h.p[j1];
            j0 = j1;
        } while (j0);
    }

    for (int j = 1; j <= C; j++) {
        if (!h.p[j]) continue;
        const int r = trans ? j - 1 : h.p[j] - 1, c = trans ? h.p[j] - 1 : j - 1;
        if (row_to_col) row_to_col[r] = c;
        if (col_to_row) col_to_row[c] = r;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Box losses.
 */
static int box_ok(const float *b) {
    return isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3]) && b[2] >= 0 && b[3] >= 0;
}

static attn_status boxes_ok(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!box_ok(a + 4 * (size_t)i)) return ATTN_ERR_ARG;
    return ATTN_OK;
}

/* Gradients of max(a, b) / min(a, b) to a and b: all to the larger (smaller), halves on a tie. */
static void max_grad(double a, double b, double g, double *ga, double *gb) {
    if (a > b) *ga += g;
    else if (b > a) *gb += g;
    else { *ga += 0.5 * g; *gb += 0.5 * g; }
}

double attn__box_giou_f64(const double *p, const double *t, double dloss, double *dp) {
    const double eps = 1e-7;
    /* corners */
    const double px0 = p[0] - 0.5 * p[2], px1 = p[0] + 0.5 * p[2], py0 = p[1] - 0.5 * p[3], py1 = p[1] + 0.5 * p[3];
    const double tx0 = t[0] - 0.5 * t[2], tx1 = t[0] + 0.5 * t[2], ty0 = t[1] - 0.5 * t[3], ty1 = t[1] + 0.5 * t[3];
    const double ap = p[2] * p[3], at = t[2] * t[3];
    /* intersection, union, enclosing box */
    const double rx = fmin(px1, tx1), lx = fmax(px0, tx0), ry = fmin(py1, ty1), ly = fmax(py0, ty0);
    const double iw = rx - lx >= 0 ? rx - lx : 0, ih = ry - ly >= 0 ? ry - ly : 0;
    const double inter = iw * ih, uni = ap + at - inter;
    const double cw = fmax(px1, tx1) - fmin(px0, tx0), ch = fmax(py1, ty1) - fmin(py0, ty0);
    const double area_c = cw * ch;
    const double iou = inter / (uni + eps);
    const double giou = iou - (area_c - uni) / (area_c + eps);
    if (!dp) return giou;

    /* backward of dloss · (1 - giou), pass by pass in reverse */
    const double G = -dloss;                                       /* d / d giou */
    const double g_c = G * -(eps + uni) / ((area_c + eps) * (area_c + eps));
    const double g_u = G / (area_c + eps) - G * inter / ((uni + eps) * (uni + eps));
    const double g_i = G / (uni + eps) - g_u;
    const double g_ap = g_u;
    double g_px0 = 0, g_px1 = 0, g_py0 = 0, g_py1 = 0, unused = 0;
    /* enclosing box: cw = max(px1, tx1) - min(px0, tx0) */
    max_grad(px1, tx1, g_c * ch, &g_px1, &unused);
    max_grad(-px0, -tx0, -g_c * ch, &g_px0, &unused);              /* min(a,b) = -max(-a,-b) */
    max_grad(py1, ty1, g_c * cw, &g_py1, &unused);
    max_grad(-py0, -ty0, -g_c * cw, &g_py0, &unused);
    /* intersection: clamp(min = 0) passes the gradient at 0, as PyTorch's */
    if (rx - lx >= 0) {
        const double g_iw = g_i * ih;
        max_grad(-px1, -tx1, g_iw, &g_px1, &unused);               /* rx = min(px1, tx1) */
        max_grad(px0, tx0, -g_iw, &g_px0, &unused);                /* lx = max(px0, tx0) */
    }
    if (ry - ly >= 0) {
        const double g_ih = g_i * iw;
        max_grad(-py1, -ty1, g_ih, &g_py1, &unused);
        max_grad(py0, ty0, -g_ih, &g_py0, &unused);
    }
    /* corners and area back to (cx, cy, w, h) */
    dp[0] += g_px0 + g_px1;
    dp[1] += g_py0 + g_py1;
    dp[2] += 0.5 * (g_px1 - g_px0) + g_ap * p[3];
    dp[3] += 0.5 * (g_py1 - g_py0) + g_ap * p[2];
    return giou;
}

attn_status attn_box_l1_forward(float *loss, const float *pred, const float *target, int n) {
    if (!loss || (n > 0 && (!pred || !target))) return ATTN_ERR_NULL;
    if (n < 0) return ATTN_ERR_SIZE;
    if (boxes_ok(pred, n) || boxes_ok(target, n)) return ATTN_ERR_ARG;
    double s = 0;
    for (size_t k = 0; k < 4 * (size_t)n; k++) s += fabs((double)pred[k] - (double)target[k]);
    *loss = (float)s;
    return ATTN_OK;
}

attn_status attn_box_l1_backward(float *dpred, const float *pred, const float *target, int n, float dloss) {
    if (n > 0 && (!dpred || !pred || !target)) return ATTN_ERR_NULL;
    if (n < 0) return ATTN_ERR_SIZE;
    if (!isfinite(dloss)) return ATTN_ERR_ARG;
    if (boxes_ok(pred, n) || boxes_ok(target, n)) return ATTN_ERR_ARG;
    for (size_t k = 0; k < 4 * (size_t)n; k++)
        dpred[k] += pred[k] > target[k] ? dloss : pred[k] < target[k] ? -dloss : 0.0f;
    return ATTN_OK;
}

attn_status attn_box_giou_forward(float *loss, float *giou, const float *pred, const float *target, int n) {
    if (!loss || (n > 0 && (!pred || !target))) return ATTN_ERR_NULL;
    if (n < 0) return ATTN_ERR_SIZE;
    if (boxes_ok(pred, n) || boxes_ok(target, n)) return ATTN_ERR_ARG;
    double s = 0;
    for (int i = 0; i < n; i++) {
        double p[4], t[4];
        for (int k = 0; k < 4; k++) { p[k] = pred[4 * (size_t)i + k]; t[k] = target[4 * (size_t)i + k]; }
        const double g = attn__box_giou_f64(p, t, 0, NULL);
        if (giou) giou[i] = (float)g;
        s += 1.0 - g;
    }
    *loss = (float)s;
    return ATTN_OK;
}

attn_status attn_box_giou_backward(float *dpred, const float *pred, const float *target, int n, float dloss) {
    if (n > 0 && (!dpred || !pred || !target)) return ATTN_ERR_NULL;
    if (n < 0) return ATTN_ERR_SIZE;
    if (!isfinite(dloss)) return ATTN_ERR_ARG;
    if (boxes_ok(pred, n) || boxes_ok(target, n)) return ATTN_ERR_ARG;
    for (int i = 0; i < n; i++) {
        double p[4], t[4], d[4] = {0, 0, 0, 0};
        for (int k = 0; k < 4; k++) { p[k] = pred[4 * (size_t)i + k]; t[k] = target[4 * (size_t)i + k]; }
        attn__box_giou_f64(p, t, dloss, d);
        for (int k = 0; k < 4; k++) dpred[4 * (size_t)i + k] += (float)d[k];
    }
    return ATTN_OK;
}

attn_status attn_box_giou_pairwise(float *giou, const float *a, int n, const float *b, int m) {
    if (!giou || !a || !b) return ATTN_ERR_NULL;
    if (n < 1 || m < 1) return ATTN_ERR_SIZE;
    if (boxes_ok(a, n) || boxes_ok(b, m)) return ATTN_ERR_ARG;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            double p[4], t[4];
            for (int k = 0; k < 4; k++) { p[k] = a[4 * (size_t)i + k]; t[k] = b[4 * (size_t)j + k]; }
            giou[(size_t)i * (size_t)m + (size_t)j] = (float)attn__box_giou_f64(p, t, 0, NULL);
        }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * DETR's set criterion: match per image, then the class loss over every query and the box losses over
 * the matched ones. The workspace holds one image's cost (Q, M) as floats, then the matcher's.
 */
void attn_detr_criterion_default(attn_detr_criterion *c, int classes) {
    c->classes = classes;
    c->eos_coef = 0.1f;
    c->w_ce = 1.0f;
    c->w_l1 = 5.0f;
    c->w_giou = 2.0f;
    c->aux = 1;
}

attn_status attn_detr_loss_work_bytes(const attn_detr_criterion *c, int Q, int max_targets, size_t *bytes) {
    if (!c || !bytes) return ATTN_ERR_NULL;
    if (Q < 1 || max_targets < 0 || c->classes < 1) return ATTN_ERR_SIZE;
    size_t hb;
    attn_status st = attn_hungarian_work_bytes(Q, max_targets, &hb);
    if (st != ATTN_OK) return st;
    const size_t cb = 8 * (((size_t)Q * (size_t)max_targets * sizeof(float) + 7) / 8);
    if (hb > SIZE_MAX - cb) return ATTN_ERR_SIZE;
    *bytes = cb + hb;
    return ATTN_OK;
}

/* log-softmax of row x (n) at index c, in double */
static double log_softmax_at(const float *x, int n, int c) {
    double mx = x[0], s = 0;
    for (int k = 1; k < n; k++) if (x[k] > mx) mx = x[k];
    for (int k = 0; k < n; k++) s += exp((double)x[k] - mx);
    return (double)x[c] - mx - log(s);
}

attn_status attn_detr_loss(const attn_detr_criterion *c, float *loss, float *losses, int *match,
                           float *dlogits, float *dboxes, float dloss,
                           const float *logits, const float *boxes, const int *n_targets, const int *labels,
                           const float *tboxes, int B, int Q, void *work, size_t work_bytes) {
    if (!c || !loss || !logits || !boxes || !n_targets || !match) return ATTN_ERR_NULL;
    if (B < 1 || Q < 1 || c->classes < 1 || c->classes == INT32_MAX) return ATTN_ERR_SIZE;
    if ((size_t)B > SIZE_MAX / 16 / (size_t)Q / ((size_t)c->classes + 1)) return ATTN_ERR_SIZE;
    if (!isfinite(dloss) || !(c->eos_coef > 0) || !isfinite(c->eos_coef) || !isfinite(c->w_ce) ||
        !isfinite(c->w_l1) || !isfinite(c->w_giou))
        return ATTN_ERR_ARG;
    const int K1 = c->classes + 1;
    int max_m = 0;
    size_t total = 0;
    for (int b = 0; b < B; b++) {
        if (n_targets[b] < 0) return ATTN_ERR_SIZE;
        if (n_targets[b] > max_m) max_m = n_targets[b];
        total += (size_t)n_targets[b];
    }
    if (total && (!labels || !tboxes)) return ATTN_ERR_NULL;
    size_t need;
    attn_status st = attn_detr_loss_work_bytes(c, Q, max_m, &need);
    if (st != ATTN_OK) return st;
    if (!work || work_bytes < need) return ATTN_ERR_WORKSPACE;
    for (size_t i = 0; i < total; i++)
        if (labels[i] < 0 || labels[i] >= c->classes) return ATTN_ERR_ARG;
    if (boxes_ok(boxes, (size_t)B * (size_t)Q) || boxes_ok(tboxes, total)) return ATTN_ERR_ARG;
    for (size_t i = 0; i < (size_t)B * (size_t)Q * (size_t)K1; i++)
        if (!isfinite(logits[i])) return ATTN_ERR_ARG;

    float *cost = work;
    void *hwork = (unsigned char *)work + 8 * (((size_t)Q * (size_t)max_m * sizeof(float) + 7) / 8);
    const double N = total ? (double)total : 1.0;

    /* pass 1: match each image */
    size_t t0 = 0;
    for (int b = 0; b < B; b++) {
        const int M = n_targets[b];
        for (int q = 0; q < Q; q++) {
            const float *lq = logits + ((size_t)b * Q + q) * K1, *bq = boxes + ((size_t)b * Q + q) * 4;
            for (int j = 0; j < M; j++) {
                const float *tj = tboxes + (t0 + j) * 4;
                double p[4], t[4], l1 = 0;
                for (int k = 0; k < 4; k++) { p[k] = bq[k]; t[k] = tj[k]; l1 += fabs(p[k] - t[k]); }
                const double prob = exp(log_softmax_at(lq, K1, labels[t0 + j]));
                cost[(size_t)q * M + j] = (float)(c->w_l1 * l1 - c->w_ce * prob - c->w_giou * attn__box_giou_f64(p, t, 0, NULL));
            }
        }
        st = attn_hungarian(match + (size_t)b * Q, NULL, cost, Q, M, hwork, work_bytes - (size_t)((unsigned char *)hwork - (unsigned char *)work));
        if (st != ATTN_OK) return st;
        t0 += (size_t)M;
    }

    /* pass 2: the losses; the class loss is a weighted mean, so its gradient waits for the weights' sum */
    double ce_num = 0, ce_den = 0, l1 = 0, gl = 0;
    t0 = 0;
    for (int b = 0; b < B; b++) {
        for (int q = 0; q < Q; q++) {
            const int j = match[(size_t)b * Q + q];
            const int cls = j >= 0 ? labels[t0 + j] : c->classes;
            const double wt = cls == c->classes ? c->eos_coef : 1.0;
            ce_num -= wt * log_softmax_at(logits + ((size_t)b * Q + q) * K1, K1, cls);
            ce_den += wt;
            if (j < 0) continue;
            double p[4], t[4];
            for (int k = 0; k < 4; k++) {
                p[k] = boxes[((size_t)b * Q + q) * 4 + k];
                t[k] = tboxes[(t0 + j) * 4 + k];
                l1 += fabs(p[k] - t[k]);
            }
            gl += 1.0 - attn__box_giou_f64(p, t, 0, NULL);
        }
        t0 += (size_t)n_targets[b];
    }
    const double ce = ce_num / ce_den;
    if (losses) { losses[0] = (float)ce; losses[1] = (float)(l1 / N); losses[2] = (float)(gl / N); }
    *loss = (float)(c->w_ce * ce + c->w_l1 * l1 / N + c->w_giou * gl / N);

    /* pass 3: gradients */
    if (!dlogits && !dboxes) return ATTN_OK;
    t0 = 0;
    for (int b = 0; b < B; b++) {
        for (int q = 0; q < Q; q++) {
            const size_t bq = (size_t)b * Q + q;
            const int j = match[bq];
            const int cls = j >= 0 ? labels[t0 + j] : c->classes;
            if (dlogits) {
                const double wt = cls == c->classes ? c->eos_coef : 1.0, g = dloss * c->w_ce * wt / ce_den;
                const float *lq = logits + bq * K1;
                double mx = lq[0], s = 0;
                for (int k = 1; k < K1; k++) if (lq[k] > mx) mx = lq[k];
                for (int k = 0; k < K1; k++) s += exp((double)lq[k] - mx);
                for (int k = 0; k < K1; k++)
                    dlogits[bq * K1 + k] = (float)(g * (exp((double)lq[k] - mx) / s - (k == cls)));
            }
            if (!dboxes) continue;
            double d[4] = {0, 0, 0, 0};
            if (j >= 0) {
                double p[4], t[4];
                for (int k = 0; k < 4; k++) {
                    p[k] = boxes[bq * 4 + k];
                    t[k] = tboxes[(t0 + j) * 4 + k];
                    d[k] = dloss * c->w_l1 / N * (p[k] > t[k] ? 1.0 : p[k] < t[k] ? -1.0 : 0.0);
                }
                attn__box_giou_f64(p, t, dloss * c->w_giou / N, d);
            }
            for (int k = 0; k < 4; k++) dboxes[bq * 4 + k] = (float)d[k];
        }
        t0 += (size_t)n_targets[b];
    }
    return ATTN_OK;
}
