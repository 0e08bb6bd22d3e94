/*
 * attn/seq2seq.h — sequence to sequence with Bahdanau attention (the d2l book's English→French
 * experiment): the encoder–decoder model with its training step, greedy decoding and checkpoints. Its
 * layers (GRU, embedding, ...) are in attn/layers.h, the text pipeline (fra.txt pairs, vocabularies,
 * BLEU) in attn/data.h; this header includes both.
 *
 *     attn_nmt_pairs p;                         // lines 0..600 of fra.txt, preprocessed as d2l does
 *     attn_nmt_read(&p, "fra.txt", 0, 600, err, sizeof err);
 *     attn_vocab src, tgt;
 *     attn_vocab_build(&src, (const char *const *)p.src, p.n, 2);
 *     ...
 *     attn_seq2seq m;  attn_seq2seq_config c = {src.n, tgt.n, 32, 32, 2, 0.1f, 10, 64, ATTN_DTYPE_F32};
 *     attn_seq2seq_init(&m, &c, seed);          // X, Y (N,10) and lengths from attn_vocab_encode
 *     attn_adam opt;  attn_adam_alloc(&opt, m.n_params, 0.005f);
 *     for (int e = 0; e < 250; e++)
 *         attn_seq2seq_train_epoch(&m, &opt, &rng, X, X_len, Y, Y_len, N, 64, 1.0f, &seed, &loss_sum, &tokens);
 *     attn_seq2seq_translate(&m, out, &n_out, weights, src_ids, src_len);   // greedy, with attention
 */
#ifndef ATTN_SEQ2SEQ_H
#define ATTN_SEQ2SEQ_H

