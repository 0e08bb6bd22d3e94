/*
 * cli.h — the `attn` program's shared pieces: a tiny flag parser that prints a usage (cli.c), a clock,
 * checks of output locations, flag values and threads, colour, data folder and input text, and thread
 * set-up (common.c), and the subcommands' entry points. Uses only the public
 * API.
 */
#ifndef ATTN_CLI_H
#define ATTN_CLI_H

#include "attn.h"
#include "attn/layers.h"
#include "attn/data.h"
#include "attn/safetensors.h"
#include "attn/heatmap.h"
#include "attn/plot.h"
#include "attn/seq2seq.h"
#include "attn/transformer.h"

#include <stdint.h>
#include <stdio.h>

/* Flag kinds: CLI_INT (int), CLI_FLOAT (float), CLI_U64 (uint64_t), CLI_STR (const char *), CLI_BOOL
 * (int set to 1, takes no value). */
typedef enum { CLI_INT, CLI_FLOAT, CLI_U64, CLI_STR, CLI_BOOL } cli_kind;

typedef struct cli_opt {
    const char *name;            /* without the dashes: "epochs" for --epochs */
    cli_kind kind;
    void *dst;
    const char *arg;             /* the value's name in the usage ("N", "DIR"), NULL for CLI_BOOL */
    const char *help;            /* one line; the default is printed after it */
} cli_opt;

typedef struct cli_cmd {
    const char *usage;           /* "attn imdb train [options]" */
    const char *about;           /* a paragraph on what the command does */
    const cli_opt *opts;
    int n_opts;
    int min_pos, max_pos;        /* positional arguments accepted */
} cli_cmd;

/* Parses argv[1..argc) (argv[0] is the command name) into the options' destinations, which hold the
 * defaults on entry. Accepts --name value, --name=value and -h/--help. Positional arguments go to pos
 * (room for cmd->max_pos), their number to *n_pos.
 * Returns -1 to go on, 0 after printing the help (exit 0), 2 after printing an error and the usage to
 * stderr (exit 2). */
int cli_parse(const cli_cmd *cmd, int argc, char **argv, const char **pos, int *n_pos);
void cli_usage(const cli_cmd *cmd, FILE *out);

/* Prints "attn: <what>: <status string>" to stderr and returns 1 when st is not ATTN_OK, else 0. */
int cli_fail(attn_status st, const char *what);

/* Seconds on a monotonic clock (for durations). */
double cli_now(void);

/* CPU seconds of the whole process (every thread, libraries' own included): on a shared machine the work
 * a run took, where its wall time also counts the waits for a core. */
double cli_cpu_now(void);

/* Creates the folder path and any missing parents; nothing to do when it exists. Returns 0, or 1 after
 * a message "attn: <who>: ..." (path is an --out flag's value, or one of its parents). */
int cli_make_dir(const char *who, const char *path);

/* Checks an output folder before any long work: creates it (and its parents) when missing and checks
 * that files can be written in it. flag names the option ("--out"). Returns 0, or 1 after a message. */
int cli_check_out_dir(const char *who, const char *flag, const char *path);

/* The same for an output file (--png FILE): its folder must exist or be creatable, and be writable, and
 * path itself must not be a folder. Returns 0, or 1 after a message. */
int cli_check_out_file(const char *who, const char *flag, const char *path);

/* Checks --weights-out FILE: the name ends in .npy, .csv or .json (else 2 after a message and cmd's usage),
 * and the file can be written (else 1 after a message). Returns 0 when fine. */
int cli_check_weights_out(const char *who, const cli_cmd *cmd, const char *path);

/* Writes the maps' numbers to --weights-out path (attn_heatmap_save_values) and says so. Returns 0, or 1
 * after a message. */
int cli_write_weights(const char *who, const attn_heatmap *maps, int n, const char *path);

/* --palette NAME (NULL: the default, magma) into *p. Returns 0, or 2 after a message naming the palettes
 * and cmd's usage. */
#define CLI_PALETTE_HELP "colours of the heatmaps: magma, viridis, gray or blues (default magma)"
int cli_palette(const char *who, const cli_cmd *cmd, const char *name, attn_palette *p);

/* --precision NAME (NULL: the default, f32) into *compute: "f32" gives ATTN_DTYPE_F32, "bf16" ATTN_DTYPE_BF16
 * (the models' attention products in bf16 where the path has bf16 units; weights and everything else fp32).
 * Returns 0, or 2 after a message and cmd's usage. */
