/*
 * test_vit.c — the Vision Transformer and its layers: GELU, patch embedding, class token + positions,
 * AdamW and the warm-up + cosine schedule against PyTorch golden files (tools/golden/gen_vision.py), the
 * whole model's logits, loss and gradients against the same model in PyTorch, finite differences of the
 * model's loss, the attention rollout on hand-made weights, results independent of the thread count (for
 * any number of shards), checkpoints (save, load, refusals), and a short training on a fixture of
 * synthetic images whose loss must fall by a stated factor.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "attn/vit.h"
#include "attn/heatmap.h"
#include "testutil.h"

#include <string.h>
#include <unistd.h>

static const attn_vit_config small_cfg = {.image = 8, .channels = 1, .patch = 4, .dim = 8, .heads = 2, .blocks = 2,
                                          .mlp = 16, .classes = 3, .max_batch = 5};

/* ---------------------------------------------------------------------------------------------------
 * Against PyTorch (tests/golden/vision_*.safetensors, tools/golden/gen_vision.py).
 */
static void test_golden_layers(void) {
    attn_st_file f;
    tu_golden_open(&f, "vision_layers.safetensors");
    /* GELU */
    const float *gx = tu_golden_f32(&f, "gelu.x", 1, 57, 0, 0, 0), *gy = tu_golden_f32(&f, "gelu.y", 1, 57, 0, 0, 0);
    const float *gdy = tu_golden_f32(&f, "gelu.dy", 1, 57, 0, 0, 0), *gdx = tu_golden_f32(&f, "gelu.dx", 1, 57, 0, 0, 0);
    float y[64], dx[64];
    CHECK_STATUS(attn_gelu_forward(y, gx, 57), ATTN_OK);
    tu_close_f32("gelu forward", y, gy, 57, 1e-6, 1e-6);
    for (int i = 0; i < 57; i++) dx[i] = 1.0f;                  /* backward accumulates */
    CHECK_STATUS(attn_gelu_backward(dx, gdy, gx, 57), ATTN_OK);
    for (int i = 0; i < 57; i++) dx[i] -= 1.0f;
    tu_close_f32("gelu backward", dx, gdx, 57, 2e-6, 1e-5);

    /* every path's GELU gives the reference path's bits (its loops only widen; ragged length for the tails) */
    enum { NG = 1031 };
    static float gxs[NG], gdys[NG], yref[NG], dref[NG], yp[NG], dp[NG];
    for (int i = 0; i < NG; i++) {
        gxs[i] = -14.0f + 28.0f * (float)i / (NG - 1) + 1e-3f * (float)(i % 7);
        gdys[i] = 0.5f - (float)(i % 11) / 10.0f;
    }
    const attn_isa isa0 = attn_get_isa();
    CHECK_STATUS(attn_set_isa(ATTN_ISA_REF), ATTN_OK);
    memset(dref, 0, sizeof dref);
    CHECK_STATUS(attn_gelu_forward(yref, gxs, NG), ATTN_OK);
    CHECK_STATUS(attn_gelu_backward(dref, gdys, gxs, NG), ATTN_OK);
    int paths = 0;
    for (int isa = ATTN_ISA_SCALAR; isa < ATTN_ISA_COUNT; isa++) {
        if (isa == ATTN_ISA_AUTO || attn_set_isa((attn_isa)isa) != ATTN_OK) continue;
        memset(dp, 0, sizeof dp);
        CHECK_STATUS(attn_gelu_forward(yp, gxs, NG), ATTN_OK);
        CHECK_STATUS(attn_gelu_backward(dp, gdys, gxs, NG), ATTN_OK);
        const int same = memcmp(yp, yref, sizeof yp) == 0 && memcmp(dp, dref, sizeof dp) == 0;
        CHECK(same);
        if (!same) fprintf(stderr, "  gelu on path %s: not the reference path's bits\n", attn_isa_name((attn_isa)isa));
        paths++;
    }
    CHECK_STATUS(attn_set_isa(isa0), ATTN_OK);
    printf("  gelu: %d paths give the reference path's bits\n", paths);

    /* patch embedding: C 3, 8x12, P 4, D 5 */
    attn_patch_embed pe;
    float params[5 * 48 + 5], grads[5 * 48 + 5];
    CHECK(attn_patch_embed_n_params(3, 4, 5) == 5 * 48 + 5);
    CHECK_STATUS(attn_patch_embed_bind(&pe, 3, 8, 12, 4, 5, params, grads), ATTN_OK);
    CHECK(pe.Np == 6);
    memcpy(pe.w, tu_golden_f32(&f, "patch.w", 2, 5, 48, 0, 0), sizeof(float) * 240);
    memcpy(pe.b, tu_golden_f32(&f, "patch.b", 1, 5, 0, 0, 0), sizeof(float) * 5);
    memset(grads, 0, sizeof grads);
    const float *px = tu_golden_f32(&f, "patch.x", 4, 2, 3, 8, 12);
    size_t cb;
    CHECK_STATUS(attn_patch_embed_cache_bytes(&pe, 2, &cb), ATTN_OK);
    void *cache = malloc(cb);
    float py[2 * 6 * 5], pdx[2 * 3 * 8 * 12] = {0};
    CHECK_STATUS(attn_patch_embed_forward(&pe, cache, cb, py, px, 2), ATTN_OK);
    tu_close_f32("patch embedding forward", py, tu_golden_f32(&f, "patch.y", 3, 2, 6, 5, 0), 60, 1e-5, 1e-5);
    CHECK_STATUS(attn_patch_embed_backward(&pe, cache, cb, pdx, tu_golden_f32(&f, "patch.dy", 3, 2, 6, 5, 0), px, 2),
                 ATTN_OK);
    tu_close_f32("patch embedding dx", pdx, tu_golden_f32(&f, "patch.dx", 4, 2, 3, 8, 12), 2 * 3 * 96, 1e-5, 1e-5);
    tu_close_f32("patch embedding dw", pe.dw, tu_golden_f32(&f, "patch.dw", 2, 5, 48, 0, 0), 240, 1e-5, 1e-5);
    tu_close_f32("patch embedding db", pe.db, tu_golden_f32(&f, "patch.db", 1, 5, 0, 0, 0), 5, 1e-5, 1e-5);
    CHECK_STATUS(attn_patch_embed_forward(&pe, cache, cb - 1, py, px, 2), ATTN_ERR_WORKSPACE);
    CHECK_STATUS(attn_patch_embed_bind(&pe, 3, 8, 10, 4, 5, params, grads), ATTN_ERR_SHAPE);
    free(cache);

    /* class token + positions: B 2, N 3, D 4 */
    attn_cls_pos tok;
    float tp[4 + 16], tg[4 + 16] = {0};
    CHECK_STATUS(attn_cls_pos_bind(&tok, 3, 4, tp, tg), ATTN_OK);
    memcpy(tok.cls, tu_golden_f32(&f, "tok.cls", 1, 4, 0, 0, 0), sizeof(float) * 4);
    memcpy(tok.pos, tu_golden_f32(&f, "tok.pos", 2, 4, 4, 0, 0), sizeof(float) * 16);
    float ty[32], tdx[24] = {0};
    CHECK_STATUS(attn_cls_pos_forward(&tok, ty, tu_golden_f32(&f, "tok.x", 3, 2, 3, 4, 0), 2), ATTN_OK);
    tu_close_f32("class token + positions forward", ty, tu_golden_f32(&f, "tok.y", 3, 2, 4, 4, 0), 32, 1e-6, 1e-6);
    CHECK_STATUS(attn_cls_pos_backward(&tok, tdx, tu_golden_f32(&f, "tok.dy", 3, 2, 4, 4, 0), 2), ATTN_OK);
    tu_close_f32("class token + positions dx", tdx, tu_golden_f32(&f, "tok.dx", 3, 2, 3, 4, 0), 24, 1e-6, 1e-6);
    tu_close_f32("class token dcls", tok.dcls, tu_golden_f32(&f, "tok.dcls", 1, 4, 0, 0, 0), 4, 1e-6, 1e-6);
    tu_close_f32("positions dpos", tok.dpos, tu_golden_f32(&f, "tok.dpos", 2, 4, 4, 0, 0), 16, 1e-6, 1e-6);

    /* AdamW, 3 steps */
    attn_adam a;
    float p[37];
    CHECK_STATUS(attn_adam_alloc(&a, 37, 0.01f), ATTN_OK);
    a.weight_decay = 0.1f;
    memcpy(p, tu_golden_f32(&f, "adamw.p0", 1, 37, 0, 0, 0), sizeof p);
    for (int s = 0; s < 3; s++) {
        char nm[16];
        snprintf(nm, sizeof nm, "adamw.g%d", s);
        CHECK_STATUS(attn_adam_step(&a, p, tu_golden_f32(&f, nm, 1, 37, 0, 0, 0)), ATTN_OK);
    }
    tu_close_f32("AdamW, 3 steps", p, tu_golden_f32(&f, "adamw.p3", 1, 37, 0, 0, 0), 37, 1e-6, 1e-5);
    a.weight_decay = -1.0f;
    CHECK_STATUS(attn_adam_step(&a, p, p), ATTN_ERR_ARG);
    attn_adam_free(&a);
    attn_st_free(&f);
}

