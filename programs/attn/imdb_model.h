/*
 * imdb_model.h — the IMDB self-attention classifier of SPEC §4.C:
 *
 *   ids (B,T) -> Embedding(V,D) -> x (B,T,D) -> self-attention W (3,D,D), scale 1/8 -> h (B,T,D)
 *   -> mean over T -> pooled (B,D) -> Dropout(p) -> Dense(C) -> logits (B,C) -> softmax cross-entropy
 *
 * All parameters live in one slab (and all gradients in another), in this order, so one Adam step
 * covers them: embedding (V,D), attention kernel (3,D,D) (Keras' (in, out) layout, as attn_selfattn),
 * dense weight (C,D) (PyTorch's (out,in) layout), dense bias (C). V=20000, D=128, C=2 gives 2,609,410.
 *
 * The embedding and the self-attention projections are computed together, per distinct word of the
 * batch rather than per position (a batch of 32 reviews of 64 words has about half as many distinct
 * words as positions): the projections Q, K, V of a word do not depend on where it stands, and neither
 * does its share of the gradients, so
 *   forward    PU (U,3D) = emb[words] · [W0 W1 W2], then each position gathers its word's row;
 *   backward   dPU (U,3D) = Σ over a word's positions of dP (in position order), then
 *              dW += emb[words]ᵀ · dPU and d_emb[words] += dPU · [W0 W1 W2]ᵀ
 * which is the same sum as Embedding followed by attn_selfattn, with about half the matrix work. The
 * attention itself is the library's fused kernel (attn_sdpa_*). Threads: each pass is one OpenMP
 * region; reviews, words (rows cut at multiples of 16) and dW columns (blocks of 32) are owned whole by
 * one thread and no sum's order depends on the thread count, so results are reproducible for a given
 * count, and bitwise identical for any count with OpenBLAS's SkylakeX (and Prescott) kernels, which round
 * a row of a product the same whatever rows are computed with it (test_imdb probes the BLAS and checks).
 */
#ifndef ATTN_IMDB_MODEL_H
#define ATTN_IMDB_MODEL_H

#include "attn/layers.h"

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
    /* activations and their gradients, for Bmax (N = Bmax·T positions) */
    float *x, *h;                /* x: (U,D) embedding rows of the batch's distinct words; h (B,T,D) */
    float *pooled, *dropped;     /* (B,D) */
    float *logits, *probs;       /* (B,C) */
    float *losses;               /* (B) */
    float *dx, *dh;              /* dx: (U,D) their gradient rows; dh (B,T,D) */
    float *dpooled, *ddropped;   /* (B,D) */
    float *dlogits, *dlosses;    /* (B,C) (B) */
    int32_t *targets;            /* (B) scratch for label-less forwards */
    int32_t *touched;            /* (B,T) embedding rows with nonzero gradient since the last zero_grad */
    int n_touched;
    /* the fused embedding + projections (see the top of this file) */
    int32_t *words;              /* (N) the distinct words of the last forward, in order of first use */
    int32_t *wpos;               /* (N) position -> index in words */
    int32_t *wstart, *wlist;     /* (U+1), (N): the positions of word k are wlist[wstart[k] .. wstart[k+1]) */
    int32_t *wmark;              /* (V) word -> index in words during a forward, -1 otherwise */
    int n_words;                 /* 0: no forward to differentiate */
    int fwd_B;                   /* the reviews of that forward */
    float *wc;                   /* (D,3D) [W0 W1 W2] */
    float *pu, *dpu;             /* (U,3D) projections of the distinct words and their gradient */
    float *pp, *dpp;             /* (N,3D) Q, K, V of every position side by side, and dQ, dK, dV */
    float *alse;                 /* (N) the attention's log-sum-exp */
    void *awork;                 /* attention workspaces, grown on demand */
    size_t awork_bytes;
    /* the evaluation path (imdb_model_eval_prepare / imdb_model_eval_forward) */
    float *tab;                  /* (V,3D): emb · [W0 W1 W2], the projections of every word */
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
/* Backward of the last forward (with labels, the same ids and B), for the mean loss over the B reviews:
 * accumulates into the gradient slab. */
attn_status imdb_model_backward(imdb_model *m, const int32_t *ids, const int32_t *labels, int B, int train,
                                uint64_t drop_seed);
/* Evaluation without gradients, faster: the projections Q, K, V of a word do not depend on its position,
 * so imdb_model_eval_prepare computes them once for the whole vocabulary (one product (V,D)·(D,3D), about
 * 2 GFLOP for the full model) and imdb_model_eval_forward gathers them instead of multiplying 2·3·T·D²
 * FLOP per review; then the same fused attention, mean, dense and softmax (one thread per part of the
 * reviews). Prepare again after any change
 * of the parameters. Same arguments and results as imdb_model_forward with train = 0 (up to rounding).
 * It reuses the training forward's buffers: imdb_model_backward then refuses (ATTN_ERR_ARG) until the
 * next imdb_model_forward. */
attn_status imdb_model_eval_prepare(imdb_model *m);
attn_status imdb_model_eval_forward(imdb_model *m, const int32_t *ids, const int32_t *labels, int B,
                                    double *loss_sum, int *correct);

/* Zeroes the gradients: the small layers whole, the embedding only in the rows touched since the last
 * call (the others are zero already). full != 0 clears everything. */
void        imdb_model_zero_grad(imdb_model *m, int full);

#endif /* ATTN_IMDB_MODEL_H */