/* --shards G of the trainings that cut every batch into fixed parts (the translators, vision, caption, detect) */
#define CLI_SHARDS_HELP "cut every batch into G fixed parts whose gradients are added in part order (default 2; " \
    "--resume keeps the checkpoint's): the result depends on G, never on --threads or on how many mpirun ranks " \
    "share the parts (they must divide G)"
#define CLI_PRECISION_HELP "the attention's compute: f32, or bf16 (its products in bf16 where a kernel takes the " \
                           "model's heads so: on a CPU with AMX or AVX512-BF16, heads of 5 or more query rows " \
                           "(decoding steps stay fp32); elsewhere fp32, and the banner says which runs; fp32 " \
                           "sums; weights and the rest stay fp32; saved in the checkpoint)"
int cli_precision(const char *who, const cli_cmd *cmd, const char *name, attn_dtype *compute);
/* What the default context's path computes a model's scaled dot-product attention in (B, H heads, T = S
 * rows, head width D, a sliding window when window) when compute is asked: attn_sdpa_compute_type's
 * answer, F32 on any error. */
attn_dtype cli_sdpa_runs(attn_dtype compute, int B, int H, int T, int D, int window);
/* The banners' word for it: "bf16" or "f32", and "f32 (bf16 asked: ...)" when bf16 was asked but the path
 * runs the model's attention in fp32 (no bf16 units, heads too small for them, a sparse mask). */
const char *cli_compute_word(attn_dtype asked, attn_dtype runs);
#define CLI_PATCH_KERNEL_HELP "overlapping patches: the patch embedding's convolution reads K x K pixels around " \
    "each patch (stride --patch, zero padding (K - patch)/2; K - patch even, K <= 3 x patch); the tokens stay the " \
    "same (default: the patch size, no overlap; saved in the checkpoint, --resume keeps it)"
/* --patch-kernel K (0: not given) for --patch P: 0, or 2 after a message and cmd's usage. */
int cli_patch_kernel(const char *who, const cli_cmd *cmd, int P, int K);
/* --resume with --patch-kernel K (0: not given) on a checkpoint trained with kernel ck: 0, or 2 after a
 * message when they differ. */
int cli_patch_kernel_resume(const char *who, const char *ckpt, int K, int ck);

/* Writes the explorer page (attn_explorer_html) to --html path and says so. Returns 0, or 1 after a
 * message. */
int cli_write_html(const char *who, const attn_explorer_map *maps, int n, const char *title, const char *note,
                   const char *path);

/* Checks a --threads value: 0 (every core) .. ATTN_MAX_THREADS; warns on stderr when it exceeds the cores
 * online. flag names the option. Returns 0, or 2 after a message (the caller exits 2). */
int cli_check_threads(const char *who, const char *flag, int n);

/* splitmix64's finalizer: the programs' seeds for shuffles, strips and augmentation. */
uint64_t cli_mix64(uint64_t x);

/* Fashion-MNIST from dir (attn_fmnist_load), with a line saying what was read; on failure a message (and
 * where Debian puts the files). Returns 0, or 1 after a message. */
int cli_fmnist_load(const char *who, attn_fmnist *d, const char *dir, int limit);

/* --resume: the n numbers under keys in the metadata of the checkpoint at path (a training's settings).
 * Returns 0, or 1 after a message naming the missing key. */
int cli_run_meta(const char *who, const char *path, const char *const *keys, int n, double *v);
/* A whole number of 64 bits from the checkpoint's metadata (a seed: doubles keep 53 bits); 0, or 1 after a
 * message. */
int cli_run_meta_u64(const char *who, const char *path, const char *key, uint64_t *out);
/* Whether the safetensors file at path has metadata key (0 also when it cannot be read). */
int cli_has_meta(const char *path, const char *key);

/* Checks an integer flag against lo..hi (hi < lo: no upper bound). Returns 0, or 2 after the message
 * "attn: <who>: --flag V: must be ...". */
int cli_check_int(const char *who, const char *flag, int v, int lo, int hi);

/* Parses a window "LEFT" or "LEFT,RIGHT" (integers >= 0) into *left, *right; a lone LEFT gives
 * RIGHT = left_only_right (the caller's default: 0 for a one-sided window, -1 for LEFT on both sides).
 * Returns 0, or -1 when s is not such a window (no message). */
