/*
 * additive_ref_f64.c — the reference additive attention in double precision, for tests only (central
 * finite differences need double). Same loops as the float kernels (additive_ref.inc); declared in
 * ref.h; the workspace size is attn__additive_ref_workspace's.
 */
#include "ref.h"

#define REAL double
#define ADDITIVE_REF_FORWARD attn__additive_ref_forward_f64
#define ADDITIVE_REF_BACKWARD attn__additive_ref_backward_f64
#include "additive_ref.inc"
