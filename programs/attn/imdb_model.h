/*
 * imdb_model.h — the IMDB self-attention classifier of SPEC §4.C, built from the library's layers:
 *
 *   ids (B,T) -> Embedding(V,D) -> x (B,T,D) -> self-attention W (3,D,D), scale 1/8 -> h (B,T,D)
 *   -> mean over T -> pooled (B,D) -> Dropout(p) -> Dense(C) -> logits (B,C) -> softmax cross-entropy
 *
 * All parameters live in one slab (and all gradients in another), in this order, so one Adam step
 * covers them: embedding (V,D), attention kernel (3,D,D), dense weight (C,D) (PyTorch's (out,in)
 * layout), dense bias (C). The self-attention layer's w/dw pointers are pointed into the slabs (its own
 * allocation stays untouched and is freed by attn_selfattn_free). V=20000, D=128, C=2 gives 2,609,410.
 */
#ifndef ATTN_IMDB_MODEL_H
#define ATTN_IMDB_MODEL_H

#include "attn.h"

typedef struct imdb_config {
    int V, D, T, C;              /* vocabulary ids, width, maxlen, classes */
    float scale;                 /* attention scale (1/8 in the experiment) */
    float dropout;               /* on the pooled vector, training only */
} imdb_config;

typedef struct imdb_model {
    imdb_config cfg;
    int Bmax;                    /* largest batch the activations hold */
    size_t n_params;
    float *params, *grads;       /* (n_params) each */
    float *emb, *kernel, *dense_w, *dense_b;          /* (V,D) (3,D,D) (C,D) (C): views into params */
    float *d_emb, *d_kernel, *d_dense_w, *d_dense_b;  /* the same in grads */
    attn_selfattn sa;
    void *cache;                 /* the self-attention layer's cache for Bmax */
    size_t cache_bytes;
    /* activations and their gradients, for Bmax */
    float *x, *h;                /* (B,T,D) */
    float *pooled, *dropped;     /* (B,D) */
    float *logits, *probs;       /* (B,C) */
    float *losses;               /* (B) */
    float *dx, *dh;              /* (B,T,D) */
    float *dpooled, *ddropped;   /* (B,D) */
    float *dlogits, *dlosses;    /* (B,C) (B) */
    int32_t *targets;            /* (B) scratch for label-less forwards */
    int32_t *touched;            /* (B,T) embedding rows with nonzero gradient since the last zero_grad */
    int n_touched;
    /* the evaluation path (imdb_model_eval_prepare / imdb_model_eval_forward) */
    float *tab;                  /* (3,V,D): emb · W[i], the projections of every word */
    float *eq, *ek, *ev, *lse; /* (B,T,D) x3, (B,T) */
    void *ework;
    size_t ework_bytes;
} imdb_model;

void        imdb_config_default(imdb_config *c);
/* Allocates everything and initializes: embedding and kernel Uniform(-0.05,0.05), dense weight
 * Glorot-uniform, bias 0, all from seed; gradients zero. */
attn_status imdb_model_init(imdb_model *m, const imdb_config *c, int Bmax, uint64_t seed);
void        imdb_model_free(imdb_model *m);

/* Forward on B <= Bmax reviews. ids (B,T). labels (B) or NULL (then no loss). train: apply dropout with
 * drop_seed. weights (B,T,T) or NULL: the attention weights. *loss_sum (Σ of per-review losses) and
 * *correct (argmax == label) when labels are given. Probabilities are in m->probs (B,C). */
attn_status imdb_model_forward(imdb_model *m, const int32_t *ids, const int32_t *labels, int B, int train,
                               uint64_t drop_seed, float *weights, double *loss_sum, int *correct);
/* Backward of the last forward (with labels), for the mean loss over the B reviews: accumulates into
 * the gradient slab. */
attn_status imdb_model_backward(imdb_model *m, const int32_t *ids, const int32_t *labels, int B, int train,
                                uint64_t drop_seed);
/* Evaluation without gradients, faster: the projections Q, K, V of a word do not depend on its position,
 * so imdb_model_eval_prepare computes them once for the whole vocabulary (3 products (V,D)·(D,D), about
 * 2 GFLOP for the full model) and imdb_model_eval_forward gathers them instead of multiplying 2·3·T·D²
 * FLOP per review; then the same fused attention, mean, dense and softmax. Prepare again after any change
 * of the parameters. Same arguments and results as imdb_model_forward with train = 0 (up to rounding). */
attn_status imdb_model_eval_prepare(imdb_model *m);
attn_status imdb_model_eval_forward(imdb_model *m, const int32_t *ids, const int32_t *labels, int B,
                                    double *loss_sum, int *correct);

/* Zeroes the gradients: the small layers whole, the embedding only in the rows touched since the last
 * call (the others are zero already). full != 0 clears everything. */
void        imdb_model_zero_grad(imdb_model *m, int full);

#endif /* ATTN_IMDB_MODEL_H */
