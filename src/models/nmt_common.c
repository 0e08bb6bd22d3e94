/*
 * nmt_common.c — what the translation models share: the sharded training epoch and checkpoints as named
 * float tensors with numeric metadata (see nmt_common.h).
 *
 * The sharded step splits a batch (B rows) into the model's n_shards fixed parts of ceil(B/n_shards) rows,
 * runs them on up to that many OpenMP threads, and sums the shards' gradients and losses in shard order:
 * the thread count does not change the result.
 */
#include "nmt_common.h"
#include "layers/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Training epoch.
 */
static attn_status step_sharded(const attn__nmt_trainer *tr, float *loss, const int32_t *X, const int32_t *X_len,
                                const int32_t *Y, const int32_t *Y_len, int B, uint64_t seed) {
    const int ns = tr->n_shards, T = tr->num_steps, per = (B + ns - 1) / ns;
    attn_status sts[ATTN__NMT_MAX_SHARDS];
    float losses[ATTN__NMT_MAX_SHARDS];
    int nth = attn_get_num_threads();
    const int k0 = tr->count ? tr->first : 0, k1 = tr->count ? tr->first + tr->count : ns;
    nth = nth < 1 ? 1 : nth > k1 - k0 ? k1 - k0 : nth;
    (void)nth;
    for (int k = 0; k < ns; k++) { losses[k] = 0.0f; sts[k] = ATTN_OK; }
    ATTN_OMP(omp parallel for num_threads(nth) schedule(static, 1) if (nth > 1))
    for (int k = k0; k < k1; k++) {
        const int lo = k * per, n = B - lo < per ? B - lo : per;
        if (n <= 0) continue;
        sts[k] = tr->step(tr->model, k, &losses[k], X + (size_t)lo * T, X_len + lo, Y + (size_t)lo * T, Y_len + lo,
                          n, attn__mix64(seed + (uint64_t)k));
    }
    if (tr->count) {                       /* data parallel: the caller's combiner adds every process's */
        for (int k = k0; k < k1; k++)
            if (sts[k] != ATTN_OK) return sts[k];
        const int n_used = (B + per - 1) / per;
        return tr->combine(tr->user, tr->grads, tr->n_params, tr->shard_grads, losses, k0, k1 - k0, n_used, loss);
    }
    memset(tr->grads, 0, sizeof(float) * tr->n_params);
    double sum = 0.0;
    for (int k = 0; k < ns; k++) {
        if (sts[k] != ATTN_OK) return sts[k];
        if (k * per >= B) continue;
        const float *g = tr->shard_grads[k];
        for (size_t i = 0; i < tr->n_params; i++) tr->grads[i] += g[i];
        sum += losses[k];
    }
    *loss = (float)sum;
    return ATTN_OK;
}

attn_status attn__nmt_train_step(const attn__nmt_trainer *tr, attn_adam *opt, const int32_t *X, const int32_t *X_len,
                                 const int32_t *Y, const int32_t *Y_len, int B, float clip, uint64_t *seed,
                                 float *loss) {
    if (tr->n_shards < 1 || tr->n_shards > ATTN__NMT_MAX_SHARDS) return ATTN_ERR_SIZE;
    *seed = attn__mix64(*seed + 0x2545F4914F6CDD1DULL);       /* this step's dropout seed */
    attn_status st = step_sharded(tr, loss, X, X_len, Y, Y_len, B, *seed);
    if (st == ATTN_OK) st = attn_clip_grad_norm(tr->grads, tr->n_params, clip, NULL);
    if (st == ATTN_OK) st = attn_adam_step(opt, tr->params, tr->grads);
    return st;
}