/* The overlapping patch embedding (kernel K > P, zero padding (K-P)/2) against Conv2d (golden cases a..d: C 3
 * and 1, square and not, K == P and K = 3P), its gradients against finite differences of sum(y · dy) (which
 * is linear in x, w and b, so central differences are exact up to rounding), K == P against the plain bind
 * bit for bit, and the refusals. */
static void test_patch_kernel(void) {
    attn_st_file f;
    tu_golden_open(&f, "vision_patch_kernel.safetensors");
    const char *const cases[4] = {"a", "b", "c", "d"};
    for (int ci = 0; ci < 4; ci++) {
        const char *cs = cases[ci], *meta = attn_st_meta(&f, cs);
        int B, C, Hi, Wi, P, K, D;
        CHECK(meta && sscanf(meta, "%d %d %d %d %d %d %d", &B, &C, &Hi, &Wi, &P, &K, &D) == 7);
        if (!meta) continue;
        const int Np = (Hi / P) * (Wi / P), CKK = C * K * K;
        const size_t np = attn_patch_embed_n_params(C, K, D), nx = (size_t)B * C * Hi * Wi, ny = (size_t)B * Np * D;
        CHECK(np == (size_t)D * CKK + D);
        float *params = malloc(sizeof(float) * np), *grads = calloc(np, sizeof(float));
        float *y = malloc(sizeof(float) * ny), *dx = calloc(nx, sizeof(float)), *x = malloc(sizeof(float) * nx);
        attn_patch_embed pe;
        CHECK_STATUS(attn_patch_embed_bind_kernel(&pe, C, Hi, Wi, P, K, D, params, grads), ATTN_OK);
        CHECK(pe.Np == Np && pe.K == K && pe.pad == (K - P) / 2);
        char nm[4][16];
        const char *const part[4] = {"x", "y", "dy", "dx"};
        for (int i = 0; i < 4; i++) snprintf(nm[i], sizeof nm[i], "%s.%s", cs, part[i]);
        char nw[16], nb[16], ndw[16], ndb[16];
        snprintf(nw, sizeof nw, "%s.w", cs); snprintf(nb, sizeof nb, "%s.b", cs);
        snprintf(ndw, sizeof ndw, "%s.dw", cs); snprintf(ndb, sizeof ndb, "%s.db", cs);
        memcpy(pe.w, tu_golden_f32(&f, nw, 2, D, CKK, 0, 0), sizeof(float) * (size_t)D * CKK);
        memcpy(pe.b, tu_golden_f32(&f, nb, 1, D, 0, 0, 0), sizeof(float) * D);
        memcpy(x, tu_golden_f32(&f, nm[0], 4, B, C, Hi, Wi), sizeof(float) * nx);
        const float *gdy = tu_golden_f32(&f, nm[2], 3, B, Np, D, 0);
        size_t cb;
        CHECK_STATUS(attn_patch_embed_cache_bytes(&pe, B, &cb), ATTN_OK);
        void *cache = malloc(cb);
        char what[96];
        CHECK_STATUS(attn_patch_embed_forward(&pe, cache, cb, y, x, B), ATTN_OK);
        snprintf(what, sizeof what, "patch kernel %s (C %d, %dx%d, P %d, K %d) forward", cs, C, Hi, Wi, P, K);
        tu_close_f32(what, y, tu_golden_f32(&f, nm[1], 3, B, Np, D, 0), ny, 1e-5, 1e-5);
        CHECK_STATUS(attn_patch_embed_backward(&pe, cache, cb, dx, gdy, x, B), ATTN_OK);
        snprintf(what, sizeof what, "patch kernel %s dx", cs);
        tu_close_f32(what, dx, tu_golden_f32(&f, nm[3], 4, B, C, Hi, Wi), nx, 1e-5, 1e-5);
        snprintf(what, sizeof what, "patch kernel %s dw", cs);
        tu_close_f32(what, pe.dw, tu_golden_f32(&f, ndw, 2, D, CKK, 0, 0), (size_t)D * CKK, 1e-5, 1e-5);
        snprintf(what, sizeof what, "patch kernel %s db", cs);
        tu_close_f32(what, pe.db, tu_golden_f32(&f, ndb, 1, D, 0, 0, 0), D, 1e-5, 1e-5);

        /* finite differences of s = sum(y · dy), in double, over every pixel, weight and bias */
        double worst = 0.0;
        const double h = 0.25;
        for (size_t i = 0; i < nx + np; i++) {
            float *v = i < nx ? &x[i] : &params[i - nx];
            const float g = i < nx ? dx[i] : grads[i - nx], v0 = *v;
            double s[2];
            for (int t = 0; t < 2; t++) {
                *v = (float)(v0 + (t ? -h : h));
                CHECK_STATUS(attn_patch_embed_forward(&pe, cache, cb, y, x, B), ATTN_OK);
                s[t] = 0.0;
                for (size_t j = 0; j < ny; j++) s[t] += (double)y[j] * gdy[j];
            }
            *v = v0;
            const double fd = (s[0] - s[1]) / (2 * h), e = fabs(fd - g) / (1.0 + fabs(fd));
            if (e > worst) worst = e;
        }
        printf("  patch kernel %s: finite differences, max rel error %.2e over %zu values\n", cs, worst, nx + np);
        CHECK(worst < 1e-4);

        /* K == P is the plain bind's layer, bit for bit */
        if (K == P) {
            attn_patch_embed pp;
            float *y2 = malloc(sizeof(float) * ny);
            CHECK_STATUS(attn_patch_embed_bind(&pp, C, Hi, Wi, P, D, params, NULL), ATTN_OK);
            CHECK_STATUS(attn_patch_embed_forward(&pp, cache, cb, y2, x, B), ATTN_OK);
            CHECK_STATUS(attn_patch_embed_forward(&pe, cache, cb, y, x, B), ATTN_OK);
            CHECK(memcmp(y, y2, sizeof(float) * ny) == 0);
            free(y2);
        }
        free(cache); free(params); free(grads); free(y); free(dx); free(x);
    }
    attn_st_free(&f);

    /* refusals: K < P, K - P odd, K > 3P, sizes that overflow; nothing bound after a refusal */
    attn_patch_embed pe;
    float w[8];
    CHECK_STATUS(attn_patch_embed_bind_kernel(&pe, 1, 28, 28, 7, 5, 8, w, NULL), ATTN_ERR_SHAPE);
    CHECK_STATUS(attn_patch_embed_bind_kernel(&pe, 1, 28, 28, 7, 12, 8, w, NULL), ATTN_ERR_SHAPE);
    CHECK_STATUS(attn_patch_embed_bind_kernel(&pe, 1, 28, 28, 7, 23, 8, w, NULL), ATTN_ERR_SHAPE);
    CHECK(pe.w == NULL);
    CHECK_STATUS(attn_patch_embed_bind_kernel(&pe, 1, 28, 28, 7, 0, 8, w, NULL), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_patch_embed_bind_kernel(&pe, 1, 28, 28, 7, -7, 8, w, NULL), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_patch_embed_bind_kernel(&pe, 1, 28, 28, 7, 13, 8, NULL, NULL), ATTN_ERR_NULL);
    CHECK_STATUS(attn_patch_embed_bind_kernel(&pe, 4096, 28, 28, 7, 21, 1 << 20, w, NULL), ATTN_ERR_SIZE);
    CHECK(attn_patch_embed_n_params(65536, 21, 65536) == 0);
    CHECK(attn_patch_embed_n_params(1, 13, 128) == 128 * 169 + 128);
}

