/*
 * attn.h — the public interface of attn, a C11 library of neural attention mechanisms.
 *
 * attn computes the classic attention family — dot-product, scaled dot-product, additive (Bahdanau),
 * multi-head, self- and cross-attention — forward and backward, on the CPU, in fp32 (and scaled dot-product
 * attention in bf16 too: attn_dtype). This header holds
 * the mechanisms and what every user needs (status, version, context, masks, SDPA, additive, softmax).
 * The rest is in one header per room, each including this one:
 *   attn/layers.h       every layer (linear ... multi-head, GRU, feed-forward), RNG, Adam, clipping
 *   attn/data.h         the data sets and text pipelines (IMDB, fra.txt pairs, vocabularies, BLEU, IDX)
 *   attn/seq2seq.h      the Bahdanau translator          attn/transformer.h   the Transformer
 *   attn/safetensors.h  checkpoints and golden files     attn/heatmap.h       attention pictures
 *   attn/vit.h          the Vision Transformer           attn/caption.h       image to text
 *   attn/detr.h         detection's matching and losses  attn/plot.h          training curves
 *   attn/imdb_model.h   the IMDB classifier              attn/mpi.h           ring attention (libattn_mpi)
 *
 * Dimension names, the same everywhere in attn:
 *   B   batch                     H    query heads         Hkv  key/value heads (H % Hkv == 0)
 *   T   query length              S    key/value length
 *   D   query/key dimension       Dv   value dimension
 * Tensors are row-major; a shape written (B,H,T,D) means D is the innermost, contiguous axis.
 * "Weights" are the attention probabilities, after the softmax (and before dropout).
 *
 * Conventions (docs/DESIGN.md gives the reasons):
 *   - Every call returns an attn_status: ATTN_OK (0) or a negative error; attn_status_string() names it.
 *     The library never exits, aborts or prints on user input.
 *   - The caller owns memory. Kernels never allocate: ask attn_*_workspace_size() first and pass a buffer
 *     at least that large. Layers never allocate: their parameters are views into a caller's slab
 *     (attn/layers.h) and their activations live in a cache the caller provides.
 *   - Backward calls ACCUMULATE into gradients (+=); clear them first when that is not what you want.
 *   - Masks: a key is excluded when any mask excludes it; a row whose keys are all excluded gives zero
 *     weights, zero output and zero gradients, never NaN. Boolean masks: nonzero = may attend.
 *
 * Worked example — scaled dot-product attention with a causal mask, forward and backward:
 *
 *     attn_ctx ctx;
 *     attn_ctx_init(&ctx, ATTN_ISA_AUTO, 0);            // the best path this CPU has, every core
 *     attn_sdpa_desc d;
 *     attn_sdpa_desc_init(&d, B, H, T, S, D, Dv);      // contiguous layouts, scale 1/sqrt(D), no mask
 *     d.mask.causal = 1;
 *     size_t fw, bw;
 *     attn_sdpa_workspace_size(&ctx, &d, ATTN_PASS_FORWARD, &fw);
 *     attn_sdpa_workspace_size(&ctx, &d, ATTN_PASS_BACKWARD, &bw);
 *     void *work = malloc(fw > bw ? fw : bw);
 *     float *stats = malloc(sizeof(float) * B * H * T * ATTN_SDPA_STATS);   // saved for the backward
 *     attn_status st = attn_sdpa_forward(&ctx, &d, out, stats, NULL, q, k, v, work, fw);
 *     if (st != ATTN_OK) fprintf(stderr, "attn: %s\n", attn_status_string(st));
 *     // ... dq, dk, dv zeroed, dout filled ...
 *     st = attn_sdpa_backward(&ctx, &d, dq, dk, dv, dout, q, k, v, out, stats, work, bw);
 *
 * Threads: the fast kernels use OpenMP with ctx.threads threads (NULL for ctx: attn_set_num_threads's);
 * results are bitwise identical for any thread count. A caller with its own thread pool runs the same
 * passes through attn_sdpa_forward_part / attn_sdpa_backward_part instead (same bits).
 */
#ifndef ATTN_H
#define ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_VERSION_MAJOR 0
#define ATTN_VERSION_MINOR 1
#define ATTN_VERSION_PATCH 0

/* "0.1.0" — the version of the library actually linked. */
const char *attn_version(void);

/* ---------------------------------------------------------------------------------------------------
 * Status codes. Appended only; never renumbered.
 */
typedef enum attn_status {
    ATTN_OK              = 0,
    ATTN_ERR_NULL        = -1,  /* a required pointer is NULL */
    ATTN_ERR_SIZE        = -2,  /* a size is zero, negative or too large */
    ATTN_ERR_SHAPE       = -3,  /* sizes that must agree do not (e.g. H not a multiple of Hkv) */
    ATTN_ERR_STRIDE      = -4,  /* a stride is invalid (negative, or an output whose elements overlap) */
    ATTN_ERR_WORKSPACE   = -5,  /* workspace NULL or smaller than the size asked for */
    ATTN_ERR_ARG         = -6,  /* another argument out of range (NaN scale, dropout outside [0,1), ...) */
    ATTN_ERR_NOMEM       = -7,  /* an allocation failed (layers, loaders; never kernels) */
    ATTN_ERR_IO          = -8,  /* a file could not be opened, read or written */
    ATTN_ERR_FORMAT      = -9,  /* a file is truncated, corrupt or not what was expected */
    ATTN_ERR_UNSUPPORTED = -10, /* the request is valid but not available here (e.g. an ISA the CPU lacks) */
} attn_status;