attn_status attn__nmt_train_epoch(const attn__nmt_trainer *tr, attn_adam *opt, attn_rng *rng,
                                  const int32_t *X, const int32_t *X_len, const int32_t *Y, const int32_t *Y_len,
                                  int N, int batch, float clip, uint64_t *seed, double *loss_sum, int64_t *tokens) {
    if (tr->n_shards < 1 || tr->n_shards > ATTN__NMT_MAX_SHARDS) return ATTN_ERR_SIZE;
    const int T = tr->num_steps;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)N);
    int32_t *bx = malloc(sizeof(int32_t) * ((size_t)batch * T * 2 + (size_t)batch * 2));
    if (!idx || !bx) { free(idx); free(bx); return ATTN_ERR_NOMEM; }
    int32_t *by = bx + (size_t)batch * T, *bxl = by + (size_t)batch * T, *byl = bxl + batch;
    for (int i = 0; i < N; i++) idx[i] = i;
    attn_rng_shuffle(rng, idx, (size_t)N);
    attn_status st = ATTN_OK;
    *loss_sum = 0.0;
    *tokens = 0;
    for (int start = 0; start < N && st == ATTN_OK; start += batch) {
        const int B = N - start < batch ? N - start : batch;
        for (int b = 0; b < B; b++) {                       /* gather the batch: (B,T) ids, (B) lengths */
            const int i = idx[start + b];
            memcpy(bx + (size_t)b * T, X + (size_t)i * T, sizeof(int32_t) * T);
            memcpy(by + (size_t)b * T, Y + (size_t)i * T, sizeof(int32_t) * T);
            bxl[b] = X_len[i];
            byl[b] = Y_len[i];
            *tokens += Y_len[i];
        }
        float loss = 0.0f;
        if ((st = attn__nmt_train_step(tr, opt, bx, bxl, by, byl, B, clip, seed, &loss)) != ATTN_OK) break;
        *loss_sum += loss;
    }
    free(idx);
    free(bx);
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * Checkpoints.
 */
static size_t numel(const attn__nmt_named *t) { return (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1); }

int attn__nmt_add(attn__nmt_named *t, int n, const char *name, float *p, int ndim, int64_t s0, int64_t s1) {
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].p = p; t[n].ndim = ndim; t[n].shape[0] = s0; t[n].shape[1] = s1;
    return n + 1;
}

attn_status attn__nmt_save(const char *path, const attn__nmt_named *t, int n, const char *const *meta_names,
                           const char *const *meta_vals, int n_meta, char *err, size_t err_size) {
    attn_st_tensor *st_t = calloc(n > 0 ? (size_t)n : 1, sizeof *st_t);
    if (!st_t) return ATTN_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        st_t[i].name = t[i].name;
        st_t[i].dtype = ATTN_DTYPE_F32;
        st_t[i].ndim = t[i].ndim;
        st_t[i].shape[0] = t[i].shape[0];
        st_t[i].shape[1] = t[i].shape[1];
        st_t[i].data = t[i].p;
        st_t[i].nbytes = sizeof(float) * numel(&t[i]);
    }
    attn_status st = attn_st_write(path, st_t, n, meta_names, meta_vals, n_meta, err, err_size);
    free(st_t);
    return st;
}

attn_status attn__nmt_save_train(const char *path, attn__nmt_named *t, int n, const attn_adam *opt,
                                 const char *const *meta_names, const char *const *meta_vals, int n_meta,
                                 const char *const *keys, const char *const *vals, int n_extra, char *err,
                                 size_t err_size) {
    enum { MAX_META = 24, MAX_EXTRA = 32 };
    if (n_meta < 0 || n_meta > MAX_META || n_extra < 0 || n_extra > MAX_EXTRA) return ATTN_ERR_SIZE;
    if (n_extra > 0 && (!keys || !vals)) return ATTN_ERR_NULL;
    const char *mk[MAX_META + 1 + MAX_EXTRA], *mv[MAX_META + 1 + MAX_EXTRA];
    char step[32];
    int k = 0;
    for (int i = 0; i < n_meta; i++, k++) { mk[k] = meta_names[i]; mv[k] = meta_vals[i]; }
    if (opt) {
        n = attn__nmt_add(t, n, "optimizer.m", opt->m, 1, (int64_t)opt->n, 0);
        n = attn__nmt_add(t, n, "optimizer.v", opt->v, 1, (int64_t)opt->n, 0);
        snprintf(step, sizeof step, "%lld", (long long)opt->t);
        mk[k] = "optimizer_t";
        mv[k++] = step;
    }
    for (int i = 0; i < n_extra; i++, k++) { mk[k] = keys[i]; mv[k] = vals[i]; }
    return attn__nmt_save(path, t, n, mk, mv, k, err, err_size);
}

