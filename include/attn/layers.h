/*
 * attn/layers.h — every layer around the mechanisms, and what training needs: RNG, linear, embedding,
 * dropout, layer norm, mean over time, softmax cross-entropy, Adam, gradient clipping, multi-head
 * attention, one-kernel self-attention, GRU, positional encoding, position-wise feed-forward, add & norm,
 * and the Vision Transformer's: GELU, patch embedding, class token with learned positions, AdamW's
 * decoupled weight decay and the warm-up + cosine schedule. Includes attn.h.
 *
 * Style (after llm.c): forward / backward are free functions whose arguments go outputs, inputs, then
 * sizes. Backward calls accumulate (+=) into every gradient, input gradients included; a NULL input
 * gradient is skipped. Weight matrices use PyTorch's layout (out, in), so checkpoints read the same in
 * both. Plain matrix products go through CBLAS.
 *
 * One lifecycle for every layer with parameters (docs/DESIGN.md, "Layers"):
 *
 *     size_t n = attn_<layer>_n_params(sizes...);                    // floats of parameters
 *     attn_<layer>_bind(&l, sizes..., params, grads);                // views into the caller's slabs
 *     attn_<layer>_init_weights(&l, &rng);                           // fills the weights from rng
 *     attn_<layer>_cache_bytes([ctx,] &l, batch sizes..., &bytes);   // BYTES one forward + backward needs
 *     attn_<layer>_forward([ctx,] &l, cache, bytes, outputs..., inputs..., batch sizes...);
 *     attn_<layer>_backward([ctx,] &l, cache, bytes, input grads..., output grads..., inputs..., ...);
 *
 *   - Layers never allocate. params and grads are slabs the caller owns (a model carves every layer from
 *     one slab: one Adam, one clipping pass, one checkpoint); bind only points the layer's named arrays
 *     into them, in PyTorch's state_dict order. grads may be NULL (inference): backward is then
 *     ATTN_ERR_NULL. The struct records what bind was given (params, grads, n_params).
 *   - init_weights is the only "init": it fills the weights (gradients untouched) from the caller's
 *     generator, drawing in a fixed order, so a model seeded the same way gets the same weights.
 *   - The cache holds what the forward saves for the backward and the backward's scratch. It is any
 *     pointer (the layer aligns it to 64 bytes inside the size asked for) and valid from a forward until
 *     the next forward with it. Sizes are always bytes.
 *   - Layers whose passes run attention kernels or per-ISA loops (multi-head, self-attention, GRU) take
 *     an attn_ctx first (NULL: the default context); a cache size asked for with a context is valid for
 *     the calls made with that context.
 */
#ifndef ATTN_LAYERS_H
#define ATTN_LAYERS_H

#include "../attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------
 * Seeded random numbers (PCG32): the same seed gives the same run. Dropout does not use this stream:
 * its masks are a pure hash of (seed, index), so backward regenerates them.
 */
typedef struct attn_rng {
    uint64_t state;
    uint64_t inc;
} attn_rng;

void     attn_rng_seed(attn_rng *r, uint64_t seed);
uint32_t attn_rng_u32(attn_rng *r);
float    attn_rng_uniform(attn_rng *r);                     /* [0, 1) */
float    attn_rng_normal(attn_rng *r);                      /* mean 0, variance 1 */
void     attn_rng_fill_uniform(attn_rng *r, float *x, size_t n, float lo, float hi);
void     attn_rng_shuffle(attn_rng *r, int32_t *idx, size_t n);  /* Fisher–Yates */

/* 1 when element i of a dropout with probability p and this seed is kept, else 0 (stateless). */
int attn_dropout_keep(uint64_t seed, uint64_t i, float p);

/* ---------------------------------------------------------------------------------------------------
 * Linear: y = x Wᵀ + b.
 *   y (N,out)  x (N,in)  w (out,in)  b (out) or NULL
 */
attn_status attn_linear_forward(float *y, const float *x, const float *w, const float *b,
                                int N, int in, int out);
