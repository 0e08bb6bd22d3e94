/*
 * linear_ref_f64.c — the reference linear attention in double, for tests only: central finite
 * differences need double. Same loops as the float kernel (linear_ref.inc).
 */
#include "ref.h"

#define REAL double
#define LIN_NAME(x) lin_ref_f64_##x
#define LINEAR_REF_FORWARD attn__linear_ref_forward_f64
#define LINEAR_REF_BACKWARD attn__linear_ref_backward_f64
#include "linear_ref.inc"