/* Label smoothing: the layer against CrossEntropyLoss(label_smoothing=eps) (eps 0.1 and 0.3, a row of logits
 * ±40), refusals; the ViT's loss with m.label_smoothing is the smoothed loss of its own logits, and eps 0
 * keeps the plain loss's bits. */
static void test_label_smoothing(void) {
    attn_st_file f;
    tu_golden_open(&f, "vision_label_smoothing.safetensors");
    const float *logits = tu_golden_f32(&f, "ls.logits", 2, 7, 10, 0, 0), *dloss = tu_golden_f32(&f, "ls.dloss", 1, 7, 0, 0, 0);
    const int32_t *tg = tu_golden_i32(&f, "ls.targets", 7);
    const float eps[2] = {0.1f, 0.3f};
    for (int e = 0; e < 2; e++) {
        char nl[32], nd[32], what[64];
        snprintf(nl, sizeof nl, "ls%d.loss", e ? 3 : 1);
        snprintf(nd, sizeof nd, "ls%d.dlogits", e ? 3 : 1);
        float loss[7], probs[70], dl[70];
        for (int i = 0; i < 70; i++) dl[i] = 0.5f;                 /* backward accumulates */
        CHECK_STATUS(attn_softmax_xent_smooth_forward(loss, probs, logits, tg, eps[e], 7, 10), ATTN_OK);
        snprintf(what, sizeof what, "label smoothing %.1f loss", (double)eps[e]);
        tu_close_f32(what, loss, tu_golden_f32(&f, nl, 1, 7, 0, 0, 0), 7, 1e-5, 1e-5);
        CHECK_STATUS(attn_softmax_xent_smooth_backward(dl, dloss, probs, tg, eps[e], 7, 10), ATTN_OK);
        for (int i = 0; i < 70; i++) dl[i] -= 0.5f;
        snprintf(what, sizeof what, "label smoothing %.1f dlogits", (double)eps[e]);
        tu_close_f32(what, dl, tu_golden_f32(&f, nd, 2, 7, 10, 0, 0), 70, 1e-6, 1e-5);
    }
    float loss[7], probs[70];
    CHECK_STATUS(attn_softmax_xent_smooth_forward(loss, probs, logits, tg, 1.0f, 7, 10), ATTN_ERR_ARG);
    CHECK_STATUS(attn_softmax_xent_smooth_forward(loss, probs, logits, tg, -0.1f, 7, 10), ATTN_ERR_ARG);
    CHECK_STATUS(attn_softmax_xent_smooth_forward(loss, probs, logits, tg, NAN, 7, 10), ATTN_ERR_ARG);
    CHECK_STATUS(attn_softmax_xent_smooth_backward(probs, loss, probs, tg, 1.5f, 7, 10), ATTN_ERR_ARG);
    attn_st_free(&f);

    /* the model: its smoothed mean loss from its own logits, in double */
    attn_vit m;
    CHECK_STATUS(attn_vit_init(&m, NULL, &small_cfg, 9), ATTN_OK);
    float img[5 * 64], lg[15], l0, l1, lref = 0;
    tu_fill(img, 5 * 64, 12);
    const int32_t lab[5] = {0, 2, 1, 1, 0};
    CHECK_STATUS(attn_vit_forward(&m, lg, NULL, img, 5), ATTN_OK);
    CHECK_STATUS(attn_vit_loss_grad(&m, img, lab, 5, &l0), ATTN_OK);
    float *g0 = malloc(sizeof(float) * m.n_params);
    memcpy(g0, m.grads, sizeof(float) * m.n_params);
    m.label_smoothing = 0.2f;
    CHECK_STATUS(attn_vit_loss_grad(&m, img, lab, 5, &l1), ATTN_OK);
    double want = 0;
    for (int b = 0; b < 5; b++) {
        const float *x = lg + 3 * b;
        double mx = x[0] > x[1] ? x[0] : x[1];
        mx = mx > x[2] ? mx : x[2];
        const double lse = mx + log(exp(x[0] - mx) + exp(x[1] - mx) + exp(x[2] - mx));
        want += 0.8 * (lse - x[lab[b]]) + 0.2 * (lse - (x[0] + x[1] + x[2]) / 3.0);
    }
    lref = (float)(want / 5);
    tu_close_f32("ViT mean loss, label smoothing 0.2", &l1, &lref, 1, 1e-6, 1e-5);
    CHECK(l1 != l0 && memcmp(g0, m.grads, sizeof(float) * m.n_params) != 0);
    m.label_smoothing = 0.0f;
    CHECK_STATUS(attn_vit_loss_grad(&m, img, lab, 5, &l1), ATTN_OK);
    CHECK(l1 == l0 && memcmp(g0, m.grads, sizeof(float) * m.n_params) == 0);
    m.label_smoothing = 1.0f;
    CHECK_STATUS(attn_vit_loss_grad(&m, img, lab, 5, &l1), ATTN_ERR_ARG);
    free(g0);
    attn_vit_free(&m);
}