/* dx (N,in) or NULL, dw (out,in), db (out) or NULL; dy (N,out) */
attn_status attn_linear_backward(float *dx, float *dw, float *db,
                                 const float *dy, const float *x, const float *w,
                                 int N, int in, int out);

/* Embedding: y[n] = table[ids[n]].   y (N,D)  ids (N) in [0,V)  table (V,D). An id out of range is
 * ATTN_ERR_ARG. */
attn_status attn_embedding_forward(float *y, const int32_t *ids, const float *table, int N, int V, int D);
attn_status attn_embedding_backward(float *dtable, const float *dy, const int32_t *ids, int N, int V, int D);

/* Inverted dropout on n elements: y = x · keep / (1 - p), keep = attn_dropout_keep(seed, i, p).
 * y may equal x. p in [0,1). */
attn_status attn_dropout_forward(float *y, const float *x, size_t n, float p, uint64_t seed);
attn_status attn_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed);

/* LayerNorm over the last axis: y = (x - mean) / sqrt(var + eps) · gamma + beta, per row of C.
 * Parameters: weight gamma (C), bias beta (C) (nn.LayerNorm's order). init_weights sets gamma 1, beta 0
 * and draws nothing (rng may be NULL). The cache keeps each row's mean and 1/std. */
typedef struct attn_layernorm {
    int C;
    float eps;                   /* 1e-5 after bind (PyTorch's default); change it before a forward */
    float *gamma, *beta;         /* (C) (C) */
    float *dgamma, *dbeta;       /* gradients, same shapes, or NULL */
    float *params, *grads;       /* what bind was given: n_params floats each */
    size_t n_params;
} attn_layernorm;

size_t      attn_layernorm_n_params(int C);
attn_status attn_layernorm_bind(attn_layernorm *l, int C, float *params, float *grads);
attn_status attn_layernorm_init_weights(attn_layernorm *l, attn_rng *rng);
attn_status attn_layernorm_cache_bytes(const attn_layernorm *l, int N, size_t *bytes);
/*   y (N,C) written;  x (N,C) */
attn_status attn_layernorm_forward(const attn_layernorm *l, void *cache, size_t cache_bytes,
                                   float *y, const float *x, int N);
/*   dx (N,C) += (or NULL);  dy (N,C);  x (N,C) the forward's input */
attn_status attn_layernorm_backward(const attn_layernorm *l, void *cache, size_t cache_bytes,
                                    float *dx, const float *dy, const float *x, int N);

/* Mean over time (global average pooling).  y (B,C)  x (B,T,C) */
attn_status attn_mean_time_forward(float *y, const float *x, int B, int T, int C);
attn_status attn_mean_time_backward(float *dx, const float *dy, int B, int T, int C);

/* Softmax cross-entropy per row, with an optional per-row weight (0 masks padding out).
 *   losses (N) written: -log softmax(logits)[target] · weight;  probs (N,C) written (saved for backward)
 *   logits (N,C)  targets (N) in [0,C)  weights (N) or NULL (all 1) */
attn_status attn_softmax_xent_forward(float *losses, float *probs,
                                      const float *logits, const int32_t *targets, const float *weights,
                                      int N, int C);
/* dlogits (N,C) += dlosses[n] · weight[n] · (probs[n] - onehot(target[n])) */
attn_status attn_softmax_xent_backward(float *dlogits, const float *dlosses,
                                       const float *probs, const int32_t *targets, const float *weights,
                                       int N, int C);

/* The same with label smoothing eps in [0, 1) (PyTorch's CrossEntropyLoss(label_smoothing=eps)): the target
 * is (1-eps)·onehot + eps/C, so
 *   losses (N) written: (1-eps)·(-log p[target]) + eps·mean_c(-log p[c]);  probs (N,C) written
 * backward: dlogits (N,C) += dlosses[n] · (probs[n] - (1-eps)·onehot(target[n]) - eps/C).
 * eps outside [0, 1) or NaN: ATTN_ERR_ARG. eps 0 is the loss above (not the same bits: the callers of the
 * plain loss call that one). */
