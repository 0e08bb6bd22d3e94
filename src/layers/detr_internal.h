/*
 * detr_internal.h — the generalized IoU of one box pair in double, shared by the library's float calls
 * and the finite-difference test (which needs double inputs end to end).
 */
#ifndef ATTN_DETR_INTERNAL_H
#define ATTN_DETR_INTERNAL_H

/* GIoU of p and t, each (cx, cy, w, h) with eps = 1e-7 as attn/detr.h; when dp is not NULL, adds
 * dloss · d(1 - giou)/dp to dp (4). */
double attn__box_giou_f64(const double *p, const double *t, double dloss, double *dp);

#endif