attn_status attn__nmt_meta_numbers(const attn_st_file *f, const char *path, const char *const *meta_names, int n,
                                   double *v, char *err, size_t err_size) {
    for (int i = 0; i < n; i++) {
        const char *s = attn_st_meta(f, meta_names[i]);
        char *end = NULL;
        v[i] = s ? strtod(s, &end) : 0;
        if (!s || end == s || *end || !(v[i] >= 0 && v[i] < 1e8)) {
            if (err && err_size)
                snprintf(err, err_size, "%s: metadata '%s' missing or not a number", path, meta_names[i]);
            return ATTN_ERR_FORMAT;
        }
    }
    return ATTN_OK;
}

attn_status attn__nmt_meta_optional(const attn_st_file *f, const char *path, const char *name, int *v, char *err,
                                    size_t err_size) {
    if (!attn_st_meta(f, name)) return ATTN_OK;
    double d = 0;
    const attn_status st = attn__nmt_meta_numbers(f, path, &name, 1, &d, err, err_size);
    if (st == ATTN_OK) *v = (int)d;
    return st;
}

/* A parameter that is NaN or infinite is refused: training cannot recover from it, and every math helper
 * downstream would only pass it on (a checkpoint holding one is corrupt or diverged). */
attn_status attn__nmt_read_tensors(const attn_st_file *f, const char *path, const attn__nmt_named *t, int n, char *err,
                                   size_t err_size) {
    attn_status st = ATTN_OK;
    for (int i = 0; i < n && st == ATTN_OK; i++) {
        const float *data = NULL;
        st = attn_st_get_f32(f, t[i].name, t[i].ndim, t[i].shape, &data, err, err_size);
        if (st != ATTN_OK) break;
        const size_t cnt = numel(&t[i]);
        for (size_t j = 0; j < cnt; j++)
            if (!isfinite(data[j])) {
                if (err && err_size)
                    snprintf(err, err_size, "%s: tensor %s: element %zu is %g, expected a finite parameter", path,
                             t[i].name, j, (double)data[j]);
                return ATTN_ERR_FORMAT;
            }
        memcpy(t[i].p, data, sizeof(float) * cnt);
    }
    return st;
}

attn_status attn__nmt_read_optimizer(const attn_st_file *f, const char *path, attn_adam *opt, size_t n_params,
                                     int64_t t, char *err, size_t err_size) {
    if (!attn_st_find(f, "optimizer.m")) {
        attn__set_err(err, err_size, "%s: no optimizer state (tensors optimizer.m, optimizer.v) to resume from", path);
        return ATTN_ERR_FORMAT;
    }
    attn_status st = attn_adam_alloc(opt, n_params, 0.0f);
    if (st != ATTN_OK) return st;
    attn__nmt_named o[2];
    int n = attn__nmt_add(o, 0, "optimizer.m", opt->m, 1, (int64_t)n_params, 0);
    n = attn__nmt_add(o, n, "optimizer.v", opt->v, 1, (int64_t)n_params, 0);
    st = attn__nmt_read_tensors(f, path, o, n, err, err_size);
    opt->t = t;
    if (st != ATTN_OK) attn_adam_free(opt);
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * Training shards.
 */
void attn__shards_free(void *shards, int n, size_t shard_size, void (*free_one)(void *shard)) {
    for (int k = 0; shards && k < n; k++) free_one((char *)shards + (size_t)k * shard_size);
    free(shards);
}

attn_status attn__shards_replace(void *model, void **shards, int *n_shards, size_t shard_size, int ns,
                                 attn_status (*init)(void *model, void *shard, int ns), void (*free_one)(void *shard)) {
    if (ns < 1 || ns > ATTN_MAX_SHARDS) return ATTN_ERR_ARG;
    if (ns == *n_shards) return ATTN_OK;
    char *fresh = calloc((size_t)ns, shard_size);
    if (!fresh) return ATTN_ERR_NOMEM;
    attn_status st = ATTN_OK;
    int made = 0;                        /* a shard that failed is made too: zeroed, then part allocated */
    while (made < ns && st == ATTN_OK) st = init(model, fresh + (size_t)made++ * shard_size, ns);
    if (st != ATTN_OK) {
        attn__shards_free(fresh, made, shard_size, free_one);
        return st;
    }
    attn__shards_free(*shards, *n_shards, shard_size, free_one);
    *shards = fresh;
    *n_shards = ns;
    return ATTN_OK;
}

