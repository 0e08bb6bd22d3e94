/*
 * attn/detr.h — the pieces of DETR-style detection (Carion et al. 2020) that are not attention: the
 * minimum-cost assignment of predictions to targets (Hungarian matching) and the box losses, L1 and
 * generalized IoU (Rezatofighi et al. 2019), on boxes given as (cx, cy, w, h). Includes attn.h.
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
 * and give no gradient to the targets. None of these calls allocates or starts threads.
 */
#ifndef ATTN_DETR_H
#define ATTN_DETR_H

#include "../attn.h"

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

#ifdef __cplusplus
}
#endif

#endif /* ATTN_DETR_H */
