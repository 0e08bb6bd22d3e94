/*
 * ref.h — the reference kernels' internal declarations beyond internal.h: the double-precision twins
 * of the scaled dot-product kernels and the additive-attention kernels in float and double.
 *
 * Why double twins: gradients are checked against central finite differences, which need double
 * precision to resolve ~1e-6 relative errors. Each kernel body is written once (sdpa_ref.inc,
 * additive_ref.inc) and compiled for float and for double, so the double kernel that passes the
 * finite-difference test is line for line the float kernel the library ships.
 *
 * All of these take a descriptor that already passed its attn_*_validate() and a workspace of at least
 * the matching *_workspace() bytes (any alignment: the kernels align it themselves). Never installed.
 */
#ifndef ATTN_REF_H
#define ATTN_REF_H

#include "internal.h"

/* ---- scaled dot-product attention, double precision (float versions are in internal.h) ---------- */
attn_status attn__sdpa_ref_forward_f64(const attn_sdpa_desc *d, double *out, double *stats, double *weights,
                                       const double *q, const double *k, const double *v, void *work);
attn_status attn__sdpa_ref_backward_f64(const attn_sdpa_desc *d, double *dq, double *dk, double *dv,
                                        const double *dout, const double *q, const double *k,
                                        const double *v, const double *out, const double *stats, void *work);

/* ---- additive (Bahdanau) attention --------------------------------------------------------------
 *   out (B,T,Dv)  weights (B,T,S) or NULL  q (B,T,Dq)  k (B,S,Dk)  v (B,S,Dv)  wq (Dh,Dq)  wk (Dh,Dk)
 *   wv (Dh); the backward accumulates into dq dk dv dwq dwk dwv (same shapes). Contiguous tensors.
 *   kp (B,S,Dh) or NULL: projected keys (then k and wk are not read, and the backward adds into dkp
 *   (B,S,Dh) instead of dk and dwk). */
size_t attn__additive_ref_workspace(const attn_additive_desc *d, attn_pass pass);

attn_status attn__additive_ref_forward(const attn_additive_desc *d, float *out, float *weights,
                                       const float *q, const float *k, const float *kp, const float *v,
                                       const float *wq, const float *wk, const float *wv, void *work);
attn_status attn__additive_ref_backward(const attn_additive_desc *d, float *dq, float *dk, float *dkp, float *dv,
                                        float *dwq, float *dwk, float *dwv, const float *dout,
                                        const float *q, const float *k, const float *kp, const float *v,
                                        const float *wq, const float *wk, const float *wv, void *work);

attn_status attn__additive_ref_forward_f64(const attn_additive_desc *d, double *out, double *weights,
                                           const double *q, const double *k, const double *kp, const double *v,
                                           const double *wq, const double *wk, const double *wv, void *work);
attn_status attn__additive_ref_backward_f64(const attn_additive_desc *d, double *dq, double *dk, double *dkp,
                                            double *dv, double *dwq, double *dwk, double *dwv, const double *dout,
                                            const double *q, const double *k, const double *kp, const double *v,
                                            const double *wq, const double *wk, const double *wv,
                                            void *work);

/* ---- the layers' per-ISA loops, reference versions (layers_ref.c): libm's expf and tanhf ---------- */
void attn__gru_gates_ref(int H, const float *ir, const float *iz, const float *in, float *gr, float *gz, float *gn,
                         const float *hp, float *hn, float *ghn);
void attn__gru_gates_backward_ref(int H, const float *r, const float *z, const float *n, const float *ghn,
                                  const float *hp, const float *dh, const float *dout, float *dir, float *diz,
                                  float *din, float *dhr, float *dhz, float *dhn, float *dhp);
void attn__adam_block_ref(float *p, const float *g, float *m, float *v, int64_t lo, int64_t hi, float b1, float b2,
                          float eps, float step, float vscale);
void attn__gelu_forward_ref(float *y, const float *x, int64_t n);
void attn__layernorm_forward_ref(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                 const float *beta, int64_t n, int C, float eps);
void attn__layernorm_backward_ref(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                                  const float *gamma, int64_t n, int C);
void attn__gelu_backward_ref(float *dx, const float *dy, const float *x, int64_t n);

/* Aligns a caller's workspace pointer up to 64 bytes; the *_workspace() sizes include the slack. */
static inline void *attn__ref_align(void *p) {
    return (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Linear attention (linear_ref.inc), float and double. Work: (D + 2·Dv) REALs, aligned for REAL. den (B,H,T) or NULL. The
 * backward recomputes the forward's rows and accumulates into dq, dk, dv. */
void attn__linear_ref_forward(const attn_linear_attn_desc *d, float *out, float *den, const float *q, const float *k,
                              const float *v, void *work);
void attn__linear_ref_backward(const attn_linear_attn_desc *d, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, void *work);
void attn__linear_ref_forward_f64(const attn_linear_attn_desc *d, double *out, double *den, const double *q,
                                  const double *k, const double *v, void *work);
void attn__linear_ref_backward_f64(const attn_linear_attn_desc *d, double *dq, double *dk, double *dv,
                                   const double *dout, const double *q, const double *k, const double *v,
                                   void *work);

#endif /* ATTN_REF_H */