int cli_parse_window(const char *s, int left_only_right, int *left, int *right);

/* 1 when 24-bit colour codes may go to stdout: no --no-color (no_color_flag 0), stdout a terminal,
 * NO_COLOR unset or empty, and TERM not "dumb". */
int cli_use_color(int no_color_flag);

/* The data folder: --data when given (flag_value non-NULL), else $ATTN_DATA when set and non-empty, else
 * the built-in default. *from says which ("--data", "ATTN_DATA", "default"). */
const char *cli_data_dir(const char *flag_value, const char **from);
#define CLI_DATA_DEFAULT "../shared/data"

/* Reads a whole text: from the file path, or stdin when path is "-". *text malloc'ed, NUL-terminated.
 * Returns 0, or 1 after a message. */
int cli_read_text(const char *who, const char *path, char **text);

/* After a data set was not found: says where the data folder came from (from: cli_data_dir's) and how
 * to set it. */
void cli_data_hint(const char *who, const char *data, const char *from);

/* predict's text: the positional argument arg (NULL when absent; "-" reads standard input) or --file FILE
 * (NULL when absent), exactly one of them. *text malloc'ed. Returns 0, 1 after a read error, 2 after a
 * usage error (message and cmd's usage printed). */
int cli_predict_text(const char *who, const cli_cmd *cmd, const char *arg, const char *file, char **text);

/* Threads: the attention kernels' count (attn_set_num_threads; threads <= 0 means every core) and
 * OpenBLAS's: blas_threads of them, or with blas_threads <= 0 as many as the kernels have. A program
 * that splits batches across its own threads wants OpenBLAS on 1. */
void cli_set_threads(int threads, int blas_threads);

/* Sets OPENBLAS_CORETYPE and OMP_WAIT_POLICY when the defaults would be slow here and re-executes the
 * program once (runtime.c says why). argv is main()'s. */
void cli_tune_runtime(char **argv);

/* A training's history (history.c): the CSV beside the checkpoint, rewritten atomically after every epoch,
 * and with --plot its curves redrawn. */
typedef struct cli_history {
    attn_table t;
    char path[4200];             /* the CSV */
    char who[32];                /* "imdb", "translate": messages start "attn: <who>: " */
    const char *plot;            /* --plot FILE, or NULL */
    const char *title;           /* the charts' title prefix, or NULL */
} cli_history;

/* Starts the history at path with these columns (one must be "epoch"). resume_epoch > 0: a resumed
 * training whose checkpoint holds that many epochs: the rows of the history there up to that epoch are
 * kept (a missing file is a note; a malformed one, or one with other columns, an error). Returns 0, or 1
 * after a message. */
int cli_history_start(cli_history *h, const char *who, const char *path, int n_cols, const char *const *names,
                      int resume_epoch, const char *plot, const char *title);

/* Appends one epoch's row, rewrites the CSV, and with draw and --plot redraws the curves. Returns 0, or 1
 * after a message. */
int cli_history_add(cli_history *h, const double *row, int draw);
void cli_history_free(cli_history *h);

/* Draws a history's curves as one PNG: x the "epoch" column (else the first), one chart per quantity (a
 * column and its "val_" twin share one), every column but x, time and decision rules (rule_*) unless
 * columns (n_columns > 0) names them. title prefixes the charts' titles (NULL: none). Returns 0, or 1
 * (failure) or 2 (a column asked for is not there) with the reason in err. */
int cli_history_plot(const attn_table *t, const char *png, const char *title, const char *const *columns,
                     int n_columns, char *err, size_t err_size);

