/*
 * attn/vit.h — the Vision Transformer (Dosovitskiy et al. 2021) for small grey or colour images: patch
 * embedding, class token and learned positions, pre-norm blocks of multi-head self-attention and a GELU
 * MLP, a final layer norm on the class token and a linear head. Includes layers.h.
 *
 *     attn_vit m;
 *     attn_vit_config c;
 *     attn_vit_config_default(&c);                    // 28x28x1, patch 7, dim 128, 4 heads, 4 blocks, MLP 256
 *     attn_vit_init(&m, NULL, &c, seed);
 *     attn_adam opt; attn_adam_alloc(&opt, m.n_params, 1e-3f); opt.weight_decay = 0.05f;   // AdamW
 *     attn_vit_train_step(&m, &opt, images, labels, B, 1.0f, &loss, &correct);  // one batch
 *     attn_vit_forward(&m, logits, NULL, images, B);                              // inference
 *
 * Sizes: B images of (C, I, I) floats (already normalized), P the patch size (I % P == 0), Kp the patch
 * embedding's kernel (P, or larger for overlapping patches: cfg.patch_kernel), Np = (I/P)² patches, T = Np + 1 tokens (the class token first), D the width, H heads (D % H == 0), F the MLP's hidden
 * width, L blocks, K classes.
 *
 *   x0      = cls_pos(patch_embed(image))                                  (B,T,D)
 *   block:  h = x + mha(ln1(x), ln1(x), ln1(x));  x' = h + fc2(gelu(fc1(ln2(h))))
 *   logits  = head(norm(x_L[:, 0]))                                        (B,K)
 *
 * Every attention runs through attn_mha, i.e. attn_sdpa_forward / attn_sdpa_backward on the model's
 * context; the weights drawn by attn_vit_forward come from the same calls. No dropout.
 *
 * Parameters live in one slab, in this order (the checkpoint's names, timm's where it has them):
 *   patch_embed.weight (D, C·Kp·Kp) (Conv2d's (D,C,Kp,Kp) flattened), patch_embed.bias (D), cls_token (D),
 *   pos_embed (T,D), per block i: blocks.i.norm1.{weight,bias} (D), blocks.i.attn.{q,k,v,o}_proj.{weight
 *   (D,D), bias (D)}, blocks.i.norm2.{weight,bias}, blocks.i.mlp.fc1.{weight (F,D), bias (F)},
 *   blocks.i.mlp.fc2.{weight (D,F), bias (D)}; norm.{weight,bias} (D), head.{weight (K,D), bias (K)}.
 * init: patch embedding as Conv2d's default, cls and positions trunc-normal 0.02, attention as attn_mha's,
 * fc1/fc2/head Xavier-uniform with zero biases, layer norms (1, 0).
 *
 * Training splits each batch into n_shards (attn_vit_set_shards) fixed parts that run on up to that many threads with
 * their own gradients, summed in shard order: the result does not depend on the thread count.
 * Memory: the slab (2·n_params floats), plus per shard the activations of max_batch/n_shards images.
 */
#ifndef ATTN_VIT_H
#define ATTN_VIT_H

#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_VIT_MAX_BLOCKS 16
#define ATTN_VIT_SHARDS 2

typedef struct attn_vit_config {
    int image, channels, patch;  /* I, C, P */
    int dim, heads, blocks, mlp; /* D, H, L, F */
    int classes;                 /* K */
    int max_batch;               /* the largest B a call takes */
    attn_dtype compute;          /* every attention's compute: F32 (0) or BF16 (the products in bf16 where the
                                    path has bf16 units; weights, activations and accumulation fp32); saved */
    int patch_kernel;            /* the patch embedding's kernel K: 0 or P for none (patches side by side, the
                                    plain ViT); K > P, K - P even, K <= 3P: overlapping windows of K x K around
                                    the same Np patches (attn_patch_embed_bind_kernel); saved when K != P */
} attn_vit_config;

/* 28, 1, 7; 128, 4, 4, 256; 10; 128: `attn vision train`'s defaults (earlier patch 4, dim 64 and MLP 128;
 * checkpoints keep their config, so those still load). */
void attn_vit_config_default(attn_vit_config *c);

typedef struct attn_vit_block {
    attn_layernorm ln1, ln2;
    attn_mha attn;
    float *w1, *b1, *w2, *b2;    /* (F,D) (F) (D,F) (D) */
    float *dw1, *db1, *dw2, *db2;/* gradients, or NULL */
} attn_vit_block;