/* A short, static, human-readable description of a status ("invalid stride", ...). Never NULL. */
const char *attn_status_string(attn_status st);

/* ---------------------------------------------------------------------------------------------------
 * Execution context: which kernel path runs and on how many threads.
 *
 * Every call that sizes or runs a kernel takes a `const attn_ctx *` first. A context is a plain value:
 * make one with attn_ctx_init and keep it; a workspace size asked for with a context stays valid for
 * every call made with that context (and the same descriptor). NULL means the default context: the
 * process-wide knobs below (attn_set_isa, attn_set_num_threads, the ATTN_ISA environment variable), read
 * at the time of the call.
 */
typedef enum attn_isa {
    ATTN_ISA_AUTO = 0,   /* the best path the CPU supports (the default) */
    ATTN_ISA_REF,        /* the plain reference kernels: the oracle, slow, single-threaded */
    ATTN_ISA_SCALAR,     /* the fused (tiled) kernels in portable C */
    ATTN_ISA_AVX2,       /* the fused kernels with AVX2 + FMA */
    ATTN_ISA_AVX512,     /* the fused kernels with AVX-512F */
    ATTN_ISA_AMX,        /* AVX-512 plus AMX-BF16 tiles for bf16 attention (the OS must grant the tiles) */
    ATTN_ISA_AVX512BF16, /* AVX-512 plus AVX512-BF16 (vdpbf16ps) for bf16 attention, without tiles (Zen 4) */
    ATTN_ISA_COUNT
} attn_isa;

#define ATTN_MAX_THREADS 256     /* more threads than this are refused (ATTN_ERR_ARG) */

typedef struct attn_ctx {
    attn_isa isa;                /* the path; never ATTN_ISA_AUTO in a context attn_ctx_init filled */
    int threads;                 /* 1 .. ATTN_MAX_THREADS */
} attn_ctx;

/* Fills c: isa ATTN_ISA_AUTO picks the best path built in and supported by the CPU; threads <= 0 means
 * every core OpenMP sees. ATTN_ERR_UNSUPPORTED when the CPU lacks the ISA, ATTN_ERR_ARG when threads >
 * ATTN_MAX_THREADS or isa is out of range. */
attn_status attn_ctx_init(attn_ctx *c, attn_isa isa, int threads);

/* The default context as it is now (what a NULL context means at this moment). */
attn_ctx attn_ctx_default(void);

/* Process-wide knobs behind the default context. Set them before starting work, not during.
 * attn_set_num_threads: n <= 0 means all the cores OpenMP sees (resolved at the call); n > ATTN_MAX_THREADS
 * is ATTN_ERR_ARG.
 * The attention kernels give bitwise-identical results for any count. */
attn_status attn_set_num_threads(int n);
int         attn_get_num_threads(void);

/* Forces a kernel path. ATTN_ERR_UNSUPPORTED when the CPU lacks the ISA. The environment variable
 * ATTN_ISA (auto, ref, scalar, avx2, avx512, amx, avx512bf16) sets the initial value; attn_isa_from_env reports a value
 * it could not use.
 * ATTN_ISA_AMX is supported when the CPU has AMX-TILE, AMX-BF16, AVX512-BF16 and the AVX-512 path's
 * features, and the operating system grants the tile state (on Linux, asked once per process,
 * thread-safely, on the first check). When it is refused the AMX path is simply not supported and AUTO
 * picks the next best: AVX512-BF16 (ATTN_ISA_AVX512BF16: the AVX-512 path's features and AVX512-BF16),
 * else AVX-512. ATTN_NO_AMX=1 in the environment makes the library behave as if it were refused (on a
 * CPU with AMX, AUTO then gives the AVX512-BF16 path). */
attn_status attn_set_isa(attn_isa isa);
attn_isa    attn_get_isa(void);           /* what is in force (never ATTN_ISA_AUTO: AUTO is resolved) */
int         attn_cpu_supports(attn_isa isa);
const char *attn_isa_name(attn_isa isa);  /* "ref", "scalar", "avx2", "avx512", "amx", "avx512bf16", "auto" */
/* Parses an ISA name ("auto", "ref", ...): ATTN_OK, or ATTN_ERR_ARG for an unknown name. */
attn_status attn_isa_parse(const char *name, attn_isa *isa);