attn_status attn_softmax_xent_smooth_forward(float *losses, float *probs, const float *logits, const int32_t *targets,
                                             float eps, int N, int C);
attn_status attn_softmax_xent_smooth_backward(float *dlogits, const float *dlosses, const float *probs,
                                              const int32_t *targets, float eps, int N, int C);

/* ---------------------------------------------------------------------------------------------------
 * Optimizer and gradient clipping.
 *
 * Adam, updating every parameter every step (dense, as Keras does). Step t counts from 1.
 *   lr_t = lr / (1 + decay · (t - 1))                          (Keras' time decay; decay 0 = none)
 *   m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²
 *   keras_eps: p -= lr_t · sqrt(1-β2^t)/(1-β1^t) · m / (sqrt(v) + eps)          (Keras / TF)
 *   else:      p -= lr_t / (1-β1^t) · m / (sqrt(v / (1-β2^t)) + eps)            (PyTorch)
 */
typedef struct attn_adam {
    size_t n;                    /* number of parameters */
    float lr, beta1, beta2, eps, decay;
    int keras_eps;
    int64_t t;                   /* steps taken */
    float *m, *v;                /* (n) moments, one allocation */
    float weight_decay;          /* AdamW's decoupled decay (0 after alloc: plain Adam): before the update,
                                    p -= lr_t · weight_decay · p, as torch.optim.AdamW (every parameter) */
} attn_adam;

/* Allocates the moments (2n floats, zeroed) and sets β1 0.9, β2 0.999, eps 1e-8 (PyTorch), decay 0.
 * (Named alloc, not init: in attn an *_init only fills.) attn_adam_free releases them. */
attn_status attn_adam_alloc(attn_adam *a, size_t n, float lr);
void        attn_adam_free(attn_adam *a);
attn_status attn_adam_step(attn_adam *a, float *params, const float *grads);

/* Scales grads so their global L2 norm is at most max_norm; *norm (or NULL) gets the norm before. */
attn_status attn_clip_grad_norm(float *grads, size_t n, float max_norm, float *norm);

/* ---------------------------------------------------------------------------------------------------
 * Multi-head attention layer: Q, K, V and output projections (linear, with bias), H heads of Dm/H,
 * scale 1/sqrt(Dm/H), then the output projection back to Dm.
 *   q (B,T,Dq)  k (B,S,Dk)  v (B,S,Dv)  ->  out (B,T,Dm),  weights (B,H,T,S) on request
 * Self-attention passes the same tensor as q, k and v (and the same gradient buffer as dq, dk, dv:
 * backward accumulates, so that adds the three contributions).
 * Parameters, in this order: wq (Dm,Dq) bq (Dm) wk (Dm,Dk) bk (Dm) wv (Dm,Dv) bv (Dm) wo (Dm,Dm) bo (Dm).
 * init_weights: like PyTorch's nn.Linear, weight and bias uniform in ±1/sqrt(in), in the order q, k, v, o.
 */
typedef struct attn_mha {
    int Dq, Dk, Dv, Dm, H;
    float *wq, *bq;              /* (Dm,Dq) (Dm) */
    float *wk, *bk;              /* (Dm,Dk) (Dm) */
    float *wv, *bv;              /* (Dm,Dv) (Dm) */
    float *wo, *bo;              /* (Dm,Dm) (Dm) */
    float *dwq, *dbq, *dwk, *dbk, *dwv, *dbv, *dwo, *dbo;  /* gradients, same shapes, or NULL */
    float *params, *grads;       /* what bind was given: n_params floats each */
    size_t n_params;
    attn_dtype compute;          /* the attention's compute (F32 after bind; BF16: its products may be taken
                                    in bf16 on a path with bf16 units, fp32 accumulation; attn_sdpa_desc).
                                    Set it before asking for the cache bytes: the workspace depends on it */
} attn_mha;