/* The whole model: the golden file is itself a checkpoint (the parameters under their names, the config in
 * the metadata), with inputs, logits, loss and every gradient. */
static void test_golden_model(const char *file, int patch_kernel) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s", ATTN_GOLDEN_DIR, file);
    attn_vit m;
    CHECK_STATUS(attn_vit_load(&m, NULL, NULL, path, 5, err, sizeof err), ATTN_OK);
    CHECK(m.cfg.patch_kernel == patch_kernel);
    printf("  %s (patch kernel %d)\n", file, patch_kernel ? patch_kernel : m.cfg.patch);
    attn_st_file f;
    tu_golden_open(&f, file);
    const float *img = tu_golden_f32(&f, "input.images", 4, 5, 1, 8, 8);
    const int32_t *lab = tu_golden_i32(&f, "input.labels", 5);
    float logits[15], loss;
    CHECK_STATUS(attn_vit_forward(&m, logits, NULL, img, 5), ATTN_OK);
    tu_close_f32("ViT logits", logits, tu_golden_f32(&f, "out.logits", 2, 5, 3, 0, 0), 15, 1e-5, 1e-4);
    CHECK_STATUS(attn_vit_loss_grad(&m, img, lab, 5, &loss), ATTN_OK);
    tu_close_f32("ViT mean loss", &loss, tu_golden_f32(&f, "out.loss", 1, 1, 0, 0, 0), 1, 1e-6, 1e-5);
    /* every gradient, by name: the gradient slab has the parameter slab's layout */
    int n_t = 0;
    double worst = 0;
    for (int i = 0; i < f.n; i++) {
        const attn_st_tensor *t = &f.tensors[i];
        if (strncmp(t->name, "grad.", 5) != 0) continue;
        const attn_st_tensor *pt = attn_st_find(&f, t->name + 5);
        CHECK(pt != NULL);
        if (!pt) continue;
        /* find the parameter in the slab by its values (each golden tensor is a copy of the slab's) */
        const size_t n = pt->nbytes / sizeof(float);
        const float *pv = (const float *)pt->data, *gv = (const float *)t->data;
        size_t at = SIZE_MAX;
        for (size_t o = 0; o + n <= m.n_params; o++)
            if (memcmp(m.params + o, pv, pt->nbytes) == 0) { at = o; break; }
        CHECK(at != SIZE_MAX);
        if (at == SIZE_MAX) { fprintf(stderr, "  %s not found in the slab\n", pt->name); continue; }
        for (size_t k = 0; k < n; k++) {
            double e = fabs((double)m.grads[at + k] - gv[k]);
            if (e > worst) worst = e;
            if (e > 2e-5 + 1e-4 * fabs(gv[k])) {
                CHECK(0);
                fprintf(stderr, "  %s[%zu]: %.8g, PyTorch %.8g\n", t->name, k, (double)m.grads[at + k], (double)gv[k]);
                break;
            }
        }
        n_t++;
    }
    printf("  ViT gradients of %d tensors against PyTorch: max_abs=%.3g\n", n_t, worst);
    CHECK(n_t == 4 + 16 * 2 + 4);
    attn_st_free(&f);
    attn_vit_free(&m);
}