/* OpenBLAS, which runs the layers' plain matrix products, has its own thread pool: its count is set
 * here, separately from the attention kernels' (a program that splits batches across its own threads
 * wants OpenBLAS on one thread). n in 1 .. ATTN_MAX_THREADS. With Debian's OpenMP build of OpenBLAS this
 * also sets OpenMP's default thread count (OpenBLAS follows it); the attention kernels' count is unaffected:
 * "every core" is resolved when attn_set_num_threads is called, or when first read. */
attn_status attn_blas_set_num_threads(int n);
/* The CPU kernel set OpenBLAS chose ("SkylakeX", "Haswell", "Prescott", ...). Performance note: Debian
 * 12's OpenBLAS 0.3.21 does not recognise CPUs newer than itself (Zen 4, recent Xeons) and falls back to
 * slow SSE3 kernels ("Prescott") unless OPENBLAS_CORETYPE=SkylakeX (or Haswell without AVX-512) is set
 * before the program starts. */
const char *attn_blas_core_name(void);

/* ---------------------------------------------------------------------------------------------------
 * Masks. Every mechanism takes one; a zeroed attn_mask masks nothing. All parts combine: a key is
 * excluded when any part excludes it, and the bias is added to the scores of the keys that remain.
 *
 *   valid lengths   keys s >= valid_lens[...] are excluded (d2l's masked_softmax convention). Lengths are
 *                   clamped to [0, S]; negative lengths are an error. Per batch row: (B). Per query: (B,T).
 *   causal          query t may attend keys s <= t + (S - T): the last query sees every key (bottom-right
 *                   alignment, so a decoder step with a key/value cache is causal too). For T == S this is
 *                   the usual lower triangle.
 *   allow           boolean (B,H,T,S), nonzero = may attend, zero = excluded; given by element strides so a
 *                   stride of 0 broadcasts (a (T,S) mask for every batch and head: b = h = 0, t = S).
 *   bias            additive float (B,H,T,S), added to the scaled scores; -INFINITY excludes. Strides as
 *                   for allow. It is an input to the softmax, not a parameter: no gradient is returned.
 * Mechanisms without heads (additive attention) read the masks with H = 1.
 *
 * Sparse parts (scaled dot-product attention only; additive attention refuses them with
 * ATTN_ERR_UNSUPPORTED). With ta = t + (S - T), query t's position among the keys (as for causal):
 *   window          nonzero: a sliding window, keys ta - window_left <= s <= ta + window_right only (both
 *                   >= 0; with causal the right edge is causal's). The fused kernels skip the key blocks
 *                   outside, so the cost grows with T·window, not T·S.
 *   sinks           n >= 0: the first n keys are exempt from the window's left edge, so they stay visible
 *                   however far the window has moved (StreamingLLM's attention sinks); the right edge,
 *                   causality and the other parts still apply to them. Only read with a window.
 *   sink_logits     (H) or NULL: a learned logit z_h per query head that joins every row's softmax sum with
 *                   no value (gpt-oss): weights = exp(x_s) / (exp(z_h) + Σ exp(x_s)), so a row's weights sum
 *                   to less than 1. Finite values only. Its gradient: attn_sdpa_sink_backward. The row
 *                   statistics include it: m = max(z_h, max_s x_s), and a row with no key visible has
 *                   stats (z_h, 0) and a zero output.
 *   alibi_slopes    (H) or NULL: ALiBi, slope_h · (s - ta) added to the scores after the bias (computed in
 *                   the kernel; attn_alibi_slopes gives the paper's slopes). Finite values only; no gradient.
 *   softcap         c > 0: soft-capping (Gemma 2): the scaled score x = scale·q·k becomes c·tanh(x / c)
 *                   first, then the bias and ALiBi are added and the masks applied, so scores (and the row
 *                   statistics) are the capped ones; the backward multiplies by 1 - tanh². 0 = off.
 *   block_map       block-sparse layout: query t may attend key s only when the map's entry for block
 *                   (t / bs, s / bs) is nonzero (bs = block_size; strides as for allow, 0 broadcasts). The
 *                   fused kernels skip unlisted blocks: with bs a multiple of 64 they form exactly the
 *                   listed blocks' scores. attn_block_map_longformer / _bigbird build common layouts.
 */
typedef enum attn_valid_lens_kind {
    ATTN_VALID_LENS_NONE = 0,
    ATTN_VALID_LENS_PER_BATCH,  /* valid_lens: (B)   */
    ATTN_VALID_LENS_PER_QUERY,  /* valid_lens: (B,T) */
    ATTN_VALID_LENS_COUNT
} attn_valid_lens_kind;