typedef struct attn_vit {
    attn_vit_config cfg;
    int T;                       /* tokens: patches + 1 */
    attn_ctx ctx;                /* the path and threads every call runs with */
    float *params, *grads;       /* the slab: n_params each */
    size_t n_params;
    attn_patch_embed patch;
    attn_cls_pos tok;
    attn_vit_block blk[ATTN_VIT_MAX_BLOCKS];
    attn_layernorm norm;
    float *head_w, *head_b, *dhead_w, *dhead_b;   /* (K,D) (K) */
    float *acts;                 /* activations and layer caches for max_batch images, one allocation */
    size_t acts_bytes;
    struct attn_vit *shards;     /* the training shards: the model's parameters, own gradients and acts */
    int n_shards;
    float label_smoothing;       /* the training loss's eps in [0, 1) (0 after init and load: plain cross-entropy;
                                    attn_softmax_xent_smooth_forward's otherwise); a setting of the run, not saved */
} attn_vit;

/* Checks a configuration: every size >= 1, I % P == 0, D % H == 0, L <= ATTN_VIT_MAX_BLOCKS, patch_kernel 0
 * or P <= K <= 3P with K - P even. ATTN_ERR_SIZE, ATTN_ERR_SHAPE otherwise. */
attn_status attn_vit_config_check(const attn_vit_config *c);

/* Allocates and initializes from seed. ctx (NULL: the default context now) is copied into the model. */
attn_status attn_vit_init(attn_vit *m, const attn_ctx *ctx, const attn_vit_config *cfg, uint64_t seed);
void        attn_vit_free(attn_vit *m);

/* Inference on B <= max_batch images (B,C,I,I): logits (B,K) written. weights (L,B,H,T,T) or NULL: every
 * block's attention weights (from attn_sdpa_forward). */
attn_status attn_vit_forward(attn_vit *m, float *logits, float *weights, const float *images, int B);

/* One training step on a batch: zero the gradients, forward and backward on the shards (mean
 * cross-entropy over the B images, with m->label_smoothing; outside [0, 1): ATTN_ERR_ARG), clip the global gradient norm to clip (<= 0: no clipping), one
 * opt step. *loss (or NULL) = the batch's mean loss, *correct (or NULL) = images whose largest logit is
 * their label. labels (B) in [0,K). */
attn_status attn_vit_train_step(attn_vit *m, attn_adam *opt, const float *images, const int32_t *labels, int B,
                                float clip, float *loss, int *correct);

/* Cuts every batch into n fixed shards (1 .. ATTN_MAX_SHARDS; ATTN_VIT_SHARDS after init and load), as
 * attn_seq2seq_set_shards. */
attn_status attn_vit_set_shards(attn_vit *m, int n);

/* Data parallel: the same step, but this process computes only shards [first, first + count) of the
 * batch (every process passes the whole batch) and combine (attn/layers.h) adds every process's shard
 * gradients in shard order, then the same clip and opt step; count 0 is attn_vit_train_step. Every process
 * must call with the same batch, clip and optimizer state: the parameters then stay bitwise those of one
 * process taking the whole step. *loss is the batch's mean loss (from combine's sum); *correct counts this
 * process's shards only. */
attn_status attn_vit_train_step_part(attn_vit *m, attn_adam *opt, const float *images, const int32_t *labels, int B,
                                     float clip, int first, int count, attn_shard_combine_fn combine, void *user,
                                     float *loss, int *correct);

/* The same forward and backward without the update: *loss the mean loss; the gradients (m->grads) of it. */
attn_status attn_vit_loss_grad(attn_vit *m, const float *images, const int32_t *labels, int B, float *loss);

/* Attention rollout (Abnar & Zuidema 2020) from every block's weights (L,H,T,T) of one image: per block,
 * A = 0.5·(mean over heads) + 0.5·I, rows renormalized, multiplied from the first block to the last.
 * rollout (T) gets the class token's row of the product. */
attn_status attn_vit_rollout(float *rollout, const float *weights, int L, int H, int T);

/* Checkpoint (safetensors, written atomically): every parameter under its name, the config in the metadata
 * (model = "vit"); with opt (or NULL) the optimizer's moments (optimizer.m, optimizer.v, (n_params)) and
 * step (metadata optimizer_t); and n_extra (<= 32) more metadata pairs of the caller's (its run).
 * load allocates m for max_batch images and checks every tensor's shape and finiteness; with opt non-NULL
 * it also allocates *opt with the saved moments and step (lr and betas are the caller's to set), and a
 * checkpoint without them is ATTN_ERR_FORMAT. */
attn_status attn_vit_save(const attn_vit *m, const attn_adam *opt, const char *const *keys, const char *const *vals,
                          int n_extra, const char *path, char *err, size_t err_size);
attn_status attn_vit_load(attn_vit *m, attn_adam *opt, const attn_ctx *ctx, const char *path, int max_batch,
                          char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_VIT_H */