/* Floats of parameters (0 for invalid sizes). */
size_t      attn_mha_n_params(int Dq, int Dk, int Dv, int Dm);
/* Dm must be a multiple of H (ATTN_ERR_SHAPE). */
attn_status attn_mha_bind(attn_mha *m, int Dq, int Dk, int Dv, int Dm, int H, float *params, float *grads);
attn_status attn_mha_init_weights(attn_mha *m, attn_rng *rng);
/* Bytes of cache one forward + backward at these sizes needs with ctx (projections and attention
 * output saved for the backward, backward scratch, the attention workspace). */
attn_status attn_mha_cache_bytes(const attn_ctx *ctx, const attn_mha *m, int B, int T, int S, size_t *bytes);

/* mask and dropout as for attn_sdpa_desc (mask read with this layer's B, H, T, S). */
attn_status attn_mha_forward(const attn_ctx *ctx, const attn_mha *m, void *cache, size_t cache_bytes,
                             float *out, float *weights,
                             const float *q, const float *k, const float *v,
                             int B, int T, int S, const attn_mask *mask, float dropout, uint64_t seed);
/* Accumulates into dq, dk, dv (each may be NULL) and into m's gradients. Same ctx, sizes, mask, dropout
 * and seed as the forward that filled the cache. */
attn_status attn_mha_backward(const attn_ctx *ctx, const attn_mha *m, void *cache, size_t cache_bytes,
                              float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v,
                              int B, int T, int S, const attn_mask *mask, float dropout, uint64_t seed);

/* ---------------------------------------------------------------------------------------------------
 * Self-attention with one kernel W (3,Din,Dout), no bias (the layer of the IMDB experiment):
 *   Q = X W[0],  K = X W[1],  V = X W[2],  out = softmax(scale · Q Kᵀ, masked) V
 *   x (B,T,Din)  ->  out (B,T,Dout),  weights (B,T,T) on request.  W in Keras' (in, out) layout.
 * init_weights: uniform(-0.05, 0.05) (Keras' RandomUniform default). The batch is split among ctx's
 * threads (see selfattn.c), so a cache size is valid for the context it was asked with.
 */
typedef struct attn_selfattn {
    int Din, Dout;
    float scale;                 /* 1/sqrt(Dout) after bind; change it before a forward */
    float *w;                    /* (3,Din,Dout) */
    float *dw;                   /* (3,Din,Dout), or NULL */
    float *params, *grads;       /* what bind was given: n_params floats each */
    size_t n_params;
    attn_dtype compute;          /* the attention's compute, as attn_mha's (F32 after bind) */
} attn_selfattn;

size_t      attn_selfattn_n_params(int Din, int Dout);
attn_status attn_selfattn_bind(attn_selfattn *l, int Din, int Dout, float *params, float *grads);
attn_status attn_selfattn_init_weights(attn_selfattn *l, attn_rng *rng);
attn_status attn_selfattn_cache_bytes(const attn_ctx *ctx, const attn_selfattn *l, int B, int T, size_t *bytes);
attn_status attn_selfattn_forward(const attn_ctx *ctx, const attn_selfattn *l, void *cache, size_t cache_bytes,
                                  float *out, float *weights, const float *x,
                                  int B, int T, const attn_mask *mask);
/* Accumulates into dx (or NULL) and dw. */
attn_status attn_selfattn_backward(const attn_ctx *ctx, const attn_selfattn *l, void *cache, size_t cache_bytes,
                                   float *dx, const float *dout, const float *x,
                                   int B, int T, const attn_mask *mask);

/* ---------------------------------------------------------------------------------------------------
 * GRU, several layers, PyTorch's equations and parameter layout (gates r, z, n in that order):
 *   r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
 *   n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))           h' = (1 - z) ⊙ n + z ⊙ h
 * Layer l reads the output of layer l-1, through inverted dropout (training only, not after the last
 * layer). Time-major tensors, as nn.GRU without batch_first: x (T,B,in), out (T,B,H), states (L,B,H).
 * Parameters, per layer, in PyTorch's state_dict order:
 *   weight_ih_l{k} (3H,in_k)  weight_hh_l{k} (3H,H)  bias_ih_l{k} (3H)  bias_hh_l{k} (3H),  in_0 = in,
 *   in_k = H after. Gradients have the same layout in their own slab.
 * init_weights: as d2l's xavier_init_weights leaves an nn.GRU — per layer, weight_ih and weight_hh
 * Xavier-uniform, then both biases U(±1/sqrt(H)) (PyTorch's default).
 */
