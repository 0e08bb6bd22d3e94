/*
 * nmt_common.h — internal pieces shared by the translation models (seq2seq.c, transformer.c), and by the
 * image models (caption.c, detr.c) for their checkpoints and token streams: the
 * sharded training epoch (shuffle, gather a batch, step on the model's shards, clip, Adam) and
 * checkpoints as a list of named float tensors plus numeric metadata. Not part of the public API.
 */
#ifndef ATTN_MODELS_NMT_COMMON_H
#define ATTN_MODELS_NMT_COMMON_H

#include "internal.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* A seed derived from seed for one purpose (what), e.g. a dropout mask. */
static inline uint64_t attn__nmt_sub_seed(uint64_t seed, uint64_t what) {
    return attn__mix64(seed ^ (what * 0x9e3779b97f4a7c15ULL));
}

/* Xavier-uniform init of a (fan_out, fan_in) weight. */
static inline void attn__nmt_xavier(attn_rng *r, float *w, int fan_out, int fan_in) {
    float a = sqrtf(6.0f / (float)(fan_in + fan_out));
    attn_rng_fill_uniform(r, w, (size_t)fan_out * fan_in, -a, a);
}

/* ATTN_ERR_ARG unless every one of the n ids is in [0, V). */
static inline attn_status attn__nmt_check_ids(const int32_t *ids, size_t n, int V) {
    for (size_t i = 0; i < n; i++) if (ids[i] < 0 || ids[i] >= V) return ATTN_ERR_ARG;
    return ATTN_OK;
}

/* One shard's training step: zero shard k's gradients and run the model's step on rows (n of them) of
 * the batch: X, Y (n,T) ids and their lengths (n). */
typedef attn_status (*attn__nmt_shard_step)(void *model, int k, float *loss, const int32_t *X, const int32_t *X_len,
                                            const int32_t *Y, const int32_t *Y_len, int n, uint64_t seed);

/* What the epoch driver needs of a model: its parameter/gradient slabs (n_params each), its shards'
 * gradients (n_shards ≤ ATTN__NMT_MAX_SHARDS) and the step of one shard. */
#define ATTN__NMT_MAX_SHARDS ATTN_MAX_SHARDS
typedef struct attn__nmt_trainer {
    void *model;
    attn__nmt_shard_step step;
    float *params, *grads;              /* (n_params) */
    float *shard_grads[ATTN__NMT_MAX_SHARDS]; /* (n_params) each */
    int n_shards;
    size_t n_params;
    int num_steps;                      /* T */
    /* data parallel (the *_train_epoch_part calls): only shards [first, first + count) here, then
     * combine; count 0 means every shard and the sum here */
    int first, count;
    attn_shard_combine_fn combine;
    void *user;
} attn__nmt_trainer;

/* A model's training shards replaced by ns new ones (attn_*_set_shards): an array of ns zeroed shards of
 * shard_size bytes, each made by init(model, shard, ns). On success the old ones (*shards, *n_shards) are
 * freed, free_one on each, and replaced; on failure the new ones are freed and the old stay. ns == *n_shards
 * does nothing; ns outside 1 .. ATTN_MAX_SHARDS: ATTN_ERR_ARG. */
attn_status attn__shards_replace(void *model, void **shards, int *n_shards, size_t shard_size, int ns,
                                 attn_status (*init)(void *model, void *shard, int ns), void (*free_one)(void *shard));
/* free_one on each of n shards of shard_size bytes, then the array. */
void attn__shards_free(void *shards, int n, size_t shard_size, void (*free_one)(void *shard));

/* One epoch: shuffle the N pairs with rng, then per batch: step split in the shards (on up to
 * attn_get_num_threads() threads, gradients summed in shard order), clip to clip, Adam. The caller has
 * checked the arguments. Adds the summed losses to *loss_sum and the target tokens to *tokens (both
 * reset first); *seed advances once per batch. */
attn_status attn__nmt_train_epoch(const attn__nmt_trainer *tr, attn_adam *opt, attn_rng *rng,
                                  const int32_t *X, const int32_t *X_len, const int32_t *Y, const int32_t *Y_len,
                                  int N, int batch, float clip, uint64_t *seed, double *loss_sum, int64_t *tokens);

/* Fills *tr for a model's training call (epoch or step) on shards [first, first + count) of batches up to
 * batch rows, after its checks: the optimizer sized for n_params, batch within max_batch, the shards within
 * n_shards and a combiner when count is not 0. The caller then sets tr->shard_grads. */