typedef struct attn_mask {
    attn_valid_lens_kind valid_lens_kind;
    const int32_t *valid_lens;   /* (B) or (B,T), by valid_lens_kind */
    int causal;                  /* nonzero: causal, bottom-right aligned */
    const uint8_t *allow;        /* (B,H,T,S) or NULL; nonzero = may attend */
    int64_t allow_stride[3];     /* element strides of b, h, t; s is contiguous */
    const float *bias;           /* (B,H,T,S) or NULL; added to the scaled scores */
    int64_t bias_stride[3];      /* element strides of b, h, t; s is contiguous */
    /* sparse parts, appended: zero = off */
    int window;                  /* nonzero: sliding window [ta - window_left, ta + window_right] */
    int window_left, window_right;
    int sinks;                   /* the first `sinks` keys are exempt from the window */
    const float *sink_logits;    /* (H) or NULL: per-head logit in every row's softmax sum */
    const float *alibi_slopes;   /* (H) or NULL: ALiBi slopes */
    float softcap;               /* > 0: scaled scores become softcap · tanh(score / softcap); 0 = off */
    const uint8_t *block_map;    /* (B,H,⌈T/bs⌉,⌈S/bs⌉) or NULL; nonzero = the block may be attended */
    int block_size;              /* bs >= 1 when block_map is set */
    int64_t block_map_stride[3]; /* element strides of b, h and the block row; block columns contiguous */
} attn_mask;

/* Block maps (nqb, nkb) = (⌈T/bs⌉, ⌈S/bs⌉) bytes, row-major, for attn_mask.block_map (one map for every
 * batch row and head: strides 0, 0, nkb). Query block i sits at key block i + (nkb - nqb) (bottom-right,
 * as causal).
 *   longformer  key blocks within `window` blocks of the query's (both sides), plus the global blocks:
 *               each listed global block's row (it attends everything) and column (everyone attends it).
 *   bigbird     longformer's, plus `nrandom` key blocks per query block row drawn uniformly with a
 *               generator seeded by seed (the same map for the same arguments).
 * ATTN_ERR_NULL, ATTN_ERR_SIZE (nqb or nkb < 1), ATTN_ERR_ARG (window or nrandom < 0, a global block
 * outside the map). */
attn_status attn_block_map_longformer(uint8_t *map, int nqb, int nkb, int window, const int *global,
                                      int nglobal);
attn_status attn_block_map_bigbird(uint8_t *map, int nqb, int nkb, int window, const int *global, int nglobal,
                                   int nrandom, uint64_t seed);

/* The ALiBi paper's slopes for H heads into slopes (H): for H a power of two, 2^(-8(h+1)/H); otherwise
 * the slopes of the power of two n below H, then every other slope of 2n for the rest. ATTN_ERR_NULL,
 * ATTN_ERR_SIZE when H < 1. */
attn_status attn_alibi_slopes(int H, float *slopes);

/* ---------------------------------------------------------------------------------------------------
 * Strided 4-D operands. Each tensor argument of the scaled dot-product kernels is (batch, head, row, col)
 * with element strides for the first three axes and a contiguous last axis. Inputs may use a stride of 0
 * on any of the three axes to broadcast (a row stride between 0 and the row width is refused: rows that
 * partly overlap); outputs (and gradients) must not overlap themselves.
 */
typedef struct attn_layout {
    int64_t b, h, t;             /* element strides of the batch, head and row axes */
} attn_layout;

/* Which pass a workspace is for. */
typedef enum attn_pass {
    ATTN_PASS_FORWARD = 0,
    ATTN_PASS_BACKWARD,
    ATTN_PASS_COUNT
} attn_pass;

/* ---------------------------------------------------------------------------------------------------
 * Element types: of checkpoint tensors (attn/safetensors.h: every one) and of the scaled dot-product
 * tensors (F32 or BF16). Appended only. bf16 is the upper half of an IEEE fp32 (1 sign, 8 exponent, 7
 * fraction bits); C has no type for it, so a bf16 tensor is an array of uint16_t holding those bits
 * (rounded to nearest even from fp32: attn_bf16_from_f32 / attn_bf16_to_f32). Products of bf16 are
 * always accumulated in fp32, and the row statistics saved for the backward are fp32.
 */
typedef enum attn_dtype {
    ATTN_DTYPE_F32 = 0,          /* float (the default: a zeroed descriptor means fp32) */
    ATTN_DTYPE_F64,
    ATTN_DTYPE_I32,
    ATTN_DTYPE_I64,
    ATTN_DTYPE_U8,
    ATTN_DTYPE_BOOL,
    ATTN_DTYPE_BF16,             /* uint16_t holding bf16 bits */
    ATTN_DTYPE_COUNT
} attn_dtype;

uint16_t attn_bf16_from_f32(float x);    /* round to nearest even; NaN stays NaN */
float    attn_bf16_to_f32(uint16_t h);   /* exact */

/* ---------------------------------------------------------------------------------------------------
 * Scaled dot-product attention (and plain dot-product attention: scale = 1).
 *
 *   weights = softmax(scale · Q Kᵀ + bias, masked)     per (b, h): (T,S)
 *   out     = dropout(weights) V
 *
 * Grouped-query heads: query head h reads key/value head h / (H / Hkv).
 * Dropout drops each weight with probability `dropout` and scales the rest by 1/(1 - dropout); the mask
 * is a pure function of (seed, b, h, t, s), so the backward regenerates it and every kernel path and thread
 * count drops the same weights.
 */
