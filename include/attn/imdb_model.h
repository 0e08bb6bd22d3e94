/*
 * attn/imdb_model.h — the IMDB self-attention sentiment classifier (src/models/imdb.c):
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
 *
 * Execution context: the model keeps a copy of the attn_ctx given to attn_imdb_model_init (NULL: the
 * default context as it is at that moment) and runs every attention kernel, and cuts its batches into
 * parts, with it; later changes of the process-wide knobs do not affect a model already made. Its plain
 * matrix products go through OpenBLAS with OpenBLAS's own thread count (attn_blas_set_num_threads), and
 * the small layers of its head (mean, dropout, dense, softmax cross-entropy: attn/layers.h) take no
 * context yet and follow attn_get_num_threads() at the time of the call.
 *
 * Allocations: init makes eight (the two slabs, activations, targets, touched rows, word index arrays,
 * packed kernel, key mask); the attention workspace is grown on demand by the first forward, and eval_prepare
 * adds its (V,3D) table once; the passes allocate nothing else.
 *
 * Checkpoints (attn_imdb_model_save / attn_imdb_model_load) are safetensors files holding the four
 * parameter tensors under Keras-like names, the Adam moments, the vocabulary (so that predict needs no
 * data set), and the run's settings in the metadata (format "attn-imdb-1").
 *
 * Training, as `attn imdb train` runs it (error checks left out):
 *
 *     attn_imdb_config c;
 *     attn_imdb_config_default(&c);
 *     attn_imdb_model m;
 *     attn_imdb_model_init(&m, NULL, &c, 32, seed);        // the default context, batches up to 32
 *     attn_adam a;
 *     attn_adam_alloc(&a, m.n_params, 2e-4f);
 *     attn_imdb_model_zero_grad(&m, 1);
 *     for (each batch of B reviews: ids (B,T), labels (B)) {
 *         attn_imdb_model_forward(&m, ids, labels, B, 1, drop_seed, NULL, &loss_sum, &correct);
 *         attn_imdb_model_zero_grad(&m, 0);
 *         attn_imdb_model_backward(&m, ids, labels, B, 1, drop_seed);
 *         attn_adam_step(&a, m.params, m.grads);
 *     }
 *     attn_imdb_model_save(&m, &a, &data.vocab, &run, "imdb.safetensors", err, sizeof err);
 */
#ifndef ATTN_IMDB_MODEL_H
#define ATTN_IMDB_MODEL_H

#include "../attn.h"
#include "data.h"
#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct attn_imdb_config {
    int V, D, T, C;              /* vocabulary ids, width, maxlen, classes */
    float scale;                 /* attention scale (1/8 in the experiment) */
    float dropout;               /* on the pooled vector, training only */
    int mask_padding;            /* nonzero: the self-attention's keys exclude the padding (the Keras model,
                                    0, attends over it); saved in the checkpoint */
    int window;                  /* nonzero: each query t sees only the keys t - window_left .. t + window_right
                                    (a sliding window in the attention's mask; both sides, the classifier reads
                                    the whole review at once); saved in the checkpoint. 0: dense */
    int window_left, window_right;
    attn_dtype compute;          /* the self-attention's compute: F32, or BF16 (its products in bf16 where the
                                    path has bf16 units; weights and accumulation fp32); saved in the checkpoint */
} attn_imdb_config;

typedef struct attn_imdb_model {
    attn_imdb_config cfg;
    attn_ctx ctx;                /* the context every pass runs with (a copy, taken at init) */
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
    float *astats;               /* (N,2) the attention's row statistics */
    void *awork;                 /* attention workspaces, grown on demand */
    size_t awork_bytes;
    /* the evaluation path (attn_imdb_model_eval_prepare / attn_imdb_model_eval_forward) */
    float *tab;                  /* (V,3D): emb · [W0 W1 W2], the projections of every word */
    uint8_t *keymask;            /* (Bmax,T) 1 where ids is a word, 0 on padding (with cfg.mask_padding) */
} attn_imdb_model;

/* The experiment's model: V 20000, D 128, T 64, C 2, scale 1/8, dropout 0.5, no padding mask, dense. */
void        attn_imdb_config_default(attn_imdb_config *c);
/* Allocates everything for batches of up to Bmax reviews and initializes: embedding and kernel
 * Uniform(-0.05,0.05), dense weight Glorot-uniform, bias 0, all from seed; gradients zero. ctx: the
 * context every later call runs with (copied; NULL = attn_ctx_default() now). */
attn_status attn_imdb_model_init(attn_imdb_model *m, const attn_ctx *ctx, const attn_imdb_config *c, int Bmax,
                                 uint64_t seed);
void        attn_imdb_model_free(attn_imdb_model *m);

/* Forward on B <= Bmax reviews. ids (B,T). labels (B) or NULL (then no loss). train: apply dropout with
 * drop_seed. weights (B,T,T) or NULL: the attention weights. *loss_sum (Σ of per-review losses) and
 * *correct (argmax == label) are added to when labels are given. Probabilities are in m->probs (B,C). */
