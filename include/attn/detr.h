/*
 * attn/detr.h — the pieces of DETR-style detection (Carion et al. 2020) that are not attention: the
 * minimum-cost assignment of predictions to targets (Hungarian matching) and the box losses, L1 and
 * generalized IoU (Rezatofighi et al. 2019), on boxes given as (cx, cy, w, h), and the canvases the detector learns on.
 *
 *     size_t bytes;
 *     attn_hungarian_work_bytes(Q, M, &bytes);           // Q queries (rows), M targets (columns)
 *     void *work = malloc(bytes);
 *     int match[Q];                                      // match[q] = the target of query q, or -1
 *     attn_hungarian(match, NULL, cost, Q, M, work, bytes);
 *
 *     float l1, giou;
 *     attn_box_l1_forward(&l1, pred, target, n);         // sum over n pairs of |pred - target|
 *     attn_box_giou_forward(&giou, NULL, pred, target, n);   // sum over n pairs of 1 - GIoU
 *     attn_box_l1_backward(dpred, pred, target, n, dl1);     // dpred += dl1 · d l1 / d pred
 *     attn_box_giou_backward(dpred, pred, target, n, dgiou);
 *
 * Boxes are 4 floats (cx, cy, w, h), w and h >= 0 (DETR's are sigmoid outputs in [0, 1]); a box with
 * w or h < 0, or anything not finite, is refused (ATTN_ERR_ARG). Backward calls accumulate into dpred
 * and give no gradient to the targets. None of these calls allocates or starts threads. Includes
 * data.h and layers.h.
 */
#ifndef ATTN_DETR_H
#define ATTN_DETR_H

#include "data.h"
#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------
 * Hungarian matching: cost (n,m) row-major, cost[i·m + j] the cost of giving column j to row i. Finds an
 * assignment of min(n, m) pairs, each row and each column used at most once, whose total cost is the
 * least possible (rectangular: with n > m some rows stay unassigned, with n < m some columns do).
 * Kuhn-Munkres with potentials on shortest augmenting paths, O(min² · max) time, in double.
 *
 * row_to_col (n), col_to_row (m): either may be NULL; -1 marks an unassigned row or column. n or m may be
 * 0 (no pairs). Ties are broken deterministically (the same cost gives the same assignment). A cost that
 * is NaN or infinite is refused (ATTN_ERR_ARG) before anything is written; n or m < 0, or n·m too large
 * for size_t, is ATTN_ERR_SIZE; a workspace smaller than asked for is ATTN_ERR_WORKSPACE.
 */
attn_status attn_hungarian_work_bytes(int n, int m, size_t *bytes);
attn_status attn_hungarian(int *row_to_col, int *col_to_row, const float *cost, int n, int m,
                           void *work, size_t work_bytes);

/* ---------------------------------------------------------------------------------------------------
 * Box losses over n pairs (pred[i], target[i]), each (n,4) as (cx, cy, w, h).
 *
 * L1: *loss = Σ_i Σ_k |pred[i,k] - target[i,k]|; the backward adds dloss · sign(pred - target) (0 where
 * equal, as PyTorch's abs).
 *
 * Generalized IoU, with corners x0 = cx - w/2, x1 = cx + w/2 (y alike), I the intersection's area, U the
 * union's, C the smallest enclosing box's, eps = 1e-7 (as torchvision's generalized_box_iou_loss):
 *     iou = I / (U + eps),  giou = iou - (C - U) / (C + eps),  *loss = Σ_i (1 - giou_i)
 * giou_i is written to giou (n) unless NULL. The eps keeps boxes of zero width or height finite, loss and
 * gradient: two such boxes give iou 0 and giou 0 - (C - 0)/(C + eps). Where two corners tie, max and
 * min split the gradient in halves, and an intersection of width exactly 0 still passes it, as
 * PyTorch 1.13's maximum/minimum and clamp(min = 0) do.
 *
 * attn_box_giou_pairwise: giou (n,m) for every pair (a[i], b[j]) of a (n,4) and b (m,4), for matching
 * costs (no backward). n, m >= 1.
 */