typedef struct attn_sdpa_desc {
    int B, H, Hkv, T, S, D, Dv;
    float scale;                 /* multiplies Q Kᵀ; attn_sdpa_desc_init sets 1/sqrt(D) */
    attn_layout q;               /* Q   (B,H,T,D)    dQ uses the same layout */
    attn_layout k;               /* K   (B,Hkv,S,D)  dK uses the same layout */
    attn_layout v;               /* V   (B,Hkv,S,Dv) dV uses the same layout */
    attn_layout out;             /* out (B,H,T,Dv)   dout uses the same layout */
    attn_mask mask;
    float dropout;               /* in [0,1); 0 = no dropout */
    uint64_t seed;               /* dropout's seed; change it every training step */
    attn_dtype dtype;            /* element type of q, k, v, out and of dq, dk, dv, dout: F32 (0) or BF16
                                    (the tensor arguments are then uint16_t arrays). the row statistics stay fp32. * */
    attn_dtype compute;          /* F32 (0): multiply in the tensors' own precision. BF16: fp32 tensors may
                                    be rounded to bf16 for the products (fp32 accumulation) on a path that
                                    has bf16 units (ATTN_ISA_AMX, ATTN_ISA_AVX512BF16); other paths
                                    compute in fp32. */
} attn_sdpa_desc;

/* Fills d for B,H,T,S,D,Dv with Hkv = H, contiguous layouts, scale 1/sqrt(D), no mask and no dropout,
 * fp32 tensors and fp32 compute. */
attn_status attn_sdpa_desc_init(attn_sdpa_desc *d, int B, int H, int T, int S, int D, int Dv);

/* Checks every field of d (sizes, strides, mask, dropout); the kernels call it too. */
attn_status attn_sdpa_validate(const attn_sdpa_desc *d);

/* Bytes of workspace the pass needs with context ctx (NULL: the default context now). The size is what
 * the calls with the same ctx and descriptor will use, and stays valid for them. */
attn_status attn_sdpa_workspace_size(const attn_ctx *ctx, const attn_sdpa_desc *d, attn_pass pass,
                                     size_t *bytes);

/* The type the pass's products are computed in on context ctx (NULL: the default context now):
 * ATTN_DTYPE_BF16 when the path takes d natively in bf16 (AMX tiles, or the AVX512-BF16 path's vdpbf16ps
 * kernels for bf16 tensors, which AMX uses below 16 query rows), else ATTN_DTYPE_F32 — also for bf16
 * tensors or bf16 compute that the path runs as fp32 (fp32 tensors with too few query rows for the tiles,
 * the sparse mask parts, a path without bf16 units). Accumulation is fp32 either way. */
attn_status attn_sdpa_compute_type(const attn_ctx *ctx, const attn_sdpa_desc *d, attn_pass pass,
                                   attn_dtype *compute);

/* Row statistics: what the forward saves for the backward, ATTN_SDPA_STATS floats per query row,
 * (B,H,T,2) contiguous. With x_s = scale·q·k_s + bias_s, a row's scores as the kernel path computes them:
 *   stats[2r]      m = max_s x_s, the row's largest score (one of the x_s, bit for bit)
 *   stats[2r + 1]  log Σ_s exp(x_s - m)       (between 0 and log S)
 * A fully masked row has (-INFINITY, 0). The log-sum-exp is the sum of the two; it is kept in two parts
 * because one float loses the small part once |m| is large, and the backward's weights exp(x_s - m - log l)
 * then stop summing to 1. The backward recomputes each x_s exactly as the forward did, so give it the
 * stats of a forward on the same kernel path (the same ctx isa). attn_sdpa_logsumexp gives the one-float
 * log-sum-exp (PyTorch's logsumexp) when you want it. */
#define ATTN_SDPA_STATS 2

/* lse[r] = stats[2r] + stats[2r+1] for r in [0, rows): the log-sum-exp of each row, -INFINITY for a fully
 * masked row. lse may be stats itself (converted in place). */
attn_status attn_sdpa_logsumexp(const float *stats, int64_t rows, float *lse);

/* Forward pass. The tensors q, k, v, out (and dq, dk, dv, dout below) are `void *`: float arrays when
 * d->dtype is ATTN_DTYPE_F32, uint16_t arrays of bf16 bits when it is ATTN_DTYPE_BF16. Strides count
 * elements of that type.
 *   out     (B,H,T,Dv)  layout d->out                       written
 *   stats   (B,H,T,2)   contiguous, or NULL                 written: the row statistics above; the
 *                                                           backward needs them.
 *   weights (B,H,T,S)   contiguous, or NULL                 written when given: the softmax probabilities
 *   q, k, v             layouts d->q, d->k, d->v
 * The fused kernels run in memory that grows with T + S; asked for weights, they write them in one more
 * pass from the row statistics (the weights the backward will use, bit for bit). */
attn_status attn_sdpa_forward(const attn_ctx *ctx, const attn_sdpa_desc *d,
                              void *out, float *stats, float *weights,
                              const void *q, const void *k, const void *v,
                              void *work, size_t work_bytes);