/* The schedule at its corners. */
static void test_schedule(void) {
    CHECK(fabsf(attn_lr_warmup_cosine(0, 4, 20, 1e-3f, 1e-5f) - 2.5e-4f) < 1e-9f);
    CHECK(fabsf(attn_lr_warmup_cosine(3, 4, 20, 1e-3f, 1e-5f) - 1e-3f) < 1e-9f);
    CHECK(fabsf(attn_lr_warmup_cosine(4, 4, 20, 1e-3f, 1e-5f) - 1e-3f) < 1e-9f);
    CHECK(fabsf(attn_lr_warmup_cosine(12, 4, 20, 1e-3f, 1e-5f) - 5.05e-4f) < 1e-8f);   /* half way: the mean */
    CHECK(fabsf(attn_lr_warmup_cosine(20, 4, 20, 1e-3f, 1e-5f) - 1e-5f) < 1e-10f);
    CHECK(fabsf(attn_lr_warmup_cosine(99, 4, 20, 1e-3f, 1e-5f) - 1e-5f) < 1e-10f);
}

/* Finite differences of the model's mean loss against its gradient, on a sample of parameters. */
static void test_fd(void) {
    attn_vit m;
    CHECK_STATUS(attn_vit_init(&m, NULL, &small_cfg, 7), ATTN_OK);
    const int B = 5;
    float img[5 * 64];
    tu_fill(img, sizeof img / sizeof *img, 3);
    const int32_t lab[5] = {0, 2, 1, 1, 0};
    float loss;
    CHECK_STATUS(attn_vit_loss_grad(&m, img, lab, B, &loss), ATTN_OK);
    float *g = malloc(sizeof(float) * m.n_params);
    memcpy(g, m.grads, sizeof(float) * m.n_params);
    /* every 7th parameter (all tensors are reached), central differences in float with h = 1e-2 */
    size_t n = 0;
    double max_abs = 0, worst_rel = 0;
    int bad = 0;
    for (size_t i = 0; i < m.n_params; i += 7, n++) {
        const float keep = m.params[i], h = 1e-2f;
        float lp, lm;
        m.params[i] = keep + h;
        attn_vit_loss_grad(&m, img, lab, B, &lp);
        m.params[i] = keep - h;
        attn_vit_loss_grad(&m, img, lab, B, &lm);
        m.params[i] = keep;
        const double fd = ((double)lp - lm) / (2.0 * h), a = fabs(fd - g[i]);
        if (a > max_abs) max_abs = a;
        if (a > 2e-3 + 0.05 * fabs(fd)) {
            if (bad < 5) fprintf(stderr, "  param %zu: fd %.6g grad %.6g\n", i, fd, (double)g[i]);
            bad++;
        }
        if (fabs(fd) > 1e-2 && a / fabs(fd) > worst_rel) worst_rel = a / fabs(fd);
    }
    printf("  finite differences of the loss: %zu parameters, max_abs=%.3g max_rel=%.3g (|fd|>1e-2) %s\n", n, max_abs,
           worst_rel, bad ? "FAIL" : "ok");
    CHECK(bad == 0);
    free(g);
    attn_vit_free(&m);
}

