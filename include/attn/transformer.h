/*
 * attn/transformer.h — the Transformer encoder–decoder (the d2l book's chapter on the Transformer):
 * encoder and decoder blocks built on multi-head scaled dot-product attention, and the translator that
 * stacks them, trained with the English→French pipeline of attn/data.h (pairs, vocabularies, BLEU). Its
 * layers (positional encoding, position-wise feed-forward, add & norm) are in attn/layers.h; this header
 * includes layers.h and data.h.
 *
 *     attn_transformer m;
 *     attn_transformer_config c = {src.n, tgt.n, 32, 64, 4, 2, 0.1f, 10, 64};  // hidden, ffn, heads, blocks
 *     attn_transformer_init(&m, &c, seed);
 *     attn_transformer_train_epoch(&m, &opt, &rng, X, X_len, Y, Y_len, N, 64, 1.0f, &seed, &loss, &tok);
 *     attn_transformer_translate(&m, out, &n_out, weights, NULL, src, src_len, 1);  // greedy, K/V cache
 *
 * Sizes: B batch, T target (query) length, S source length, D hidden (model width), F feed-forward
 * hidden, H heads (D % H == 0). Tensors are batch-major (B,T,D).
 *
 * The attention has no biases, as d2l's MultiHeadAttention(bias=False): Q = X Wqᵀ, K = Y Wkᵀ, V = Y Wvᵀ,
 * head h reads columns [h·D/H, (h+1)·D/H), scale 1/sqrt(D/H), dropout on the weights, out = ctx Woᵀ.
 * attn_mha is not used: it always carries biases, which would have to be held at zero and would change
 * the checkpoint's tensors (d2l's state_dict has none). The blocks
 * project with attn_linear_* and attend with attn_sdpa_forward/backward on the model's context (the
 * kernels' small-head path takes the book's heads of 8 over 10 positions), saving the row statistics for the
 * backward. Greedy decoding with the key/value cache attends with attn_sdpa_forward too.
 * Limits: T, S <= ATTN_TF_MAX_LEN (1024).
 */
#ifndef ATTN_TRANSFORMER_H
#define ATTN_TRANSFORMER_H

#include "layers.h"
#include "data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------
 * Blocks (post-norm, as d2l):
 *   encoder  Y = addnorm(X, selfattn(X, masked by the source lengths));   out = addnorm(Y, ffn(Y))
 *   decoder  Y = addnorm(X, selfattn(X, causal));  Z = addnorm(Y, crossattn(Y, enc, masked by the source
 *            lengths));  out = addnorm(Z, ffn(Z))
 * A block's parameters are views into a caller's slab, in d2l's state_dict order:
 *   encoder  attention.W_q W_k W_v W_o (D,D), addnorm1.ln weight bias (D), ffn.dense1 weight (F,D) bias
 *            (F), ffn.dense2 weight (D,F) bias (D), addnorm2.ln weight bias
 *   decoder  attention1.W_q..W_o, addnorm1.ln, attention2.W_q..W_o, addnorm2.ln, ffn.dense1, ffn.dense2,
 *            addnorm3.ln
 * The lifecycle is every layer's (attn/layers.h): _n_params, _bind(params, grads) (views into the caller's
 * slabs, grads NULL for inference), _init_weights(rng), _cache_bytes.
 */
typedef struct attn_tf_block_tensors {
    float *wq, *wk, *wv, *wo;    /* (D,D) self-attention */
    float *ln1_g, *ln1_b;        /* (D) after the self-attention */
    float *xwq, *xwk, *xwv, *xwo;/* (D,D) cross-attention (decoder; NULL in an encoder block) */
    float *ln2_g, *ln2_b;        /* (D) after the cross-attention (decoder; NULL in an encoder block) */
    float *w1, *b1, *w2, *b2;    /* (F,D) (F) (D,F) (D) feed-forward */
    float *ln3_g, *ln3_b;        /* (D) after the feed-forward */
} attn_tf_block_tensors;

