/*
 * attn/layers.h — the trainable layers around the mechanisms, and what training needs.
 * Included by attn.h; do not include it alone.
 *
 * Style (after llm.c): layers are free functions <layer>_forward / <layer>_backward whose arguments go
 * outputs, saved-for-backward, inputs, parameters, then sizes. Backward calls accumulate (+=) into every
 * gradient, input gradients included; a NULL input gradient is skipped. Weight matrices use PyTorch's
 * layout (out, in), so checkpoints read the same in both. Plain matrix products go through CBLAS.
 * Layers that keep state between forward and backward (multi-head and self-attention) are objects with
 * init/free; they allocate once, at init, from one slab, and the per-call activations live in a cache the
 * caller provides (its size is asked for first).
 */
#ifndef ATTN_LAYERS_H
#define ATTN_LAYERS_H

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

/* LayerNorm over the last axis.  y (N,C)  mean (N)  rstd (N) saved;  x (N,C)  gamma (C)  beta (C) */
attn_status attn_layernorm_forward(float *y, float *mean, float *rstd,
                                   const float *x, const float *gamma, const float *beta,
                                   int N, int C, float eps);
attn_status attn_layernorm_backward(float *dx, float *dgamma, float *dbeta,
                                    const float *dy, const float *x, const float *mean, const float *rstd,
                                    const float *gamma, int N, int C);

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
} attn_adam;

/* Sets β1 0.9, β2 0.999, eps 1e-8 (PyTorch), decay 0, and allocates the moments. */
attn_status attn_adam_init(attn_adam *a, size_t n, float lr);
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
 */
typedef struct attn_mha {
    int Dq, Dk, Dv, Dm, H;
    float *wq, *bq;              /* (Dm,Dq) (Dm) */
    float *wk, *bk;              /* (Dm,Dk) (Dm) */
    float *wv, *bv;              /* (Dm,Dv) (Dm) */
    float *wo, *bo;              /* (Dm,Dm) (Dm) */
    float *dwq, *dbq, *dwk, *dbk, *dwv, *dbv, *dwo, *dbo;  /* gradients, same shapes */
    float *params, *grads;       /* the slab: n_params parameters, then n_params gradients */
    size_t n_params;
} attn_mha;

/* Allocates the slab and initializes like PyTorch's nn.Linear (uniform ±1/sqrt(in)) from seed;
 * gradients zeroed. Dm must be a multiple of H. */
attn_status attn_mha_init(attn_mha *m, int Dq, int Dk, int Dv, int Dm, int H, uint64_t seed);
void        attn_mha_free(attn_mha *m);

/* Bytes of cache one forward + backward at these sizes needs (activations saved for the backward and
 * scratch); a cache is valid from a forward until the next forward with it. */
attn_status attn_mha_cache_size(const attn_mha *m, int B, int T, int S, size_t *bytes);

/* mask and dropout as for attn_sdpa_desc (mask read with this layer's B, H, T, S). */
attn_status attn_mha_forward(attn_mha *m, void *cache, size_t cache_bytes,
                             float *out, float *weights,
                             const float *q, const float *k, const float *v,
                             int B, int T, int S, const attn_mask *mask, float dropout, uint64_t seed);
/* Accumulates into dq, dk, dv (each may be NULL) and into m's gradients. Same sizes, mask, dropout and
 * seed as the forward that filled the cache. */
attn_status attn_mha_backward(attn_mha *m, void *cache, size_t cache_bytes,
                              float *dq, float *dk, float *dv, const float *dout,
                              const float *q, const float *k, const float *v,
                              int B, int T, int S, const attn_mask *mask, float dropout, uint64_t seed);

/* ---------------------------------------------------------------------------------------------------
 * Self-attention with one kernel W (3,Din,Dout), no bias (the layer of the IMDB experiment):
 *   Q = X W[0],  K = X W[1],  V = X W[2],  out = softmax(scale · Q Kᵀ, masked) V
 *   x (B,T,Din)  ->  out (B,T,Dout),  weights (B,T,T) on request.  W in Keras' (in, out) layout.
 */
typedef struct attn_selfattn {
    int Din, Dout;
    float scale;                 /* 1/sqrt(Dout) unless set */
    float *w;                    /* (3,Din,Dout) */
    float *dw;                   /* (3,Din,Dout) */
    float *params, *grads;       /* the slab */
    size_t n_params;
} attn_selfattn;

/* Uniform(-0.05, 0.05) init from seed (Keras' RandomUniform default), gradients zeroed. */
attn_status attn_selfattn_init(attn_selfattn *l, int Din, int Dout, uint64_t seed);
void        attn_selfattn_free(attn_selfattn *l);
attn_status attn_selfattn_cache_size(const attn_selfattn *l, int B, int T, size_t *bytes);
attn_status attn_selfattn_forward(attn_selfattn *l, void *cache, size_t cache_bytes,
                                  float *out, float *weights, const float *x,
                                  int B, int T, const attn_mask *mask);
attn_status attn_selfattn_backward(attn_selfattn *l, void *cache, size_t cache_bytes,
                                   float *dx, const float *dout, const float *x,
                                   int B, int T, const attn_mask *mask);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_LAYERS_H */
