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
 * transformer.h (and so data.h and layers.h).
 *
 * The detector (attn_detr, at the end) is DETR's shape at a small size: a ViT-style patch encoder and a
 * decoder of Q learned object queries, each predicting a class (or "no object") and a box.
 */
#ifndef ATTN_DETR_H
#define ATTN_DETR_H

#include "transformer.h"

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
    int aux;                /* 1: the detector's loss is this set loss after every decoder block (DETR's
                               auxiliary decoding losses), summed; 0: after the last only. attn_detr_loss,
                               one set of predictions, does not read it. */
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

/* ---------------------------------------------------------------------------------------------------
 * The detector: B grey canvases (S,S) (already normalized), patch size P, Np = (S/P)² patches, Q object
 * queries, K classes (K+1 logits, the last "no object"), width D, H heads, feed-forward F.
 *
 *   enc    = encoder_blocks(patch_embed(canvas) + pos_embed)                  (B,Np,D)
 *   dec    = decoder_blocks(query_embed, enc)                                  (B,Q,D)
 *   logits = class_head(dec)                                                   (B,Q,K+1)
 *   boxes  = sigmoid(box.fc2(relu(box.fc1(dec))))                              (B,Q,4) as (cx, cy, w, h)
 *
 * The blocks are attn/transformer.h's (post-norm, bias-free attention); the decoder blocks run with
 * full_self = 1, so the queries' self-attention is not causal, then cross-attend to the patches. Every
 * attention runs through attn_sdpa_*. The loss is attn_detr_loss on the batch (crit, default 1, 5, 2 and
 * "no object" 0.1); with crit.aux (the default) also on the same heads after every earlier decoder block,
 * each matched on its own, the losses summed (DETR's auxiliary decoding losses). No dropout.
 *
 * Every call splits the batch into n_shards (attn_detr_set_shards) fixed parts of ceil(B / shards) canvases, each run by
 * one thread on its own activations and gradients (summed in shard order); the criterion runs once on the
 * whole batch between the shards' forward and backward, since its denominators are batch totals. Results
 * do not depend on the thread count.
 *
 * Parameters live in one slab, in this order (the checkpoint's names): patch_embed.weight (D,Kp·Kp) (Kp the
 * patch kernel: P, or patch_kernel),
 * patch_embed.bias (D), pos_embed (Np,D), encoder.blocks.{i} (attn_tf_block's order), query_embed (Q,D),
 * decoder.blocks.{i}, class_head.weight (K+1,D), class_head.bias (K+1), box_head.fc1.weight (D,D),
 * box_head.fc1.bias (D), box_head.fc2.weight (4,D), box_head.fc2.bias (4). init: patch embedding as
 * Conv2d's default, positions N(0, 0.02²), queries N(0,1) (nn.Embedding's), blocks as
 * attn_tf_block_init_weights, the heads Xavier-uniform with zero biases.
 */
#define ATTN_DETR_MAX_BLOCKS 8
#define ATTN_DETR_SHARDS 2

typedef struct attn_detr_config {
    int image, patch;            /* S, P */
    int queries, classes;        /* Q, K */
    int dim, heads, ffn;         /* D, H, F */
    int enc_blocks, dec_blocks;  /* >= 0 and >= 1 */
    int max_batch;               /* the largest B a call takes */
    int patch_kernel;            /* the patch embedding's kernel K: 0 or P for none; P < K <= 3P, K - P even:
                                    overlapping windows around the same Np patches (attn_vit_config's); saved
                                    when K != P */
} attn_detr_config;

/* 56, 7; 8, 10; 96, 4, 192; 2, 3; 64 (the model `attn detect train` trains by default). */
void attn_detr_config_default(attn_detr_config *c);
/* Sizes >= 1 (enc_blocks >= 0), S % P == 0, D % H == 0, blocks at most ATTN_DETR_MAX_BLOCKS, patch_kernel 0
 * or P <= K <= 3P with K - P even:
 * ATTN_ERR_SIZE or ATTN_ERR_SHAPE otherwise. */
attn_status attn_detr_config_check(const attn_detr_config *c);