#define ATTN_GRU_MAX_LAYERS 8

typedef struct attn_gru {
    int L, in, H;
    float dropout;                                  /* between layers, in [0,1) */
    float *w_ih[ATTN_GRU_MAX_LAYERS], *w_hh[ATTN_GRU_MAX_LAYERS];
    float *b_ih[ATTN_GRU_MAX_LAYERS], *b_hh[ATTN_GRU_MAX_LAYERS];
    float *dw_ih[ATTN_GRU_MAX_LAYERS], *dw_hh[ATTN_GRU_MAX_LAYERS];   /* NULL without gradients */
    float *db_ih[ATTN_GRU_MAX_LAYERS], *db_hh[ATTN_GRU_MAX_LAYERS];
    float *params, *grads;                          /* what bind was given: n_params floats each */
    size_t n_params;
} attn_gru;

/* Floats of parameters of an L-layer GRU (0 for invalid sizes). */
size_t      attn_gru_n_params(int L, int in, int H);
attn_status attn_gru_bind(attn_gru *g, int L, int in, int H, float dropout, float *params, float *grads);
attn_status attn_gru_init_weights(attn_gru *g, attn_rng *rng);
/* Bytes of cache one forward + backward over (T,B) needs (saved activations and backward scratch). */
attn_status attn_gru_cache_bytes(const attn_gru *g, int T, int B, size_t *bytes);

/* Forward over T steps. out (T,B,H) written; h_n (L,B,H) or NULL written; x (T,B,in); h0 (L,B,H) or
 * NULL (zeros). train nonzero applies the dropout between layers, its masks a function of seed. */
attn_status attn_gru_forward(const attn_ctx *ctx, const attn_gru *g, void *cache, size_t cache_bytes,
                             float *out, float *h_n, const float *x, const float *h0,
                             int T, int B, int train, uint64_t seed);

/* Backward of the forward that filled cache (same x, T, B, train, seed). Accumulates (+=) into dx
 * (T,B,in) and dh0 (L,B,H) (each may be NULL) and into the gradient slab. dout (T,B,H) and dh_n (L,B,H)
 * may be NULL (zero). */
attn_status attn_gru_backward(const attn_ctx *ctx, const attn_gru *g, void *cache, size_t cache_bytes,
                              float *dx, float *dh0, const float *dout, const float *dh_n,
                              const float *x, int T, int B, int train, uint64_t seed);

/* ---------------------------------------------------------------------------------------------------
 * The Transformer's layers (attn/transformer.h builds its blocks from them).
 *
 * Positional encoding (no parameters). Table P (T,D): P[t][2i] = sin(t / 10000^(2i/D)),
 * P[t][2i+1] = cos(same).
 */
attn_status attn_posenc_table(float *P, int T, int D);

/* y = dropout(scale · x + P), per batch row:  y (B,T,D) (may equal x)  x (B,T,D)  P (T,D) rows of the
 * positions (pass P + t0·D for positions t0..). d2l scales the embeddings by sqrt(D) here. */
attn_status attn_posenc_forward(float *y, const float *x, const float *P, float scale,
                                int B, int T, int D, float dropout, uint64_t seed);
/* dx (B,T,D) += scale · dropout'(dy) */
attn_status attn_posenc_backward(float *dx, const float *dy, float scale,
                                 int B, int T, int D, float dropout, uint64_t seed);