static inline attn_status attn__nmt_trainer_init(attn__nmt_trainer *tr, void *model, attn__nmt_shard_step step,
                                                 float *params, float *grads, size_t n_params, int n_shards,
                                                 int num_steps, int max_batch, const attn_adam *opt, int batch,
                                                 int first, int count, attn_shard_combine_fn combine, void *user) {
    if (batch < 1 || batch > max_batch) return ATTN_ERR_SIZE;
    if (opt->n != n_params) return ATTN_ERR_SHAPE;
    if (n_shards > ATTN__NMT_MAX_SHARDS) return ATTN_ERR_SIZE;
    if (count && !combine) return ATTN_ERR_NULL;
    if (count < 0 || first < 0 || first + count > n_shards) return ATTN_ERR_ARG;
    *tr = (attn__nmt_trainer){.model = model, .step = step, .params = params, .grads = grads, .n_shards = n_shards,
                              .n_params = n_params, .num_steps = num_steps, .first = first, .count = count,
                              .combine = combine, .user = user};
    return ATTN_OK;
}

/* One optimizer step of that epoch on a gathered batch: X, Y (B,T) ids, X_len, Y_len (B); *seed advanced
 * once first (the step's dropout seed), then the sharded step, clip, Adam. *loss the batch's summed loss.
 * The caller has checked the arguments. */
attn_status attn__nmt_train_step(const attn__nmt_trainer *tr, attn_adam *opt, const int32_t *X, const int32_t *X_len,
                                 const int32_t *Y, const int32_t *Y_len, int B, float clip, uint64_t *seed,
                                 float *loss);

/* A named float tensor of a checkpoint: ndim 1 (shape[0]) or 2 (shape[0], shape[1]). */
typedef struct attn__nmt_named { char name[64]; float *p; int ndim; int64_t shape[2]; } attn__nmt_named;

/* Appends a tensor to t[n]; returns n + 1. */
int attn__nmt_add(attn__nmt_named *t, int n, const char *name, float *p, int ndim, int64_t s0, int64_t s1);

/* Writes the n tensors and the n_meta metadata pairs to a safetensors file. */
attn_status attn__nmt_save(const char *path, const attn__nmt_named *t, int n, const char *const *meta_names,
                           const char *const *meta_vals, int n_meta, char *err, size_t err_size);

/* A training checkpoint: the n tensors (t has room for n + 2), then with opt the optimizer's moments (optimizer.m, optimizer.v) and
 * its step (metadata optimizer_t), the n_meta model pairs, then n_extra (<= 32) pairs of the caller's. */
attn_status attn__nmt_save_train(const char *path, attn__nmt_named *t, int n, const attn_adam *opt,
                                 const char *const *meta_names, const char *const *meta_vals, int n_meta,
                                 const char *const *keys, const char *const *vals, int n_extra, char *err,
                                 size_t err_size);

/* Reads metadata meta_names[i] as numbers in [0, 1e8) into v[i]; ATTN_ERR_FORMAT (err filled) when one is
 * missing or not a number. */
attn_status attn__nmt_meta_numbers(const attn_st_file *f, const char *path, const char *const *meta_names, int n,
                                   double *v, char *err, size_t err_size);
/* The same for one metadata key that older files lack: *v keeps its value when the key is absent. */
attn_status attn__nmt_meta_optional(const attn_st_file *f, const char *path, const char *name, int *v, char *err,
                                    size_t err_size);

/* Copies the n tensors from f (read from path) into t[i].p, checking each one's shape, and that every value
 * is finite: ATTN_ERR_FORMAT naming the path, the tensor and the element otherwise. */
attn_status attn__nmt_read_tensors(const attn_st_file *f, const char *path, const attn__nmt_named *t, int n, char *err,
                                   size_t err_size);

/* Allocates *opt for n_params and reads its moments (tensors optimizer.m, optimizer.v) from f, its step t:
 * ATTN_ERR_FORMAT naming the path when the file has none (a checkpoint saved without the optimizer). *opt
 * is freed again on any failure. */
attn_status attn__nmt_read_optimizer(const attn_st_file *f, const char *path, attn_adam *opt, size_t n_params,
                                     int64_t t, char *err, size_t err_size);

/* The image models' token streams (caption.c, detr.c). y (B,n,D) = x (B,n,D) + P (n,D) in every batch row. */
static inline void attn__nmt_add_rows(float *y, const float *x, const float *P, int B, int n, int D) {
    const size_t nd = (size_t)n * D;
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < nd; i++) y[(size_t)b * nd + i] = x[(size_t)b * nd + i] + P[i];
}

/* dP (n,D) += Σ_b dy (B,n,D): the gradient of what attn__nmt_add_rows broadcast. */
static inline void attn__nmt_sum_rows(float *dP, const float *dy, int B, int n, int D) {
    const size_t nd = (size_t)n * D;
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < nd; i++) dP[i] += dy[(size_t)b * nd + i];
}

/* x (n) drawn from N(0, std²). */
static inline void attn__nmt_normal(attn_rng *r, float *x, size_t n, float std) {
    for (size_t i = 0; i < n; i++) x[i] = std * attn_rng_normal(r);
}

#endif