typedef struct attn_tf_block {
    int D, F, H, decoder;
    int full_self;               /* decoder only: 1 lets every position attend to every other in the self-
                                    attention (DETR's object queries) instead of causally; 0 after bind. The
                                    cached step (attn_tf_block_step) is causal whatever it says */
    float dropout;               /* attention weights and every add & norm, in [0,1) */
    attn_tf_block_tensors w;     /* the parameters: views into params */
    attn_tf_block_tensors g;     /* their gradients: views into grads at the same offsets (NULL without) */
    float *params, *grads;       /* the slabs bound */
    size_t n_params;
    attn_dtype compute;          /* its attentions' compute: F32 after bind; BF16 lets a path with bf16 units
                                    take the products in bf16 (fp32 tensors and accumulation; attn_sdpa_desc).
                                    Set it before asking for the cache bytes: the workspace depends on it */
} attn_tf_block;

/* Floats of parameters of one block. */
size_t      attn_tf_block_n_params(int D, int F, int decoder);
/* Points b's views at params and grads (attn_tf_block_n_params floats each; grads may be NULL for
 * inference). ATTN_ERR_SHAPE when D % H != 0. */
attn_status attn_tf_block_bind(attn_tf_block *b, int D, int F, int H, int decoder, float dropout, float *params,
                               float *grads);
/* Sets the LayerNorms to (1, 0), every weight matrix Xavier-uniform and the feed-forward biases
 * U(±1/sqrt(fan_in)), as d2l's xavier_init_weights leaves them. */
attn_status attn_tf_block_init_weights(attn_tf_block *b, attn_rng *r);   /* ATTN_ERR_ARG when not bound */

/* Bytes of cache one forward + backward over (B,T) queries and (B,S) source positions needs with context
 * ctx (saved activations, the attention's workspace and backward scratch). T, S <= ATTN_TF_MAX_LEN. */
attn_status attn_tf_block_cache_bytes(const attn_ctx *ctx, const attn_tf_block *b, int B, int T, int S,
                                      size_t *bytes);

/* Forward. y (B,T,D) written; x (B,T,D); enc (B,S,D) the encoder's output (decoder only, else NULL);
 * src_lens (B) the source valid lengths (the encoder's self-attention mask and the decoder's
 * cross-attention mask). An encoder block needs S == T. cross_weights (B,H,T,S) or NULL: the decoder's
 * cross-attention weights (written by the fused kernels' weights stage). train nonzero applies
 * dropout, its masks a function of seed. */
attn_status attn_tf_block_forward(const attn_ctx *ctx, const attn_tf_block *b, void *cache, size_t cache_bytes,
                                  float *y, float *cross_weights,
                                  const float *x, const float *enc, const int32_t *src_lens,
                                  int B, int T, int S, int train, uint64_t seed);
/* The same forward, also writing the self-attention's weights self_weights (B,H,T,T) (NULL: not asked). */
attn_status attn_tf_block_forward_weights(const attn_ctx *ctx, const attn_tf_block *b, void *cache,
                                          size_t cache_bytes, float *y, float *self_weights, float *cross_weights,
                                          const float *x, const float *enc, const int32_t *src_lens,
                                          int B, int T, int S, int train, uint64_t seed);
/* Backward of the forward that filled cache (same inputs, sizes, train and seed). Accumulates into dx
 * (B,T,D) and denc (B,S,D) (each may be NULL) and into b's gradient slab (ATTN_ERR_NULL without one). */
attn_status attn_tf_block_backward(const attn_ctx *ctx, const attn_tf_block *b, void *cache,
                                   size_t cache_bytes, float *dx, float *denc, const float *dy,
                                   const float *x, const float *enc, const int32_t *src_lens,
                                   int B, int T, int S, int train, uint64_t seed);

/* One step of greedy decoding through decoder block b with a key/value cache (what the translator's
 * decoding runs; the captioner's too). kc, vc (Tmax,D): the self-attention's projected keys and values of
 * positions 0..t-1, this step writes row t; ek, ev (S,D): the encoder output projected by b's xwk, xwv
 * (once per source); x (D) the step's input, y (D) written. cross_weights (H,S) or NULL: the step's
 * cross-attention weights. src_len (1): the valid source length. scratch and work are sized by
 * attn_tf_block_step_sizes (floats of scratch, bytes of attn_sdpa workspace for ctx). */