/* Backward pass. Accumulates (+=) into dq, dk, dv (layouts of q, k, v).
 *   dout  (B,H,T,Dv) layout d->out;  out and stats as written by attn_sdpa_forward with the same ctx
 *   and d. A key the mask excludes from a row takes no part in that row's gradients, whatever its K and V
 *   hold (NaN or Inf included), as in the forward. */
attn_status attn_sdpa_backward(const attn_ctx *ctx, const attn_sdpa_desc *d,
                               void *dq, void *dk, void *dv,
                               const void *dout,
                               const void *q, const void *k, const void *v,
                               const void *out, const float *stats,
                               void *work, size_t work_bytes);

/* Gradient of the sink logits (d->mask.sink_logits), accumulated (+=) into dsink (H). The sink has no
 * value, so its score gradient is P_z·(0 - Δ) and
 *   dsink_h += -Σ_(b,t) P_z(b,h,t) · Δ(b,h,t),   P_z = exp(z_h - m - log l),   Δ = dout·out
 * read from the forward's out and stats (the same ctx isa) and the backward's dout (d->dtype elements,
 * layout d->out). Rows are summed in (b, t) order in double: deterministic. ATTN_ERR_ARG when d has no
 * sink logits. */
attn_status attn_sdpa_sink_backward(const attn_sdpa_desc *d, float *dsink, const void *dout, const void *out,
                                    const float *stats);

/* Instrumentation: how many (query row, key) scores the fused kernels formed in this process for pass
 * (the forward's count includes a weights stage), counting every score of every key block they did not
 * skip: what a window or mask saves shows here. reset nonzero: set it to zero after reading. Counted with
 * relaxed atomics; the reference kernels and the AMX path's native bf16 kernels count nothing. */
int64_t attn_sdpa_scores_computed(attn_pass pass, int reset);

/* The same passes run by the caller's own threads (an inference engine's pool, say) instead of OpenMP.
 * A pass is cut into *n_stages stages (a function of the descriptor only). Stage s is run by ctx->threads
 * calls, one per ith in [0, ctx->threads), which may run at the same time in any threads; every call of
 * stage s must have returned before any call of stage s + 1 starts (a barrier between stages). All calls
 * share one workspace of attn_sdpa_workspace_size(ctx, d, pass) bytes and the same arguments. The result
 * is bitwise what attn_sdpa_forward/backward give with the same ctx. Weights cannot be asked for here.
 * A call checks its arguments as the whole-pass calls do; a failing call means the pass is not done. */
attn_status attn_sdpa_stages(const attn_ctx *ctx, const attn_sdpa_desc *d, attn_pass pass, int *n_stages);
attn_status attn_sdpa_forward_part(const attn_ctx *ctx, const attn_sdpa_desc *d,
                                   void *out, float *stats,
                                   const void *q, const void *k, const void *v,
                                   void *work, size_t work_bytes, int stage, int ith);
attn_status attn_sdpa_backward_part(const attn_ctx *ctx, const attn_sdpa_desc *d,
                                    void *dq, void *dk, void *dv,
                                    const void *dout,
                                    const void *q, const void *k, const void *v,
                                    const void *out, const float *stats,
                                    void *work, size_t work_bytes, int stage, int ith);

/* ---------------------------------------------------------------------------------------------------
 * Packed variable-length batches (FlashAttention's "varlen"): n sequences of different lengths stored
 * one after another without padding, so a batch costs the sum of its sequences' squares, not n times the
 * longest one's.
 *
 *   q    (total_q, H, D)     sequence i's queries are tokens [cu_seqlens_q[i], cu_seqlens_q[i+1])
 *   k    (total_k, Hkv, D)   sequence i's keys are tokens [cu_seqlens_k[i], cu_seqlens_k[i+1])
 *   v    (total_k, Hkv, Dv)
 *   out  (total_q, H, Dv)    written (dq, dk, dv and dout take the layouts of q, k, v and out)
 *   stats                    ATTN_SDPA_STATS floats per (token, head): sequence i's are the (H, L_i, 2)
 *                            block starting at float 2·H·cu_seqlens_q[i] (head-major inside a sequence),
 *                            so the whole array is 2·H·total_q floats
 *
 * Each sequence attends to its own keys only; causal is bottom-right aligned per sequence, as in
 * attn_sdpa_desc. A token's heads are D (Dv) elements apart and tokens q_row (k_row, v_row, out_row)
 * elements apart, so a fused (total, 3, H, D) projection is read in place. Sequence i's result is
 * bitwise what attn_sdpa_forward/backward give for it alone (a batch of one with the same context,
 * scale, heads and mask, dropout seed seed + i), for any thread count. A sequence with no keys gives
 * zero output and stats (-inf, 0); one with no queries does nothing. Offsets must start at 0 and never
 * decrease.
 */