/* The same loss and gradients whatever the thread count, for the default shards and for any number set
 * (more than the batch's images too); bad counts are refused and leave the shards as they were. */
static void test_threads(void) {
    const int B = 5;
    float img[5 * 64];
    tu_fill(img, sizeof img / sizeof *img, 11);
    const int32_t lab[5] = {2, 2, 1, 0, 0};
    const int counts[5] = {0, 1, 3, 4, 7};       /* 0: the default, ATTN_VIT_SHARDS */
    for (int i = 0; i < 5; i++) {
        float *ref = NULL, lref = 0;
        for (int th = 1; th <= 2; th++) {
            attn_ctx c;
            CHECK_STATUS(attn_ctx_init(&c, ATTN_ISA_AUTO, th), ATTN_OK);
            attn_vit m;
            CHECK_STATUS(attn_vit_init(&m, &c, &small_cfg, 9), ATTN_OK);
            CHECK(m.n_shards == ATTN_VIT_SHARDS);
            if (counts[i]) CHECK_STATUS(attn_vit_set_shards(&m, counts[i]), ATTN_OK);
            const int ns = m.n_shards;
            CHECK(ns == (counts[i] ? counts[i] : ATTN_VIT_SHARDS));
            float loss;
            CHECK_STATUS(attn_vit_loss_grad(&m, img, lab, B, &loss), ATTN_OK);
            if (!ref) {
                ref = malloc(sizeof(float) * m.n_params);
                memcpy(ref, m.grads, sizeof(float) * m.n_params);
                lref = loss;
            } else {
                CHECK(loss == lref && memcmp(ref, m.grads, sizeof(float) * m.n_params) == 0);
            }
            CHECK_STATUS(attn_vit_set_shards(&m, 0), ATTN_ERR_ARG);
            CHECK_STATUS(attn_vit_set_shards(&m, ATTN_MAX_SHARDS + 1), ATTN_ERR_ARG);
            CHECK(m.n_shards == ns);
            attn_vit_free(&m);
        }
        free(ref);
    }
    CHECK_STATUS(attn_vit_set_shards(NULL, 2), ATTN_ERR_NULL);
}

static void test_rollout(void) {
    /* one block, one head, T = 2: W = [[0.5 0.5] [0 1]] -> A = rownorm(0.5 W + 0.5 I) = [[.75 .25] [0 1]] */
    const float w1[4] = {0.5f, 0.5f, 0.0f, 1.0f};
    float r[2];
    CHECK_STATUS(attn_vit_rollout(r, w1, 1, 1, 2), ATTN_OK);
    CHECK(fabsf(r[0] - 0.75f) < 1e-6f && fabsf(r[1] - 0.25f) < 1e-6f);
    /* two blocks of the same: A·A, row 0 = [.5625, .25·.75 + .25] */
    const float w2[8] = {0.5f, 0.5f, 0.0f, 1.0f, 0.5f, 0.5f, 0.0f, 1.0f};
    CHECK_STATUS(attn_vit_rollout(r, w2, 2, 1, 2), ATTN_OK);
    CHECK(fabsf(r[0] - 0.5625f) < 1e-6f && fabsf(r[1] - 0.4375f) < 1e-6f);
    CHECK_STATUS(attn_vit_rollout(r, NULL, 1, 1, 2), ATTN_ERR_NULL);
    CHECK_STATUS(attn_vit_rollout(r, w1, 0, 1, 2), ATTN_ERR_SIZE);
}