#include "layers.h"
#include "data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------------
 * The model: embedding → L-layer GRU encoder; decoder: at each step additive attention (query = the
 * decoder's top hidden state, keys = values = encoder outputs, masked by the source valid lengths),
 * the context concatenated with the input embedding ([context, embedding], as d2l), an L-layer GRU,
 * a dense layer to the target vocabulary. Initialized as d2l: Xavier-uniform for every linear and GRU
 * weight, PyTorch defaults for biases (U±1/sqrt(fan_in)) and embeddings (N(0,1)).
 * Parameters in one slab, in the state_dict order of d2l's EncoderDecoder (the checkpoint names):
 *   encoder.embedding.weight (Vs,E), encoder.rnn.* (in E), decoder.attention.W_k.weight (H,H),
 *   decoder.attention.W_q.weight (H,H), decoder.attention.w_v.weight (1,H), decoder.embedding.weight
 *   (Vt,E), decoder.rnn.* (in H+E), decoder.dense.weight (Vt,H), decoder.dense.bias (Vt).
 */
#define ATTN_SEQ2SEQ_MAX_STEPS 256
#define ATTN_SEQ2SEQ_SHARDS 2

typedef struct attn_seq2seq_config {
    int src_vocab, tgt_vocab;    /* Vs, Vt */
    int embed, hidden, layers;   /* E, H, L */
    float dropout;               /* GRU between layers and attention weights */
    int num_steps;               /* T: source and target length */
    int max_batch;               /* largest batch the activations are sized for */
    attn_dtype compute;          /* the additive attention's compute: F32 (0) or BF16 (its products in bf16
                                    where the path has bf16 units; attn_additive_desc says which) */
} attn_seq2seq_config;

typedef struct attn_seq2seq {
    attn_seq2seq_config cfg;
    float *params, *grads;       /* the slab: n_params each */
    size_t n_params;
    float *enc_emb, *att_wk, *att_wq, *att_wv, *dec_emb, *dense_w, *dense_b;       /* views */
    float *d_enc_emb, *d_att_wk, *d_att_wq, *d_att_wv, *d_dec_emb, *d_dense_w, *d_dense_b;
    attn_gru enc, dec;
    float *acts;                 /* activations and scratch for max_batch, one allocation */
    size_t acts_floats;
    void *work;                  /* attention workspace */
    size_t work_bytes;
    attn_ctx ctx;                /* the path and threads every call runs with */
    struct attn_seq2seq *shards; /* n_shards views sharing params, each with its own gradients
                                  * and activations: attn_seq2seq_train_epoch splits every batch in
                                  * these fixed parts (run on up to that many threads) and sums their
                                  * gradients in order, so results do not depend on the thread count */
    int n_shards;
} attn_seq2seq;

/* Allocates (parameters + gradients, activations, attention workspace; then per shard gradients,
 * activations and workspace) and initializes from seed. */
/* ctx (NULL: the default context now) is copied into the model; the training shards run with its path on
 * one thread each. */
attn_status attn_seq2seq_init(attn_seq2seq *m, const attn_ctx *ctx, const attn_seq2seq_config *cfg, uint64_t seed);
void        attn_seq2seq_free(attn_seq2seq *m);

/* One teacher-forced pass over a batch (decoder input = <bos> + Y[:, :-1]):
 *   X, Y (B,T) ids;  X_len, Y_len (B) valid lengths.
 *   *loss = Σ_b (Σ_{t < Y_len[b]} CE(b,t)) / T   (d2l's MaskedSoftmaxCELoss, summed over the batch).
 * With backward nonzero, accumulates (+=) the gradient of *loss into m->grads. train nonzero applies
 * dropout (masks a function of seed). */
attn_status attn_seq2seq_step(attn_seq2seq *m, float *loss,
                              const int32_t *X, const int32_t *X_len, const int32_t *Y, const int32_t *Y_len,
                              int B, int train, int backward, uint64_t seed);

/* Greedy decoding of one source (ids (T) and valid length, as attn_vocab_encode gives): out (T) gets
 * the predicted ids up to, not including, <eos>; *n_out their number. weights (T,T) or NULL: row i the
 * attention over the source positions at output step i (rows past *n_out + 1 zeroed; row *n_out is the
 * step that produced <eos>, when it was produced). */
attn_status attn_seq2seq_translate(attn_seq2seq *m, int32_t *out, int *n_out, float *weights,
                                   const int32_t *src, int src_len);

/* One epoch of d2l's training loop over N pairs: shuffled batches (order from rng), per batch zero the
 * gradients, step (split in the model's shards, on up to attn_get_num_threads() threads), clip to norm
 * clip, Adam. *loss_sum and *tokens get the epoch's totals (the printed
 * loss is loss_sum / tokens); *seed advances once per batch (the dropout seed). */
attn_status attn_seq2seq_train_epoch(attn_seq2seq *m, attn_adam *opt, attn_rng *rng,
                                     const int32_t *X, const int32_t *X_len,
                                     const int32_t *Y, const int32_t *Y_len, int N, int batch,
                                     float clip, uint64_t *seed, double *loss_sum, int64_t *tokens);

/* Cuts every training batch into n fixed shards (1 .. ATTN_MAX_SHARDS; ATTN_SEQ2SEQ_SHARDS after init and
 * load) of ceil(B/n) rows. The bits of an epoch depend on n, never on the threads or on how the shards are
 * split among processes. The old shards stay when it fails (ATTN_ERR_NOMEM). */
attn_status attn_seq2seq_set_shards(attn_seq2seq *m, int n);

/* Data parallel: the same epoch, but this process computes only shards [first, first + count) of each
 * batch and combine (attn/layers.h) adds every process's shard gradients in shard order; count 0 is
 * attn_seq2seq_train_epoch. Every process must call with the same data, rng and seed: the parameters then
 * stay bitwise those of one process running the whole epoch. */
attn_status attn_seq2seq_train_epoch_part(attn_seq2seq *m, attn_adam *opt, attn_rng *rng,
                                          const int32_t *X, const int32_t *X_len,
                                          const int32_t *Y, const int32_t *Y_len, int N, int batch,
                                          float clip, uint64_t *seed, double *loss_sum, int64_t *tokens,
                                          int first, int count, attn_shard_combine_fn combine, void *user);

/* One optimizer step of that epoch on a batch the caller gathered (its rows in the epoch's shuffled order):
 * X, Y (B,T) ids, X_len, Y_len (B). *seed advances once, as the epoch advances it per batch, and is the
 * step's dropout seed; then the step on shards [first, first + count) (count 0: all, on up to
 * attn_get_num_threads() threads), combine as in attn_seq2seq_train_epoch_part, clip, Adam. *loss the
 * batch's summed loss. A program that shuffles 0..N-1 with attn_rng_shuffle(rng, ...) once per epoch and
 * steps through the batches in that order gets the bits of attn_seq2seq_train_epoch_part, and can stop
 * and go on between any two steps (the ViT's attn_vit_train_step_part is the same shape). */
attn_status attn_seq2seq_train_step_part(attn_seq2seq *m, attn_adam *opt, const int32_t *X, const int32_t *X_len,
                                         const int32_t *Y, const int32_t *Y_len, int B, float clip, uint64_t *seed,
                                         int first, int count, attn_shard_combine_fn combine, void *user,
                                         float *loss);

/* Checkpoint: every parameter under its state_dict name, the config in the metadata. Atomic. */
attn_status attn_seq2seq_save(const attn_seq2seq *m, const char *path, char *err, size_t err_size);
/* Reads a checkpoint written by attn_seq2seq_save (or _save_train) into a new model (max_batch 1 unless
 * larger). */
attn_status attn_seq2seq_load(attn_seq2seq *m, const attn_ctx *ctx, const char *path, int max_batch, char *err,
                              size_t err_size);

/* A training checkpoint (atomic): what attn_seq2seq_save writes, plus with opt (or NULL) the optimizer's
 * moments (tensors optimizer.m, optimizer.v (n_params)) and step (metadata optimizer_t), plus n_extra
 * (<= 32) metadata pairs of the caller's (its run). load_train with opt non-NULL also allocates *opt with
 * the saved moments and step (lr and betas are the caller's to set); a checkpoint without them (saved by
 * attn_seq2seq_save) is ATTN_ERR_FORMAT with a message saying so. */
attn_status attn_seq2seq_save_train(const attn_seq2seq *m, const attn_adam *opt, const char *const *keys,
                                    const char *const *vals, int n_extra, const char *path, char *err,
                                    size_t err_size);
attn_status attn_seq2seq_load_train(attn_seq2seq *m, attn_adam *opt, const attn_ctx *ctx, const char *path,
                                    int max_batch, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_SEQ2SEQ_H */
