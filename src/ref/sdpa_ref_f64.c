/*
 * sdpa_ref_f64.c — the reference scaled dot-product attention in double precision, for tests only:
 * central finite differences need double to check gradients to ~1e-6. Same loops as the float kernels
 * (sdpa_ref.inc); declared in ref.h; the workspace size is attn__sdpa_ref_workspace's.
 */
#include "ref.h"

#define REAL double
#define SDPA_REF_FORWARD attn__sdpa_ref_forward_f64
#define SDPA_REF_BACKWARD attn__sdpa_ref_backward_f64
#include "sdpa_ref.inc"