static void test_config(void) {
    attn_vit_config c = small_cfg;
    attn_vit m;
    c.patch = 3;
    CHECK_STATUS(attn_vit_init(&m, NULL, &c, 1), ATTN_ERR_SHAPE);
    c = small_cfg; c.heads = 3;
    CHECK_STATUS(attn_vit_init(&m, NULL, &c, 1), ATTN_ERR_SHAPE);
    c = small_cfg; c.blocks = ATTN_VIT_MAX_BLOCKS + 1;
    CHECK_STATUS(attn_vit_init(&m, NULL, &c, 1), ATTN_ERR_SIZE);
    c = small_cfg; c.dim = 0;
    CHECK_STATUS(attn_vit_init(&m, NULL, &c, 1), ATTN_ERR_SIZE);
    /* the patch kernel (P 4): under P, K - P odd, over 3P, negative */
    const int bad_k[4] = {3, 7, 14, -4};
    const attn_status bad_k_st[4] = {ATTN_ERR_SHAPE, ATTN_ERR_SHAPE, ATTN_ERR_SHAPE, ATTN_ERR_SIZE};
    for (int i = 0; i < 4; i++) {
        c = small_cfg; c.patch_kernel = bad_k[i];
        CHECK_STATUS(attn_vit_config_check(&c), bad_k_st[i]);
        CHECK_STATUS(attn_vit_init(&m, NULL, &c, 1), bad_k_st[i]);
    }
    /* patch_kernel P is 0's model, bit for bit; 8 has the larger weight */
    c = small_cfg; c.patch_kernel = 4;
    attn_vit m0, m4;
    CHECK_STATUS(attn_vit_init(&m0, NULL, &small_cfg, 3), ATTN_OK);
    CHECK_STATUS(attn_vit_init(&m4, NULL, &c, 3), ATTN_OK);
    CHECK(m0.n_params == m4.n_params && memcmp(m0.params, m4.params, sizeof(float) * m0.n_params) == 0);
    attn_vit_free(&m4);
    c.patch_kernel = 8;
    CHECK_STATUS(attn_vit_init(&m4, NULL, &c, 3), ATTN_OK);
    CHECK(m4.n_params == m0.n_params + 8 * (64 - 16) && m4.T == m0.T);
    attn_vit_free(&m4);
    attn_vit_free(&m0);
    CHECK_STATUS(attn_vit_init(&m, NULL, &small_cfg, 1), ATTN_OK);
    float img[6 * 64] = {0}, logits[18];
    const int32_t bad[1] = {3};
    CHECK_STATUS(attn_vit_forward(&m, logits, NULL, img, 6), ATTN_ERR_SIZE);     /* over max_batch */
    float loss;
    CHECK_STATUS(attn_vit_loss_grad(&m, img, bad, 1, &loss), ATTN_ERR_ARG);       /* label out of range */
    attn_vit_free(&m);
}

/* Save, load (with the optimizer), the same logits; a truncated file and a foreign checkpoint refused. */
static void test_checkpoint(void) {
    char dir[] = "/tmp/attn_vit_XXXXXX", path[128], err[512];
    if (!mkdtemp(dir)) { CHECK(0); return; }
    snprintf(path, sizeof path, "%s/vit.safetensors", dir);
    attn_vit m, r;
    attn_adam opt, ropt;
    CHECK_STATUS(attn_vit_init(&m, NULL, &small_cfg, 5), ATTN_OK);
    CHECK_STATUS(attn_adam_alloc(&opt, m.n_params, 1e-3f), ATTN_OK);
    float img[2 * 64], l1[6], l2[6];
    tu_fill(img, 128, 4);
    const int32_t lab[2] = {1, 2};
    CHECK_STATUS(attn_vit_train_step(&m, &opt, img, lab, 2, 1.0f, NULL, NULL), ATTN_OK);
    const char *keys[1] = {"epoch"}, *vals[1] = {"3"};
    CHECK_STATUS(attn_vit_save(&m, &opt, keys, vals, 1, path, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn_vit_load(&r, &ropt, NULL, path, 2, err, sizeof err), ATTN_OK);
    CHECK(r.n_params == m.n_params && memcmp(r.params, m.params, sizeof(float) * m.n_params) == 0);
    CHECK(ropt.t == 1 && memcmp(ropt.v, opt.v, sizeof(float) * opt.n) == 0);
    CHECK_STATUS(attn_vit_forward(&m, l1, NULL, img, 2), ATTN_OK);
    CHECK_STATUS(attn_vit_forward(&r, l2, NULL, img, 2), ATTN_OK);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);
    attn_vit_free(&r);
    attn_adam_free(&ropt);
    /* the metadata "patch_kernel" is written only when K != P (a plain ViT's file keeps its bytes) */
    attn_st_file sf;
    CHECK_STATUS(attn_st_read(&sf, path, 0, err, sizeof err), ATTN_OK);
    CHECK(attn_st_meta(&sf, "patch_kernel") == NULL);
    attn_st_free(&sf);
    attn_vit_config ck = small_cfg;
    ck.patch_kernel = 8;
    attn_vit mk;
    CHECK_STATUS(attn_vit_init(&mk, NULL, &ck, 5), ATTN_OK);
    CHECK_STATUS(attn_vit_save(&mk, NULL, NULL, NULL, 0, path, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn_st_read(&sf, path, 0, err, sizeof err), ATTN_OK);
    CHECK(attn_st_meta(&sf, "patch_kernel") && strcmp(attn_st_meta(&sf, "patch_kernel"), "8") == 0);
    attn_st_free(&sf);
    CHECK_STATUS(attn_vit_load(&r, NULL, NULL, path, 2, err, sizeof err), ATTN_OK);
    CHECK(r.cfg.patch_kernel == 8 && r.n_params == mk.n_params &&
          memcmp(r.params, mk.params, sizeof(float) * mk.n_params) == 0);
    CHECK_STATUS(attn_vit_forward(&mk, l1, NULL, img, 2), ATTN_OK);
    CHECK_STATUS(attn_vit_forward(&r, l2, NULL, img, 2), ATTN_OK);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);
    attn_vit_free(&r);
    attn_vit_free(&mk);
    CHECK(truncate(path, 200) == 0);
    CHECK(attn_vit_load(&r, NULL, NULL, path, 2, err, sizeof err) != ATTN_OK && strstr(err, path));
    printf("  truncated checkpoint: %s\n", err);
    attn_vit_free(&m);
    attn_adam_free(&opt);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* A fixture of synthetic 28x28 images, three classes told apart by where a bright bar lies (top rows,
 * left columns, the diagonal), with noise; a small ViT trained on 300 of them for a few epochs must bring
 * its mean loss under a third of the first epoch's. */
static void make_images(float *x, int32_t *y, int n, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        const int c = i % 3;
        y[i] = c;
        float *im = x + (size_t)i * 784;
        for (int p = 0; p < 784; p++) im[p] = 0.3f * tu_rnd_f(&seed);
        const int off = tu_rnd_int(&seed, 0, 16);
        for (int k = 0; k < 12; k++) {
            const int a = off + k, b = tu_rnd_int(&seed, 4, 8);
            if (c == 0) im[b * 28 + a] += 2.0f;
            else if (c == 1) im[a * 28 + b] += 2.0f;
            else im[a * 28 + a] += 2.0f;
        }
    }
}