/* Position-wise feed-forward: y = relu(x W1ᵀ + b1) W2ᵀ + b2, over rows of D.
 * Parameters, in d2l's state_dict order: dense1 w1 (F,D) b1 (F), dense2 w2 (D,F) b2 (D).
 * init_weights: w1 Xavier-uniform, b1 U(±1/sqrt(D)), w2 Xavier-uniform, b2 U(±1/sqrt(F)) (in that order,
 * as d2l's xavier_init_weights leaves it). The cache keeps the hidden activations (N,F). */
typedef struct attn_ffn {
    int D, F;
    float *w1, *b1, *w2, *b2;    /* (F,D) (F) (D,F) (D) */
    float *dw1, *db1, *dw2, *db2;/* gradients, same shapes, or NULL */
    float *params, *grads;       /* what bind was given: n_params floats each */
    size_t n_params;
} attn_ffn;

size_t      attn_ffn_n_params(int D, int F);
attn_status attn_ffn_bind(attn_ffn *l, int D, int F, float *params, float *grads);
attn_status attn_ffn_init_weights(attn_ffn *l, attn_rng *rng);
attn_status attn_ffn_cache_bytes(const attn_ffn *l, int N, size_t *bytes);
/*   y (N,D) written;  x (N,D) */
attn_status attn_ffn_forward(const attn_ffn *l, void *cache, size_t cache_bytes, float *y, const float *x, int N);
/*   dx (N,D) += (or NULL);  dy (N,D);  x (N,D) the forward's input */
attn_status attn_ffn_backward(const attn_ffn *l, void *cache, size_t cache_bytes,
                              float *dx, const float *dy, const float *x, int N);

/* Add & norm: z = x + dropout(s), y = LayerNorm(z) over rows of C, eps 1e-5 (d2l's; ln.eps is not
 * read here). Parameters: the layer norm's (weight (C), bias (C)); init_weights as attn_layernorm's.
 * The cache keeps z and the row statistics. */
typedef struct attn_addnorm {
    attn_layernorm ln;
} attn_addnorm;

size_t      attn_addnorm_n_params(int C);
attn_status attn_addnorm_bind(attn_addnorm *l, int C, float *params, float *grads);
attn_status attn_addnorm_init_weights(attn_addnorm *l, attn_rng *rng);
attn_status attn_addnorm_cache_bytes(const attn_addnorm *l, int N, size_t *bytes);
/*   y (N,C) written;  x (N,C) the residual, s (N,C) the sublayer's output */
attn_status attn_addnorm_forward(const attn_addnorm *l, void *cache, size_t cache_bytes,
                                 float *y, const float *x, const float *s, int N, float dropout, uint64_t seed);
/*   dx (N,C) += dz, ds (N,C) += dropout'(dz) (each may be NULL), dz the gradient of z;  dy (N,C).
 * Same dropout and seed as the forward. */
attn_status attn_addnorm_backward(const attn_addnorm *l, void *cache, size_t cache_bytes,
                                  float *dx, float *ds, const float *dy, int N, float dropout, uint64_t seed);

/* ---------------------------------------------------------------------------------------------------
 * Linformer attention (Wang et al. 2020): multi-head attention whose keys and values are first projected
 * along the sequence to Kp rows by learned E and F, so attention costs T·Kp instead of T·S:
 *   Qp = q Wqᵀ + bq (B,T,Dm)   Kp_ = E[:, :S] (k Wkᵀ + bk) (B,Kp,Dm)   Vp_ = F[:, :S] (v Wvᵀ + bv) (B,Kp,Dm)
 *   out = sdpa(Qp, Kp_, Vp_) Woᵀ + bo      H heads of Dm/H, through attn_sdpa_* (no mask: the projection
 *   mixes every key into every row)
 *   q (B,T,Dm)  k, v (B,S,Dm) with S <= N  ->  out (B,T,Dm)
 * E and F (Kp,N) are shared by the heads (the paper's head-wise sharing); a sequence shorter than N uses
 * their first S columns (as if the projected keys and values were zero-padded to N).
 * Parameters, in this order: wq bq wk bk wv bv wo bo (as attn_mha with Dq = Dk = Dv = Dm), E (Kp,N),
 * F (Kp,N). init_weights: the linear ones as nn.Linear (uniform ±1/sqrt(Dm)), E and F uniform ±1/sqrt(Kp),
 * in that order.
 */