typedef struct attn_sdpa_varlen_desc {
    int n;                           /* sequences */
    const int32_t *cu_seqlens_q;     /* (n + 1) cumulative query lengths, cu_seqlens_q[0] = 0 */
    const int32_t *cu_seqlens_k;     /* (n + 1) cumulative key lengths, cu_seqlens_k[0] = 0 */
    int H, Hkv, D, Dv;
    float scale;                     /* attn_sdpa_varlen_desc_init sets 1/sqrt(D) */
    int64_t q_row, k_row, v_row, out_row;   /* element strides between consecutive tokens */
    int causal;                      /* nonzero: causal within each sequence */
    float dropout;                   /* in [0,1) */
    uint64_t seed;                   /* sequence i drops with seed + i */
    attn_dtype dtype;                /* tensors: F32 or BF16, as attn_sdpa_desc */
    attn_dtype compute;
} attn_sdpa_varlen_desc;

/* Fills d with Hkv = H, contiguous packed rows (q_row = H·D, ...), scale 1/sqrt(D), not causal, fp32.
 * The offset arrays are kept as pointers; the caller keeps them alive. */
attn_status attn_sdpa_varlen_desc_init(attn_sdpa_varlen_desc *d, int n, const int32_t *cu_seqlens_q,
                                       const int32_t *cu_seqlens_k, int H, int D, int Dv);
attn_status attn_sdpa_varlen_validate(const attn_sdpa_varlen_desc *d);
/* The largest workspace any one sequence needs for the pass (they run one after another in it). */
attn_status attn_sdpa_varlen_workspace_size(const attn_ctx *ctx, const attn_sdpa_varlen_desc *d, attn_pass pass,
                                            size_t *bytes);
/* stats may be NULL when no backward follows. */
attn_status attn_sdpa_varlen_forward(const attn_ctx *ctx, const attn_sdpa_varlen_desc *d,
                                     void *out, float *stats,
                                     const void *q, const void *k, const void *v,
                                     void *work, size_t work_bytes);
/* Accumulates (+=) into dq, dk, dv; out and stats as the forward wrote them with the same ctx and d. */
attn_status attn_sdpa_varlen_backward(const attn_ctx *ctx, const attn_sdpa_varlen_desc *d,
                                      void *dq, void *dk, void *dv,
                                      const void *dout,
                                      const void *q, const void *k, const void *v,
                                      const void *out, const float *stats,
                                      void *work, size_t work_bytes);

/* ---------------------------------------------------------------------------------------------------
 * Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"): the softmax's exp(q·k) replaced
 * by a product of feature maps φ(q)·φ(k), φ(x) = elu(x) + 1 (elementwise, always positive), so the keys
 * and values can be summed once instead of per query:
 *
 *   out_t = φ(q_t)ᵀ Σ_s φ(k_s) v_sᵀ  /  (φ(q_t) · Σ_s φ(k_s) + eps)      per (b, h)
 *
 * over every key s (not causal), or over s <= t (causal: T must equal S), in time and memory linear in T
 * and S. The fast path sums by chunks of 64 rows (a causal chunk adds its own rows directly and carries
 * the running sums to the next); the reference path (ATTN_ISA_REF) computes the quadratic form above.
 * Results are bitwise the same for any thread count (items are (b, h)).
 */
typedef struct attn_linear_attn_desc {
    int B, H, T, S, D, Dv;
    int causal;                  /* nonzero: query t sees keys s <= t; needs T == S */
    float eps;                   /* added to the normaliser; attn_linear_attn_desc_init sets 1e-6 */
    attn_layout q;               /* Q   (B,H,T,D)   dQ too */
    attn_layout k;               /* K   (B,H,S,D)   dK too */
    attn_layout v;               /* V   (B,H,S,Dv)  dV too */
    attn_layout out;             /* out (B,H,T,Dv)  dout too */
} attn_linear_attn_desc;

/* Contiguous layouts, eps 1e-6, not causal. */
attn_status attn_linear_attn_desc_init(attn_linear_attn_desc *d, int B, int H, int T, int S, int D, int Dv);
attn_status attn_linear_attn_validate(const attn_linear_attn_desc *d);
attn_status attn_linear_attn_workspace_size(const attn_ctx *ctx, const attn_linear_attn_desc *d,
                                            attn_pass pass, size_t *bytes);
/*   out (B,H,T,Dv) written;  den (B,H,T) contiguous, or NULL: written when given, each row's normaliser
 *   (the denominator above, eps included), which the backward needs;  q, k, v by their layouts. */
attn_status attn_linear_attn_forward(const attn_ctx *ctx, const attn_linear_attn_desc *d, float *out,
                                     float *den, const float *q, const float *k, const float *v, void *work,
                                     size_t work_bytes);
/* Accumulates (+=) into dq, dk, dv; out and den as the forward wrote them. */
attn_status attn_linear_attn_backward(const attn_ctx *ctx, const attn_linear_attn_desc *d, float *dq,
                                      float *dk, float *dv, const float *dout, const float *q, const float *k,
                                      const float *v, const float *out, const float *den, void *work,
                                      size_t work_bytes);