/* Subcommands: each takes the argv from its own name on and returns the exit status. */
int cmd_demo(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* bench_sparse.c: `attn bench --varlen L1,L2,...` and `attn bench --linear` (0, 1 on failure, 2 on a bad
 * --varlen list). */
int bench_varlen_lens_ok(const char *lens);   /* 1, or 0 after a message */
int bench_varlen(const char *lens, int H, int D, int causal, int backward, int repeat, const attn_ctx *ctx);
int bench_linear(int H, int D, int tmax, int backward, int repeat, const attn_ctx *ctx);
int cmd_bench_ring(int argc, char **argv);   /* `attn bench --ring` (bench_ring.c) */
/* Data-parallel training (dist.c): started by mpirun (and built with MPI), dist_start initializes MPI and
 * the program is one of dist_size() ranks; otherwise one rank and the other calls do nothing. Each returns
 * 0, or 1 after a message. dist_sum_ordered: attn_mpi_sum_ordered over every rank (the same bits on all);
 * dist_sum_doubles: counters summed for the log (no order promised); dist_abort stops every rank. */
int  dist_start(void);
void dist_stop(void);
int  dist_on(void);
int  dist_rank(void);
int  dist_size(void);
int  dist_sum_ordered(float *x, int64_t n, float *scratch);   /* scratch: n floats */
int  dist_sum_doubles(double *x, int n);
/* x = the sum of every rank's x (sparse rows + dense tail, rowsum.h) with the additions of
 * attn_mpi_sum_ordered's tree, the same bits on every rank; spare: shaped as x, for the additions; wire:
 * wire_bytes bytes (messages in), at least the packed size of the largest sum.
 * *bytes_sent gets the bytes this rank sent added. idle(user), when not NULL, is called once, when this
 * rank's first message is on its way and before it waits for one (without MPI: at once): work that does
 * not need the sum fills the wait. */
struct rowsum;
int  dist_rowsum_ordered(struct rowsum *x, struct rowsum *spare, void *wire, size_t wire_bytes, uint64_t *bytes_sent,
                         void (*idle)(void *), void *user);
int  dist_barrier(void);
/* Row-owned optimizer state: rank k owns rows [k·rows/N, (k+1)·rows/N) of a table. dist_swap_rows: to each
 * other rank p the rows send_ids[p] (n_send[p]) of table, and from it the rows recv_ids[p] (n_recv[p]) into
 * table (p's lists of the same rows in the same order); buf: (Σ n_send + Σ n_recv)·width floats.
 * dist_gather_owned: every rank's own rows of x (rows × width) to rank 0, or with all to every rank. Both add the bytes this rank sent
 * to *bytes_sent; 0, or 1 after a message; nothing without MPI or with one rank. */
int  dist_swap_rows(float *table, int width, int32_t *const *send_ids, const int *n_send, int32_t *const *recv_ids,
                    const int *n_recv, float *buf, uint64_t *bytes_sent);
int  dist_gather_owned(float *x, int width, int64_t rows, int all, uint64_t *bytes_sent);
void dist_abort(int code);
/* A training under mpirun: dist_quiet_followers sends every rank's stdout but rank 0's to /dev/null (0, or
 * 1 when it cannot); dist_finish(who, rc) stops every rank with a message when rc is an error on one, then
 * MPI, and returns rc. rc 2 is a usage error (flags, shards, the model's shape): every rank finds the same
 * from the same arguments, so they all end together, without the abort and its per-rank lines. */
int  dist_quiet_followers(void);
int  dist_finish(const char *who, int rc);
/* The test of a dead rank (tests/mpi: ATTN_TEST_DIE_AT_STEP=K under mpirun): rank 1 kills itself when a
 * training calls this with step == K (the run's steps done before the next). Nothing otherwise. */
void dist_test_die(int64_t step);
/* The shards a batch is cut into (--shards G): on --resume the checkpoint's (metadata "shards"; absent:
 * dflt), a different *shards (nonzero: given) refused; else *shards, or dflt when 0. The ranks must divide
 * it. *shards = G; *first, *count: this rank's shards (count 0 without mpirun: the whole batch here).
 * 0, or 1 (unreadable checkpoint) or 2 (bad setting) after a message. */
int  dist_shards(const char *who, const char *ckpt, int resume, int *shards, int dflt, int *first, int *count);
/* The translators' attn_shard_combine_fn: the ranks' shards gathered to rank 0 in shard order, summed,
 * and sent back (dist.c). */
attn_status dist_combine_shards(void *user, float *grads, size_t n_params, float *const *shard_grads,
                                const float *losses, int first, int count, int n_used, float *loss);
/* The detector's attn_detr_gather_fn: every rank's shards' rows (rank r holds shards [r·count,
 * (r+1)·count) of per rows each, the last cut at B) copied to every rank (dist.c). */
attn_status dist_gather_shards(void *user, float *x, size_t row_floats, int B, int per, int first, int count);
int cmd_imdb(int argc, char **argv);
int cmd_translate(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_vision(int argc, char **argv);
int cmd_caption(int argc, char **argv);
int cmd_detect(int argc, char **argv);

#endif /* ATTN_CLI_H */
