/*
 * attn/caption.h — image → text: a strip of items side by side (Fashion-MNIST's, 28×84 for three) captioned
 * with their class names in order ("sneaker bag shirt"). A ViT-style patch encoder (attn/layers.h's patch
 * embedding, learned positions, encoder blocks) and a Transformer decoder (attn/transformer.h's decoder
 * blocks: masked self-attention, cross-attention over the image patches, feed-forward) with a linear head
 * over the words. Includes transformer.h.
 *
 *     attn_caption m;
 *     attn_caption_config c;
 *     attn_caption_config_default(&c);              // 28x84, patch 7, 3 items, 10 classes, dim 64, 4 heads
 *     attn_caption_init(&m, NULL, &c, seed);
 *     attn_caption_train_step(&m, &opt, strips, words, B, 1.0f, &loss);       // teacher forcing
 *     attn_caption_generate(&m, out, n_out, cross, strips, B);                // greedy, key/value cache
 *
 * Sizes: B strips of (R, W) floats (already normalized), P the patch size, Np = (R/P)·(W/P) patches in
 * row-major order of the grid, N items (W % N == 0, each item W/N columns, (W/N) % P == 0: a patch never
 * straddles two items), K classes; the words are the class ids 0..K-1, then <bos> = K and <eos> = K+1
 * (V = K+2); the decoder reads T = N+1 positions (<bos> w1 .. wN) and is trained to write w1 .. wN <eos>.
 *
 *   enc   = encoder_blocks(patch_embed(strip) + pos_embed)                    (B,Np,D)
 *   dec   = decoder_blocks(embedding(words) + dec_pos, enc)                    (B,T,D)
 *   logits = head(dec)                                                          (B,T,V)
 *
 * Every attention runs through attn_sdpa_* (the Transformer blocks). No dropout.
 *
 * Parameters live in one slab, in this order (the checkpoint's names): patch_embed.weight (D,P·P),
 * patch_embed.bias (D), pos_embed (Np,D), encoder.blocks.{i} (one flat tensor each, attn_tf_block's order),
 * embedding.weight (V,D), dec_pos (T,D), decoder.blocks.{i}, head.weight (V,D), head.bias (V).
 * init: patch embedding as Conv2d's default, positions N(0, 0.02²), blocks as attn_tf_block_init_weights,
 * embedding N(0,1), head Xavier-uniform with a zero bias.
 */
#ifndef ATTN_CAPTION_H
#define ATTN_CAPTION_H

#include "transformer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_CAPTION_MAX_BLOCKS 8
#define ATTN_CAPTION_MAX_ITEMS 16
/* the fixed parts of a batch for data-parallel training (attn_caption_train_step_part) */
#define ATTN_CAPTION_SHARDS 2

typedef struct attn_caption_config {
    int rows, cols, patch;       /* R, W, P */
    int items, classes;          /* N, K */
    int dim, heads, ffn;         /* D, H, F */
    int enc_blocks, dec_blocks;  /* encoder and decoder blocks (>= 0 and >= 1) */
    int max_batch;               /* the largest B a call takes */
} attn_caption_config;

/* 28, 84, 7; 3, 10; 64, 4, 128; 1, 2; 128. */
void attn_caption_config_default(attn_caption_config *c);
/* Every size >= 1 (enc_blocks >= 0), R % P == 0, W % N == 0, (W/N) % P == 0, D % H == 0, blocks at most
 * ATTN_CAPTION_MAX_BLOCKS, N at most ATTN_CAPTION_MAX_ITEMS: ATTN_ERR_SIZE or ATTN_ERR_SHAPE otherwise. */
attn_status attn_caption_config_check(const attn_caption_config *c);

typedef struct attn_caption {
    attn_caption_config cfg;
    int Np, T, V;                /* patches, decoder positions (N+1), words (K+2) */
    attn_ctx ctx;
    float *params, *grads;       /* the slab: n_params each */
    size_t n_params;
    attn_patch_embed patch;
    float *pos, *dpos;           /* (Np,D) */
    attn_tf_block enc[ATTN_CAPTION_MAX_BLOCKS], dec[ATTN_CAPTION_MAX_BLOCKS];
    float *emb, *demb;           /* (V,D) */
    float *dec_pos, *ddec_pos;   /* (T,D) */
    float *head_w, *head_b, *dhead_w, *dhead_b;   /* (V,D) (V) */
    float *acts;                 /* activations, block caches and decoding scratch for max_batch strips */
    size_t acts_floats;
    float *shard_grads;          /* n_shards gradients of n_params, made by the first _part step */
    int n_shards;                /* the parts of a batch in _part steps; 0: ATTN_CAPTION_SHARDS */
} attn_caption;