attn_status attn_imdb_model_forward(attn_imdb_model *m, const int32_t *ids, const int32_t *labels, int B,
                                    int train, uint64_t drop_seed, float *weights, double *loss_sum, int *correct);
/* Backward of the last forward (with labels, the same ids and B), for the mean loss over the B reviews:
 * accumulates into the gradient slab. */
attn_status attn_imdb_model_backward(attn_imdb_model *m, const int32_t *ids, const int32_t *labels, int B,
                                     int train, uint64_t drop_seed);
/* Evaluation without gradients, faster: the projections Q, K, V of a word do not depend on its position,
 * so attn_imdb_model_eval_prepare computes them once for the whole vocabulary (one product (V,D)·(D,3D),
 * about 2 GFLOP for the full model) and attn_imdb_model_eval_forward gathers them instead of multiplying
 * 2·3·T·D² FLOP per review; then the same fused attention, mean, dense and softmax (one thread per part of
 * the reviews). Prepare again after any change of the parameters. Same arguments and results as
 * attn_imdb_model_forward with train = 0 (up to rounding). It reuses the training forward's buffers:
 * attn_imdb_model_backward then refuses (ATTN_ERR_ARG) until the next attn_imdb_model_forward. */
attn_status attn_imdb_model_eval_prepare(attn_imdb_model *m);
attn_status attn_imdb_model_eval_forward(attn_imdb_model *m, const int32_t *ids, const int32_t *labels, int B,
                                         double *loss_sum, int *correct);

/* Zeroes the gradients: the small layers whole, the embedding only in the rows touched since the last
 * call (the others are zero already). full != 0 clears everything. */
void        attn_imdb_model_zero_grad(attn_imdb_model *m, int full);

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints. One safetensors file: embedding.weight (V,D), selfattn.kernel (3,D,D), dense.weight (C,D),
 * dense.bias (C), adam.m and adam.v (n_params), vocab (U8: the V words, NUL-terminated, in id order), and
 * metadata format "attn-imdb-1", vocab_size, maxlen, dim, vocab_crc32, n_params, mask_padding, window
 * ("L,R", or "0" for dense; absent in older checkpoints: dense) and the run's settings below. The format
 * records V, T, D and the masks only: C, scale and dropout are the experiment's
 * (attn_imdb_config_default), and a model with others cannot be saved (ATTN_ERR_ARG).
 * Errors: a status, and err (err_size bytes, may be NULL) gets "path: what was expected".
 */
/* The training run a checkpoint belongs to, so that a resumed run continues exactly. */
typedef struct attn_imdb_run_info {
    int epoch;                   /* epochs done */
    int limit;                   /* the data set's limit (reviews per split, 0 = all) */
    int batch;                   /* batch size */
    int64_t adam_t;              /* Adam steps taken */
    float lr;                    /* Adam learning rate */
    uint64_t seed;               /* seed of the initialization, shuffling and dropout */
    int step;                    /* steps done of epoch `epoch` + 1 when a run stopped inside it (--max-steps),
                                    so that --resume goes on from there; 0: whole epochs (metadata "step",
                                    absent in older checkpoints) */
} attn_imdb_run_info;

/* Writes m's parameters, adam's moments (adam->n == m->n_params), the vocabulary and run to path,
 * atomically (attn_st_write: a temporary file renamed over path). */
attn_status attn_imdb_model_save(const attn_imdb_model *m, const attn_adam *adam, const attn_imdb_vocab *vocab,
                                 const attn_imdb_run_info *run, const char *path, char *err, size_t err_size);

/* Reads a checkpoint: initializes m for batches of up to Bmax reviews with context ctx (as
 * attn_imdb_model_init) and the checkpoint's V, T, D, and fills its parameters; the vocabulary goes to
 * *vocab (free it with attn_imdb_vocab_free) and the run to *run. adam, when not NULL, must have been made
 * with attn_adam_alloc for the model's n_params (else ATTN_ERR_SHAPE): it gets the moments and step count.
 * vocab, run and adam may be NULL. On failure m (and *vocab) are left empty and adam unchanged.
 * ATTN_ERR_IO when the file cannot be read, ATTN_ERR_FORMAT when it is not such a checkpoint. */
attn_status attn_imdb_model_load(attn_imdb_model *m, const attn_ctx *ctx, int Bmax, attn_adam *adam,
                                 attn_imdb_vocab *vocab, attn_imdb_run_info *run, const char *path, char *err,
                                 size_t err_size);

/* Reads only the model's configuration (V, T, D, the masks; the rest the experiment's) from a checkpoint's
 * metadata, e.g. to encode the data with its maxlen before loading the model. */
attn_status attn_imdb_model_read_config(const char *path, attn_imdb_config *c, char *err, size_t err_size);

/* Reads only the run's settings from a checkpoint's metadata, e.g. to load the data set it was trained
 * on before the model. A field whose metadata is missing keeps the value *run holds on entry; nothing
 * else in the file is checked (attn_imdb_model_load does that). */
attn_status attn_imdb_model_read_run(const char *path, attn_imdb_run_info *run, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_IMDB_MODEL_H */