/* ---------------------------------------------------------------------------------------------------
 * Additive (Bahdanau) attention, pairwise:
 *
 *   score(t, s) = w_vᵀ tanh(W_q q_t + W_k k_s)           scores (B,T,S), no biases
 *   weights     = softmax(score, masked);  out = dropout(weights) V
 *
 * All tensors contiguous. The mask is read with H = 1. Parameters are inputs here (the layer that owns
 * them is in attn/layers.h); the backward returns their gradients too.
 */
typedef struct attn_additive_desc {
    int B, T, S, Dq, Dk, Dv;
    int Dh;                      /* hidden units h of the scoring MLP */
    attn_mask mask;
    float dropout;               /* in [0,1) */
    uint64_t seed;
    attn_dtype compute;          /* F32 (0): fp32 products. BF16: the attention's own products (w_v against
                                    the tanh values, the weights against V, and their gradients' products)
                                    take bf16-rounded operands with fp32 sums on a path that has bf16 units
                                    (ATTN_ISA_AMX, ATTN_ISA_AVX512BF16); other paths compute in fp32. The
                                    projections W_q q and W_k k stay fp32 (CBLAS). */
} attn_additive_desc;

attn_status attn_additive_desc_init(attn_additive_desc *d, int B, int T, int S, int Dq, int Dk, int Dv, int Dh);
attn_status attn_additive_validate(const attn_additive_desc *d);
attn_status attn_additive_workspace_size(const attn_ctx *ctx, const attn_additive_desc *d, attn_pass pass,
                                         size_t *bytes);
/* The type the products are computed in on context ctx (NULL: the default context now): ATTN_DTYPE_BF16
 * when d asks for bf16 compute and the path has bf16 units, else ATTN_DTYPE_F32. */
attn_status attn_additive_compute_type(const attn_ctx *ctx, const attn_additive_desc *d, attn_dtype *compute);

/*   out (B,T,Dv) written;  weights (B,T,S) or NULL, written when given.
 *   q (B,T,Dq)  k (B,S,Dk)  v (B,S,Dv)  wq (Dh,Dq)  wk (Dh,Dk)  wv (Dh) */
attn_status attn_additive_forward(const attn_ctx *ctx, const attn_additive_desc *d,
                                  float *out, float *weights,
                                  const float *q, const float *k, const float *v,
                                  const float *wq, const float *wk, const float *wv,
                                  void *work, size_t work_bytes);

/* Accumulates (+=) into dq (B,T,Dq), dk (B,S,Dk), dv (B,S,Dv), dwq (Dh,Dq), dwk (Dh,Dk), dwv (Dh).
 * Recomputes the scores from the inputs; nothing needs saving from the forward. */
attn_status attn_additive_backward(const attn_ctx *ctx, const attn_additive_desc *d,
                                   float *dq, float *dk, float *dv,
                                   float *dwq, float *dwk, float *dwv,
                                   const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *wq, const float *wk, const float *wv,
                                   void *work, size_t work_bytes);

/* Split form, for a decoder that attends over the same keys at every step (the Bahdanau translator):
 * project the keys once, kp = k W_kᵀ (B,S,Dh), run each step against kp, and turn the summed gradient of
 * kp into dk and dW_k once at the end. The same math, masks and dropout as the calls above (the
 * descriptor's T is the step's query count). The step calls take the workspace of
 * attn_additive_workspace_size.
 *   kp (B,S,Dh) written;  k (B,S,Dk)  wk (Dh,Dk) */
attn_status attn_additive_keys_forward(const attn_ctx *ctx, const attn_additive_desc *d, float *kp,
                                       const float *k, const float *wk);
/* dk (B,S,Dk) and dwk (Dh,Dk) += from dkp (B,S,Dh) */
attn_status attn_additive_keys_backward(const attn_ctx *ctx, const attn_additive_desc *d, float *dk, float *dwk,
                                        const float *dkp, const float *k, const float *wk);
/*   out (B,T,Dv) written;  weights (B,T,S) or NULL;  q (B,T,Dq)  kp (B,S,Dh)  v (B,S,Dv)  wq (Dh,Dq)  wv (Dh) */
attn_status attn_additive_step_forward(const attn_ctx *ctx, const attn_additive_desc *d,
                                       float *out, float *weights,
                                       const float *q, const float *kp, const float *v,
                                       const float *wq, const float *wv,
                                       void *work, size_t work_bytes);
/* Accumulates (+=) into dq (B,T,Dq), dkp (B,S,Dh), dv (B,S,Dv), dwq (Dh,Dq), dwv (Dh). */
attn_status attn_additive_step_backward(const attn_ctx *ctx, const attn_additive_desc *d,
                                        float *dq, float *dkp, float *dv, float *dwq, float *dwv,
                                        const float *dout,
                                        const float *q, const float *kp, const float *v,
                                        const float *wq, const float *wv,
                                        void *work, size_t work_bytes);

/* ---------------------------------------------------------------------------------------------------
 * Numerically stable softmax of one row, in place: subtracts the max before exp, so scores such as
 * 927 and 929 (whose exp overflows even in double) give finite weights. n >= 1.
 */
attn_status attn_softmax(float *x, int n);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_H */