static void test_train(void) {
    const int n = getenv("ATTN_SANITIZED") ? 120 : 300, B = 30, epochs = getenv("ATTN_SANITIZED") ? 4 : 6;
    float *x = malloc(sizeof(float) * 784 * (size_t)n);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    make_images(x, y, n, 42);
    attn_vit_config c = {.image = 28, .channels = 1, .patch = 7, .dim = 32, .heads = 4, .blocks = 2, .mlp = 64,
                         .classes = 3, .max_batch = B};
    attn_vit m;
    attn_adam opt;
    CHECK_STATUS(attn_vit_init(&m, NULL, &c, 1), ATTN_OK);
    CHECK_STATUS(attn_adam_alloc(&opt, m.n_params, 1e-3f), ATTN_OK);
    opt.weight_decay = 0.05f;
    const int steps = epochs * (n / B);
    double first = 0, last = 0;
    int correct_last = 0;
    for (int e = 0; e < epochs; e++) {
        double sum = 0;
        int correct = 0;
        for (int s = 0; s < n / B; s++) {
            opt.lr = attn_lr_warmup_cosine(e * (n / B) + s, n / B, steps, 3e-3f, 1e-5f);
            float loss;
            int ok;
            CHECK_STATUS(attn_vit_train_step(&m, &opt, x + (size_t)s * B * 784, y + s * B, B, 1.0f, &loss, &ok),
                         ATTN_OK);
            sum += loss;
            correct += ok;
        }
        sum /= n / B;
        printf("  epoch %d: loss %.4f acc %.3f\n", e + 1, sum, (double)correct / n);
        if (e == 0) first = sum;
        last = sum;
        correct_last = correct;
    }
    printf("  training on %d synthetic images: loss %.4f -> %.4f (must fall below a third)\n", n, first, last);
    CHECK(last < first / 3.0);
    CHECK(correct_last > n * 8 / 10);
    attn_vit_free(&m);
    attn_adam_free(&opt);
    free(x);
    free(y);
}

/* The picture predict draws: a PNG of the expected size; bad arguments refused. */
static void test_overlay(void) {
    char dir[] = "/tmp/attn_vit_png_XXXXXX", path[128], err[512];
    if (!mkdtemp(dir)) { CHECK(0); return; }
    snprintf(path, sizeof path, "%s/o.png", dir);
    float img[28 * 28], maps[2 * 49];
    tu_fill(img, 28 * 28, 1);
    tu_fill(maps, 2 * 49, 2);
    const char *caps[3] = {"image", "rollout", "head 1"};
    attn_overlay o = {.image = img, .rows = 28, .cols = 28, .maps = maps, .n_maps = 2, .grid_rows = 7,
                      .grid_cols = 7, .captions = caps, .title = "t", .scale = 4};
    CHECK_STATUS(attn_overlay_png(&o, path, err, sizeof err), ATTN_OK);
    FILE *f = fopen(path, "rb");
    unsigned char h[24] = {0};
    CHECK(f && fread(h, 1, 24, f) == 24);
    if (f) fclose(f);
    const unsigned w = (unsigned)h[16] << 24 | h[17] << 16 | h[18] << 8 | h[19];
    CHECK(memcmp(h + 1, "PNG", 3) == 0 && w == 12 + 3 * (28 * 4 + 12));     /* three panels side by side */
    o.grid_rows = 29;
    CHECK_STATUS(attn_overlay_png(&o, path, err, sizeof err), ATTN_ERR_SIZE);
    o.grid_rows = 7;
    o.maps = NULL;
    CHECK_STATUS(attn_overlay_png(&o, path, err, sizeof err), ATTN_ERR_NULL);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    test_golden_layers();
    test_patch_kernel();
    test_label_smoothing();
    test_golden_model("vision_model.safetensors", 0);
    test_golden_model("vision_model_kernel.safetensors", 8);
    test_schedule();
    test_fd();
    test_threads();
    test_rollout();
    test_config();
    test_checkpoint();
    test_overlay();
    test_train();
    return tu_finish("test_vit");
}