attn_status attn_box_l1_forward(float *loss, const float *pred, const float *target, int n);
attn_status attn_box_l1_backward(float *dpred, const float *pred, const float *target, int n, float dloss);
attn_status attn_box_giou_forward(float *loss, float *giou, const float *pred, const float *target, int n);
attn_status attn_box_giou_backward(float *dpred, const float *pred, const float *target, int n, float dloss);
attn_status attn_box_giou_pairwise(float *giou, const float *a, int n, const float *b, int m);

/* ---------------------------------------------------------------------------------------------------
 * DETR's set criterion on a batch: B images, Q queries each predicting logits over K classes plus
 * "no object" (index K) and a box; image b has n_targets[b] targets (labels in 0..K-1, boxes), stored one
 * image after another. Per image the queries are matched to the targets by attn_hungarian on
 *     cost[q,j] = w_l1 · |box_q - tbox_j|_1 - w_class · softmax(logits_q)[label_j] - w_giou · giou(box_q, tbox_j)
 * and, with N = max(1, Σ n_targets) and a query's target class its match's label or K,
 *     ce   = Σ_bq w(c_bq) · -log softmax(logits_bq)[c_bq] / Σ_bq w(c_bq),   w(K) = eos_coef, else 1
 *     l1   = Σ_matched |box - tbox|_1 / N,   giou = Σ_matched (1 - giou) / N
 *     loss = w_ce · ce + w_l1 · l1 + w_giou · giou
 * as DETR's SetCriterion with its HungarianMatcher (the same weights on cost and loss). losses (3) gets
 * ce, l1, giou unweighted; match (B·Q) the matched target of each query within its image, or -1.
 * dlogits (B,Q,K+1) and dboxes (B,Q,4), unless NULL, are set (not accumulated) to dloss · d loss.
 */
typedef struct attn_detr_criterion {
    int classes;            /* K */
    float eos_coef;         /* 0.1 */
    float w_ce, w_l1, w_giou;       /* 1, 5, 2 */
} attn_detr_criterion;

void attn_detr_criterion_default(attn_detr_criterion *c, int classes);
/* Workspace for Q queries and at most max_targets targets in an image. */
attn_status attn_detr_loss_work_bytes(const attn_detr_criterion *c, int Q, int max_targets, size_t *bytes);
attn_status attn_detr_loss(const attn_detr_criterion *c, float *loss, float *losses, int *match,
                           float *dlogits, float *dboxes, float dloss,
                           const float *logits, const float *boxes, const int *n_targets, const int *labels,
                           const float *tboxes, int B, int Q, void *work, size_t work_bytes);

/* ---------------------------------------------------------------------------------------------------
 * Canvases: an (S,S) grey canvas holding 1..max_items items of split (each a random image of it) at
 * random places, drawn with the brighter pixel winning where they overlap. Item i of the scene has the
 * image's label and the tight box of its non-zero pixels as (cx, cy, w, h) in canvas units (0..1; pixel x
 * spans [x/S, (x+1)/S)). A place is drawn again (up to 64 times) while the box's IoU with an earlier
 * item's exceeds ATTN_DETR_MAX_OVERLAP; an item that finds no place is left out, so n can fall below the
 * number drawn but is at least 1. The canvas is a pure function of (seed, index) and the split. S from the
 * split's image size to ATTN_DETR_MAX_CANVAS (ATTN_ERR_SIZE otherwise), max_items 1..ATTN_DETR_MAX_ITEMS
 * (ATTN_ERR_ARG).
 */
#define ATTN_DETR_MAX_ITEMS 3
#define ATTN_DETR_MAX_CANVAS 1024
#define ATTN_DETR_MAX_OVERLAP 0.2

typedef struct attn_detr_scene {
    int n;                                   /* items on the canvas */
    int labels[ATTN_DETR_MAX_ITEMS];
    float boxes[ATTN_DETR_MAX_ITEMS][4];     /* (cx, cy, w, h) */
} attn_detr_scene;

attn_status attn_detr_canvas(uint8_t *canvas, attn_detr_scene *scene, const attn_fmnist_split *split, int S,
                             int max_items, uint64_t seed, uint64_t index);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_DETR_H */