typedef struct attn_detr {
    attn_detr_config cfg;
    int Np, K1;                  /* patches, logits per query (K+1) */
    attn_ctx ctx;
    attn_detr_criterion crit;    /* the loss's weights: attn_detr_criterion_default after init or load */
    float *params, *grads;       /* the slab: n_params each */
    size_t n_params;
    attn_patch_embed patch;
    float *pos, *dpos;           /* (Np,D) */
    attn_tf_block enc[ATTN_DETR_MAX_BLOCKS], dec[ATTN_DETR_MAX_BLOCKS];
    float *query, *dquery;       /* (Q,D) */
    float *cls_w, *cls_b, *dcls_w, *dcls_b;       /* (K+1,D) (K+1) */
    float *fc1_w, *fc1_b, *dfc1_w, *dfc1_b;       /* (D,D) (D) */
    float *fc2_w, *fc2_b, *dfc2_w, *dfc2_b;       /* (4,D) (4) */
    float *acts;                 /* a shard: its activations; the model: outputs, their gradients, matching */
    size_t acts_floats;
    struct attn_detr *shards;    /* n_shards, sharing params, each with its own grads and acts */
    int n_shards;
} attn_detr;

attn_status attn_detr_init(attn_detr *m, const attn_ctx *ctx, const attn_detr_config *cfg, uint64_t seed);
void        attn_detr_free(attn_detr *m);

/* Inference: logits (B,Q,K+1), boxes (B,Q,4) written; cross (B,H,Q,Np) or NULL: the last decoder block's
 * cross-attention weights of every query and head over the patches. */
attn_status attn_detr_forward(attn_detr *m, float *logits, float *boxes, float *cross, const float *canvases, int B);

/* The set loss of a batch and its gradient (m->grads overwritten). Targets as attn_detr_loss takes them:
 * n_targets (B), each 0..Q, labels and tboxes (cx, cy, w, h) of image after image. *loss the weighted
 * total (with m->crit.aux, summed over the decoder blocks), losses (3, or NULL) ce, l1, giou of the last
 * block's heads. */
attn_status attn_detr_loss_grad(attn_detr *m, const float *canvases, const int *n_targets, const int *labels,
                                const float *tboxes, int B, float *loss, float *losses);

/* loss_grad, then clip the global gradient norm to clip (<= 0: none) and one opt step. */
attn_status attn_detr_train_step(attn_detr *m, attn_adam *opt, const float *canvases, const int *n_targets,
                                 const int *labels, const float *tboxes, int B, float clip, float *loss,
                                 float *losses);

/* Cuts every batch into n fixed shards (1 .. ATTN_MAX_SHARDS; ATTN_DETR_SHARDS after init and load), as
 * attn_seq2seq_set_shards. */
attn_status attn_detr_set_shards(attn_detr *m, int n);

/* Data parallel: the same step, but this process computes only shards [first, first + count) (every
 * process passes the whole batch). After their forward, gather must fill in x (B rows of row_floats
 * floats, shard k rows [k·per, min(B, (k+1)·per))) the rows of the shards this process did not compute,
 * the same bits on every process; it is called for the logits, then the boxes. Every process then runs
 * the criterion on the whole batch (the same loss everywhere), its shards' backward, and combine
 * (attn/layers.h) adds every process's shard gradients in shard order (the shards' losses it is given are
 * zeros: the loss is the batch's), then the same clip and opt step: the bits of attn_detr_train_step.
 * count 0 is attn_detr_train_step. */
typedef attn_status (*attn_detr_gather_fn)(void *user, float *x, size_t row_floats, int B, int per, int first,
                                           int count);
attn_status attn_detr_train_step_part(attn_detr *m, attn_adam *opt, const float *canvases, const int *n_targets,
                                      const int *labels, const float *tboxes, int B, float clip, int first, int count,
                                      attn_detr_gather_fn gather, attn_shard_combine_fn combine, void *user,
                                      float *loss, float *losses);

/* Checkpoint (safetensors, atomic), as attn_caption_save / _load: the tensors under their names, the
 * config in the metadata (model = "detr"), with opt its moments and step, n_extra (<= 32) more metadata
 * pairs. load allocates m for max_batch canvases; with opt non-NULL it allocates *opt with the saved
 * moments (ATTN_ERR_FORMAT when the file has none). */
attn_status attn_detr_save(const attn_detr *m, const attn_adam *opt, const char *const *keys,
                           const char *const *vals, int n_extra, const char *path, char *err, size_t err_size);
attn_status attn_detr_load(attn_detr *m, attn_adam *opt, const attn_ctx *ctx, const char *path, int max_batch,
                           char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_DETR_H */