attn_status attn_caption_init(attn_caption *m, const attn_ctx *ctx, const attn_caption_config *cfg, uint64_t seed);
void        attn_caption_free(attn_caption *m);

/* Teacher-forced loss of a batch and its gradient (m->grads overwritten): strips (B,R,W), words (B,N) in
 * [0,K). *loss = the mean cross-entropy over the B·T predicted words (<eos> included). */
attn_status attn_caption_loss_grad(attn_caption *m, const float *strips, const int32_t *words, int B, float *loss);

/* loss_grad, then clip the global gradient norm to clip (<= 0: none) and one opt step. */
attn_status attn_caption_train_step(attn_caption *m, attn_adam *opt, const float *strips, const int32_t *words, int B,
                                    float clip, float *loss);

/* The parts a batch is cut into by attn_caption_train_step_part (1 .. ATTN_MAX_SHARDS; ATTN_CAPTION_SHARDS
 * after init and load). The bits of a step depend on it, never on how its shards are split among processes. */
attn_status attn_caption_set_shards(attn_caption *m, int n);

/* The step in fixed shards, for data parallelism: the batch is cut into n_shards parts of
 * ceil(B / shards) strips, run one after another; this process computes shards [first, first + count)
 * (every process passes the whole batch) and combine (attn/layers.h) adds every process's shard gradients
 * in shard order, then the same clip and opt step. combine NULL with first 0 and count
 * n_shards: every shard here, added in shard order. A shard's gradient is that of its part of
 * the batch's mean loss (its row losses over B·T), so the sum is the batch's gradient, and the result is
 * bitwise the same for any split of the shards among processes (not the bits of attn_caption_train_step,
 * which runs the batch at once). count 0 is attn_caption_train_step. The first call allocates the shards'
 * gradients (ATTN_ERR_NOMEM). */
attn_status attn_caption_train_step_part(attn_caption *m, attn_adam *opt, const float *strips, const int32_t *words,
                                         int B, float clip, int first, int count, attn_shard_combine_fn combine,
                                         void *user, float *loss);

/* Greedy decoding with the key/value cache of every decoder block: out (B,N) the words written before <eos>
 * (at most N; the rest -1), n_out (B) their number. cross (B,N,H,Np) or NULL: for each written word, the
 * last decoder block's cross-attention weights per head over the patches (rows of words not written are
 * zero). */
attn_status attn_caption_generate(attn_caption *m, int32_t *out, int *n_out, float *cross, const float *strips,
                                  int B);

/* The share of attention on item `item` of a strip: w (H,Np) one word's weights per head over a
 * (grid_rows, grid_cols) patch grid, items side by side (grid_cols % items == 0); the mean over heads of
 * the weight on the patches of columns [item·grid_cols/items, (item+1)·grid_cols/items). -1 on bad sizes. */
float attn_caption_item_share(const float *w, int H, int grid_rows, int grid_cols, int items, int item);

/* A strip of n items (rows, cols_each) grey levels 0..255 side by side: x (rows, n·cols_each) written as
 * (v/255 - mean) / std. */
attn_status attn_caption_strip(float *x, const uint8_t *const *items, int n, int rows, int cols_each, float mean,
                               float std);

/* Checkpoint (safetensors, atomic): the tensors under their names, the config in the metadata (model =
 * "caption"), with opt (or NULL) its moments and step, and n_extra (<= 32) more metadata pairs of the
 * caller's. load allocates m for max_batch strips and checks the shapes; with opt non-NULL it allocates
 * *opt with the saved moments (ATTN_ERR_FORMAT when the file has none). */
attn_status attn_caption_save(const attn_caption *m, const attn_adam *opt, const char *const *keys,
                              const char *const *vals, int n_extra, const char *path, char *err, size_t err_size);
attn_status attn_caption_load(attn_caption *m, attn_adam *opt, const attn_ctx *ctx, const char *path, int max_batch,
                              char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_CAPTION_H */