attn_status attn_tf_block_step_sizes(const attn_ctx *ctx, const attn_tf_block *b, int Tmax, int S,
                                     size_t *scratch_floats, size_t *work_bytes);
attn_status attn_tf_block_step(const attn_ctx *ctx, const attn_tf_block *b, float *kc, float *vc, const float *ek,
                               const float *ev, int Tmax, int S, int t, float *y, float *cross_weights,
                               const float *x, const int32_t *src_len, float *scratch, void *work,
                               size_t work_bytes);

/* ---------------------------------------------------------------------------------------------------
 * The translator: embedding · sqrt(D) + positional encoding → encoder blocks; decoder: embedding ·
 * sqrt(D) + positional encoding → decoder blocks → dense to the target vocabulary. Parameters in one
 * slab, in d2l's state_dict order (the checkpoint names): encoder.embedding.weight (Vs,D),
 * encoder.blks.block{i}.*, decoder.embedding.weight (Vt,D), decoder.blks.block{i}.*,
 * decoder.dense.weight (Vt,D), decoder.dense.bias (Vt). Embeddings N(0,1), dense bias U(±1/sqrt(D)),
 * the rest as attn_tf_block_init_weights.
 */
#define ATTN_TF_MAX_BLOCKS 16
#define ATTN_TF_MAX_LEN 1024      /* longest T and S a block takes */
#define ATTN_TF_SHARDS 2

typedef struct attn_transformer_config {
    int src_vocab, tgt_vocab;    /* Vs, Vt */
    int hidden, ffn, heads, blocks;  /* D, F, H, L */
    float dropout;
    int num_steps;               /* T: source and target length */
    int max_batch;
    attn_dtype compute;          /* every attention's compute: F32 (0) or BF16 (the products in bf16 where the
                                    path has bf16 units; weights, activations and accumulation fp32) */
} attn_transformer_config;

typedef struct attn_transformer {
    attn_transformer_config cfg;
    attn_ctx ctx;                /* the path and threads every call runs with */
    float *params, *grads;       /* the slab: n_params each */
    size_t n_params;
    float *enc_emb, *dec_emb, *dense_w, *dense_b;          /* views */
    float *d_enc_emb, *d_dec_emb, *d_dense_w, *d_dense_b;
    attn_tf_block enc[ATTN_TF_MAX_BLOCKS], dec[ATTN_TF_MAX_BLOCKS];      /* parameters and gradients */
    float *pos;                  /* (T,D) positional encoding */
    float *acts;                 /* activations, block caches and scratch for max_batch, one allocation */
    size_t acts_floats;
    struct attn_transformer *shards;  /* as attn_seq2seq: fixed parts of every batch, own gradients and
                                       * activations, summed in order: results independent of threads */
    int n_shards;
} attn_transformer;

/* Allocates and initializes from seed. ctx (NULL: the default context now) is copied into the model and
 * runs every call on it; the training shards run with its path on one thread each. */
attn_status attn_transformer_init(attn_transformer *m, const attn_ctx *ctx, const attn_transformer_config *cfg,
                                  uint64_t seed);
void        attn_transformer_free(attn_transformer *m);

/* One teacher-forced pass, as attn_seq2seq_step: X, Y (B,T), X_len, Y_len (B);
 * *loss = Σ_b Σ_{t < Y_len[b]} CE(b,t) / T; backward nonzero accumulates its gradient into m->grads. */
attn_status attn_transformer_step(attn_transformer *m, float *loss,
                                  const int32_t *X, const int32_t *X_len, const int32_t *Y,
                                  const int32_t *Y_len, int B, int train, int backward, uint64_t seed);