typedef struct attn_linformer {
    int Dm, H, N, Kp;
    float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo;   /* (Dm,Dm) and (Dm) each */
    float *e, *f;                                   /* (Kp,N) each */
    float *dwq, *dbq, *dwk, *dbk, *dwv, *dbv, *dwo, *dbo, *de, *df;   /* gradients, or NULL */
    float *params, *grads;
    size_t n_params;
} attn_linformer;

size_t      attn_linformer_n_params(int Dm, int N, int Kp);
/* Dm must be a multiple of H (ATTN_ERR_SHAPE). */
attn_status attn_linformer_bind(attn_linformer *l, int Dm, int H, int N, int Kp, float *params, float *grads);
attn_status attn_linformer_init_weights(attn_linformer *l, attn_rng *rng);
attn_status attn_linformer_cache_bytes(const attn_ctx *ctx, const attn_linformer *l, int B, int T, int S,
                                       size_t *bytes);
/* weights (B,H,T,Kp) or NULL: the attention over the projected keys. */
attn_status attn_linformer_forward(const attn_ctx *ctx, const attn_linformer *l, void *cache, size_t cache_bytes,
                                   float *out, float *weights, const float *q, const float *k, const float *v,
                                   int B, int T, int S);
/* Accumulates into dq, dk, dv (each may be NULL; self-attention may pass one buffer for all three) and into
 * l's gradients. Same ctx and sizes as the forward that filled the cache. */
attn_status attn_linformer_backward(const attn_ctx *ctx, const attn_linformer *l, void *cache, size_t cache_bytes,
                                    float *dq, float *dk, float *dv, const float *dout,
                                    const float *q, const float *k, const float *v, int B, int T, int S);

/* ---------------------------------------------------------------------------------------------------
 * Data parallelism for the models that split each batch in fixed shards (the translators: their
 * *_train_epoch_part calls). A process computes shards [first, first + count) of every batch; then
 * combine must leave in grads (n_params) the sum of the gradients of shards 0 .. n_used - 1, added in shard
 * order to zeros (0 + g_0 + g_1 + ...: the bits of one process), and in *loss the sum of their losses in
 * the same order (a double sum rounded to float), the same on every process. shard_grads[k] holds shard
 * k's gradient when this process computed it (else it is free for the combiner's use); losses[k] its loss.
 * An MPI program gathers the shards to one rank in that order and sends the sum back. */
typedef attn_status (*attn_shard_combine_fn)(void *user, float *grads, size_t n_params, float *const *shard_grads,
                                             const float *losses, int first, int count, int n_used, float *loss);
/* The most shards a model's batch is cut into (attn_*_set_shards: seq2seq, transformer, vit, caption, detr). */
#define ATTN_MAX_SHARDS 16

/* ---------------------------------------------------------------------------------------------------
 * The Vision Transformer's layers (attn/vit.h builds the model from them).
 *
 * GELU, exact (PyTorch's default, approximate='none'): y = 0.5 x (1 + erf(x/√2)).  y, x (n); y may be x.
 * backward: dx (n) += dy · (Φ(x) + x φ(x)), x the forward's input. */
attn_status attn_gelu_forward(float *y, const float *x, size_t n);
attn_status attn_gelu_backward(float *dx, const float *dy, const float *x, size_t n);

/* Patch embedding: nn.Conv2d(C, D, kernel_size=K, stride=P, padding=(K-P)/2) on images (B,C,Hi,Wi), Hi and
 * Wi multiples of P (ATTN_ERR_SHAPE), computed as a linear map over the unfolded patches (CBLAS). Output
 * (B,Np,D), Np = (Hi/P)·(Wi/P) patches in row-major order of the patch grid, whatever K.
 * K == P (attn_patch_embed_bind) is the plain ViT's embedding: patches side by side. K > P overlaps them
 * (as PVTv2's and CvT's embeddings): each of the same Np patches reads a K×K window centred on its P×P
 * square, (K-P)/2 pixels into its neighbours, zeros beyond the image. K - P must be even and K <= 3P
 * (a window reaches at most into its neighbours), else ATTN_ERR_SHAPE.
 * Parameters: weight (D,C,K,K), bias (D) (Conv2d's order and layout). init_weights: both U(±1/√(C·K·K)),
 * PyTorch's default for Conv2d. The cache keeps the unfolded patches (B·Np, C·K·K). */
