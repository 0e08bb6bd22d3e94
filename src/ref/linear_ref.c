/*
 * linear_ref.c — the reference linear attention in float: the ATTN_ISA_REF path of attn_linear_*
 * (the loops are in linear_ref.inc).
 */
#include "ref.h"

#define REAL float
#define LIN_NAME(x) lin_ref_f32_##x
#define LINEAR_REF_FORWARD attn__linear_ref_forward
#define LINEAR_REF_BACKWARD attn__linear_ref_backward
#include "linear_ref.inc"