/* Greedy decoding of one source (T ids, valid length): out (T) gets the ids before <eos>, *n_out their
 * number. use_cache nonzero keeps every decoder block's projected keys and values, so a step computes
 * only the new position's projections; 0 reruns the decoder over the whole prefix at each step (the
 * check). Positions are the step's own (d2l's predict adds position 0's encoding at every step; this
 * uses the positions training saw). weights (L,H,T,T) or NULL: [l][h][i] the cross-attention of decoder
 * block l, head h at output step i over the source (rows past *n_out + 1 zeroed). logits (T,Vt) or NULL:
 * each step's output scores (rows past the last step zeroed). */
attn_status attn_transformer_translate(attn_transformer *m, int32_t *out, int *n_out, float *weights,
                                       float *logits, const int32_t *src, int src_len, int use_cache);

/* Every attention the model pays while it reads src (T ids, valid length src_len) and writes out (n_out ids,
 * e.g. attn_transformer_translate's): the decoder runs once over <bos> and out but its last token, Tq =
 * min(n_out + 1, T) positions, causally masked, so its rows are those of greedy decoding step by step.
 * Each buffer may be NULL:
 *   enc_self  (L,H,T,T)   encoder block l's self-attention (keys past src_len weigh nothing)
 *   dec_self  (L,H,Tq,Tq) decoder block l's self-attention (row i sees positions 0..i)
 *   cross     (L,H,Tq,T)  decoder block l's attention over the source
 * Weights come from attn_sdpa_forward with a weights pointer (the fused kernels when they write them). */
attn_status attn_transformer_attention(attn_transformer *m, float *enc_self, float *dec_self, float *cross,
                                       const int32_t *src, int src_len, const int32_t *out, int n_out);

/* As attn_seq2seq_set_shards (ATTN_TF_SHARDS after init and load). */
attn_status attn_transformer_set_shards(attn_transformer *m, int n);

/* One epoch, as attn_seq2seq_train_epoch (shuffle from rng, per batch: zero, sharded step, clip, Adam). */
attn_status attn_transformer_train_epoch(attn_transformer *m, attn_adam *opt, attn_rng *rng,
                                         const int32_t *X, const int32_t *X_len,
                                         const int32_t *Y, const int32_t *Y_len, int N, int batch,
                                         float clip, uint64_t *seed, double *loss_sum, int64_t *tokens);

/* Data parallel, as attn_seq2seq_train_epoch_part. */
attn_status attn_transformer_train_epoch_part(attn_transformer *m, attn_adam *opt, attn_rng *rng,
                                              const int32_t *X, const int32_t *X_len,
                                              const int32_t *Y, const int32_t *Y_len, int N, int batch,
                                              float clip, uint64_t *seed, double *loss_sum, int64_t *tokens,
                                              int first, int count, attn_shard_combine_fn combine, void *user);

/* One optimizer step on a gathered batch, as attn_seq2seq_train_step_part. */
attn_status attn_transformer_train_step_part(attn_transformer *m, attn_adam *opt, const int32_t *X,
                                             const int32_t *X_len, const int32_t *Y, const int32_t *Y_len, int B,
                                             float clip, uint64_t *seed, int first, int count,
                                             attn_shard_combine_fn combine, void *user, float *loss);

/* Checkpoint: every parameter under its d2l state_dict name, the config in the metadata
 * (model = "transformer"). Atomic. */
attn_status attn_transformer_save(const attn_transformer *m, const char *path, char *err, size_t err_size);
attn_status attn_transformer_load(attn_transformer *m, const attn_ctx *ctx, const char *path, int max_batch, char *err,
                                  size_t err_size);
/* A training checkpoint with the optimizer and the caller's metadata, as attn_seq2seq_save_train and
 * attn_seq2seq_load_train. */
attn_status attn_transformer_save_train(const attn_transformer *m, const attn_adam *opt, const char *const *keys,
                                        const char *const *vals, int n_extra, const char *path, char *err,
                                        size_t err_size);
attn_status attn_transformer_load_train(attn_transformer *m, attn_adam *opt, const attn_ctx *ctx, const char *path,
                                        int max_batch, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_TRANSFORMER_H */