typedef struct attn_patch_embed {
    int C, Hi, Wi, P, D, Np;
    int K, pad;                  /* kernel size (P: no overlap), zero padding (K-P)/2 on each side */
    float *w, *b;                /* (D,C,K,K) (D) */
    float *dw, *db;              /* gradients, same shapes, or NULL */
    float *params, *grads;       /* what bind was given: n_params floats each */
    size_t n_params;
} attn_patch_embed;

/* K the kernel size (P for attn_patch_embed_bind's layer): D·C·K·K + D, or 0 when sizes overflow. */
size_t      attn_patch_embed_n_params(int C, int K, int D);
attn_status attn_patch_embed_bind(attn_patch_embed *l, int C, int Hi, int Wi, int P, int D, float *params,
                                  float *grads);
/* The same with a kernel size K >= P (K == P is attn_patch_embed_bind, bit for bit). */
attn_status attn_patch_embed_bind_kernel(attn_patch_embed *l, int C, int Hi, int Wi, int P, int K, int D,
                                         float *params, float *grads);
attn_status attn_patch_embed_init_weights(attn_patch_embed *l, attn_rng *rng);
attn_status attn_patch_embed_cache_bytes(const attn_patch_embed *l, int B, size_t *bytes);
/*   y (B,Np,D) written;  x (B,C,Hi,Wi) */
attn_status attn_patch_embed_forward(const attn_patch_embed *l, void *cache, size_t cache_bytes, float *y,
                                     const float *x, int B);
/*   dx (B,C,Hi,Wi) += (or NULL);  dy (B,Np,D);  x the forward's input. With K > P a pixel gets the sum of
 * every window's contribution that covers it. The cache's patches are overwritten when dx is given: one
 * backward per forward. */
attn_status attn_patch_embed_backward(const attn_patch_embed *l, void *cache, size_t cache_bytes, float *dx,
                                      const float *dy, const float *x, int B);

/* Class token and learned positions: y[b] = concat(cls, x[b]) + pos, as a ViT's tokens.
 *   y (B,N+1,D) written;  x (B,N,D).  Parameters: cls (D) (PyTorch's (1,1,D)), pos (N+1,D).
 * init_weights: both N(0, 0.02²) truncated at ±2 std (nn.init.trunc_normal_), cls first. No cache. */
typedef struct attn_cls_pos {
    int N, D;
    float *cls, *pos;            /* (D) (N+1,D) */
    float *dcls, *dpos;          /* gradients, same shapes, or NULL */
    float *params, *grads;       /* what bind was given: n_params floats each */
    size_t n_params;
} attn_cls_pos;

size_t      attn_cls_pos_n_params(int N, int D);
attn_status attn_cls_pos_bind(attn_cls_pos *l, int N, int D, float *params, float *grads);
attn_status attn_cls_pos_init_weights(attn_cls_pos *l, attn_rng *rng);
attn_status attn_cls_pos_forward(const attn_cls_pos *l, float *y, const float *x, int B);
/*   dx (B,N,D) += (or NULL); dcls, dpos += from dy (B,N+1,D) */
attn_status attn_cls_pos_backward(const attn_cls_pos *l, float *dx, const float *dy, int B);

/* Learning rate at step (0-based) of total: linear warm-up base·(step+1)/warmup for step < warmup, then
 * cosine from base down to min_lr at step total (held there after). */
float attn_lr_warmup_cosine(int64_t step, int64_t warmup, int64_t total, float base, float min_lr);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_LAYERS_H */
