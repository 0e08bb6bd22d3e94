/*
 * common.c — helpers every `attn` subcommand would otherwise write again: a clock, output locations
 * checked before any long work, flag ranges named one by one, --threads checked, colour only where it
 * belongs, the data folder (--data, ATTN_DATA, the default), predict's text (argument, - or --file), and
 * setting up the threads of the attention kernels and of OpenBLAS. Uses only the public API.
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, mkdir */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cli_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_make_dir(const char *who, const char *path) {
    struct stat s;
    if (!path[0]) {
        fprintf(stderr, "attn: %s: an empty folder name\n", who);
        return 1;
    }
    if (stat(path, &s) == 0) {
        if (S_ISDIR(s.st_mode)) return 0;
        fprintf(stderr, "attn: %s: --out %s exists and is not a folder\n", who, path);
        return 1;
    }
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    /* the parents first, then the folder itself */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        const char c = *p;
        *p = '\0';
        if (stat(buf, &s) != 0 && mkdir(buf, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "attn: %s: cannot create folder %s: %s\n", who, buf, strerror(errno));
            return 1;
        }
        if (c == '\0') return 0;
        *p = c;
    }
}

int cli_check_out_dir(const char *who, const char *flag, const char *path) {
    struct stat s;
    if (stat(path, &s) == 0 && !S_ISDIR(s.st_mode)) {
        fprintf(stderr, "attn: %s: %s %s exists and is not a folder\n", who, flag, path);
        return 1;
    }
    if (cli_make_dir(who, path)) {
        fprintf(stderr, "attn: %s: %s %s cannot be created: choose another %s\n", who, flag, path, flag);
        return 1;
    }
    if (access(path, W_OK | X_OK) != 0) {
        fprintf(stderr, "attn: %s: %s %s is not writable: %s\n", who, flag, path, strerror(errno));
        return 1;
    }
    return 0;
}

int cli_check_out_file(const char *who, const char *flag, const char *path) {
    struct stat s;
    if (!path[0]) {
        fprintf(stderr, "attn: %s: %s is empty: give a file name\n", who, flag);
        return 1;
    }
    if (stat(path, &s) == 0 && S_ISDIR(s.st_mode)) {
        fprintf(stderr, "attn: %s: %s %s is a folder: give a file name\n", who, flag, path);
        return 1;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    if (cli_make_dir(who, dir)) {
        fprintf(stderr, "attn: %s: the folder of %s %s cannot be created\n", who, flag, path);
        return 1;
    }
    if (access(dir, W_OK | X_OK) != 0 || (stat(path, &s) == 0 && access(path, W_OK) != 0)) {
        fprintf(stderr, "attn: %s: %s %s cannot be written: %s\n", who, flag, path, strerror(errno));
        return 1;
    }
    return 0;
}

int cli_check_weights_out(const char *who, const cli_cmd *cmd, const char *path) {
    size_t n = strlen(path);
    const char *dot = strrchr(path, '.');
    if (!dot || (strcmp(dot, ".npy") != 0 && strcmp(dot, ".csv") != 0 && strcmp(dot, ".json") != 0) || n < 5) {
        fprintf(stderr, "attn: %s: --weights-out %s: the name must end in .npy, .csv or .json (the format)\n\n", who,
                path);
        cli_usage(cmd, stderr);
        return 2;
    }
    return cli_check_out_file(who, "--weights-out", path);
}

int cli_write_weights(const char *who, const attn_heatmap *maps, int n, const char *path) {
    char err[1024] = "";
    attn_status st = attn_heatmap_save_values(maps, n, path, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: %s: %s\n", who, err[0] ? err : attn_status_string(st));
        return 1;
    }
    size_t len = strlen(path);
    if (len > 4 && strcmp(path + len - 4, ".npy") == 0)
        printf("wrote %s (%d map%s of %dx%d) and its labels %.*s.labels.json\n", path, n, n == 1 ? "" : "s",
               maps[0].rows, maps[0].cols, (int)(len - 4), path);
    else
        printf("wrote %s (%d map%s of %dx%d)\n", path, n, n == 1 ? "" : "s", maps[0].rows, maps[0].cols);
    return 0;
}

int cli_palette(const char *who, const cli_cmd *cmd, const char *name, attn_palette *p) {
    *p = ATTN_PALETTE_MAGMA;
    if (!name || attn_palette_from_name(name, p) == ATTN_OK) return 0;
    fprintf(stderr, "attn: %s: --palette %s: must be one of", who, name);
    for (int i = 0; i < ATTN_PALETTE_COUNT; i++)
        fprintf(stderr, "%s %s", i ? "," : "", attn_palette_name((attn_palette)i));
    fprintf(stderr, "\n\n");
    cli_usage(cmd, stderr);
    return 2;
}

int cli_precision(const char *who, const cli_cmd *cmd, const char *name, attn_dtype *compute) {
    *compute = ATTN_DTYPE_F32;
    if (!name || strcmp(name, "f32") == 0) return 0;
    if (strcmp(name, "bf16") == 0) {
        *compute = ATTN_DTYPE_BF16;
        return 0;
    }
    fprintf(stderr, "attn: %s: --precision %s: must be f32 or bf16\n\n", who, name);
    cli_usage(cmd, stderr);
    return 2;
}

attn_dtype cli_sdpa_runs(attn_dtype compute, int B, int H, int T, int D, int window) {
    attn_sdpa_desc d;
    attn_dtype runs = ATTN_DTYPE_F32;
    if (attn_sdpa_desc_init(&d, B, H, T, T, D, D) != ATTN_OK) return ATTN_DTYPE_F32;
    d.compute = compute;
    d.mask.window = window != 0;
    return attn_sdpa_compute_type(NULL, &d, ATTN_PASS_FORWARD, &runs) == ATTN_OK ? runs : ATTN_DTYPE_F32;
}

const char *cli_compute_word(attn_dtype asked, attn_dtype runs) {
    if (runs == ATTN_DTYPE_BF16) return "bf16";
    return asked == ATTN_DTYPE_BF16 ? "f32 (bf16 asked: the kernel path in use runs this model's attention in fp32)"
                                    : "f32";
}

int cli_patch_kernel(const char *who, const cli_cmd *cmd, int P, int K) {
    if (K == 0 || (K >= P && (K - P) % 2 == 0 && K <= 3 * P)) return 0;
    fprintf(stderr, "attn: %s: --patch-kernel %d: expected --patch %d or more, at most 3 x --patch, and "
            "--patch-kernel - --patch even (the padding (K - patch)/2 on each side)\n\n", who, K, P);
    cli_usage(cmd, stderr);
    return 2;
}

int cli_patch_kernel_resume(const char *who, const char *ckpt, int K, int ck) {
    if (K == 0 || K == ck) return 0;
    fprintf(stderr, "attn: %s: --resume --patch-kernel %d: %s was trained with --patch-kernel %d; leave the flag "
            "out to go on with it\n", who, K, ckpt, ck);
    return 2;
}

int cli_write_html(const char *who, const attn_explorer_map *maps, int n, const char *title, const char *note,
                   const char *path) {
    char err[1024] = "";
    attn_status st = attn_explorer_html(maps, n, title, note, path, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: %s: %s\n", who, err[0] ? err : attn_status_string(st));
        return 1;
    }
    printf("wrote %s (the explorer: %d map%s; open it in a browser)\n", path, n, n == 1 ? "" : "s");
    return 0;
}

int cli_check_threads(const char *who, const char *flag, int n) {
    if (n < 0 || n > ATTN_MAX_THREADS) {
        fprintf(stderr, "attn: %s: %s %d: must be 0 (every core) to %d\n", who, flag, n, ATTN_MAX_THREADS);
        return 2;
    }
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > 0 && n > cores)
        fprintf(stderr, "attn: %s: warning: %s %d is more than the %ld cores online: expect it to be slower than "
                "%s %ld\n", who, flag, n, cores, flag, cores);
    return 0;
}

int cli_check_int(const char *who, const char *flag, int v, int lo, int hi) {
    if (v >= lo && (hi < lo || v <= hi)) return 0;
    if (hi < lo) fprintf(stderr, "attn: %s: %s %d: must be >= %d\n", who, flag, v, lo);
    else fprintf(stderr, "attn: %s: %s %d: must be in %d..%d\n", who, flag, v, lo, hi);
    return 2;
}

int cli_parse_window(const char *s, int left_only_right, int *left, int *right) {
    if (!s || !(*s >= '0' && *s <= '9')) return -1;
    char *e1 = NULL, *e2 = NULL;
    errno = 0;
    const long l = strtol(s, &e1, 10);
    long r = left_only_right < 0 ? l : left_only_right;
    if (errno || l > INT32_MAX) return -1;
    if (*e1 == ',') {
        if (!(e1[1] >= '0' && e1[1] <= '9')) return -1;
        r = strtol(e1 + 1, &e2, 10);
        if (errno || *e2 != '\0' || r > INT32_MAX) return -1;
    } else if (*e1 != '\0') {
        return -1;
    }
    *left = (int)l;
    *right = (int)r;
    return 0;
}

int cli_use_color(int no_color_flag) {
    if (no_color_flag || !isatty(STDOUT_FILENO)) return 0;
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    if (nc && nc[0]) return 0;                      /* https://no-color.org */
    if (term && strcmp(term, "dumb") == 0) return 0;
    return 1;
}

const char *cli_data_dir(const char *flag_value, const char **from) {
    const char *env = getenv("ATTN_DATA");
    if (flag_value) { *from = "--data"; return flag_value; }
    if (env && env[0]) { *from = "ATTN_DATA"; return env; }
    *from = "default";
    return CLI_DATA_DEFAULT;
}

int cli_read_text(const char *who, const char *path, char **text) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    const char *name = f == stdin ? "standard input" : path;
    *text = NULL;
    if (!f) {
        fprintf(stderr, "attn: %s: cannot read %s: %s\n", who, path, strerror(errno));
        return 1;
    }
    size_t n = 0, cap = 4096;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n + 1 >= cap) {
            char *nb = cap < ((size_t)1 << 30) ? realloc(buf, cap * 2) : NULL;
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    const int bad = ferror(f), oom = !buf;
    if (f != stdin) fclose(f);
    if (oom || bad) {
        free(buf);
        fprintf(stderr, "attn: %s: cannot read %s%s\n", who, name, oom ? ": out of memory (1 GiB at most)" : "");
        return 1;
    }
    buf[n] = '\0';
    *text = buf;
    return 0;
}

void cli_data_hint(const char *who, const char *data, const char *from) {
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, "?");
    if (strcmp(from, "default") == 0)
        fprintf(stderr, "attn: %s: the data folder is the default %s, relative to the working directory %s; give "
                "--data DIR or set ATTN_DATA=DIR\n", who, data, cwd);
    else
        fprintf(stderr, "attn: %s: the data folder %s came from %s (working directory %s)%s\n", who, data, from, cwd,
                strcmp(from, "ATTN_DATA") == 0 ? "; --data DIR overrides it" : "");
}

int cli_predict_text(const char *who, const cli_cmd *cmd, const char *arg, const char *file, char **text) {
    *text = NULL;
    if ((arg != NULL) == (file != NULL)) {
        fprintf(stderr, "attn: %s: %s\n\n", who, arg ? "give the text as the argument or with --file, not both"
                                                  : "missing the text: give it as the argument, - for standard "
                                                    "input, or --file FILE");
        cli_usage(cmd, stderr);
        return 2;
    }
    if (file || strcmp(arg, "-") == 0) return cli_read_text(who, file ? file : "-", text);
    *text = strdup(arg);
    if (!*text) return cli_fail(ATTN_ERR_NOMEM, who);
    return 0;
}

void cli_set_threads(int threads, int blas_threads) {
    attn_set_num_threads(threads);
    const int got = attn_get_num_threads();
    attn_blas_set_num_threads(blas_threads > 0 ? blas_threads : got > 0 ? got : 1);
}

uint64_t cli_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int cli_fmnist_load(const char *who, attn_fmnist *d, const char *dir, int limit) {
    char err[2048] = "";
    double t0 = cli_now();
    attn_status st = attn_fmnist_load(d, dir, limit, err, sizeof err);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn: %s: %s\n", who, err[0] ? err : attn_status_string(st));
        if (st == ATTN_ERR_IO)
            fprintf(stderr, "attn: %s: install Debian's dataset-fashion-mnist (it puts the files in %s) or give "
                    "--data DIR\n", who, ATTN_FMNIST_DEFAULT_DIR);
        return 1;
    }
    if (dist_rank() == 0)                /* data parallel: every rank reads, rank 0 says so */
        fprintf(stderr, "attn: %s: read %s in %.2f s: %d train, %d test images of %dx%d\n", who, dir, cli_now() - t0,
                d->train.n, d->test.n, d->train.rows, d->train.cols);
    return 0;
}

int cli_has_meta(const char *path, const char *key) {
    attn_st_file sf;
    if (attn_st_read(&sf, path, 0, NULL, 0) != ATTN_OK) return 0;
    const int has = attn_st_meta(&sf, key) != NULL;
    attn_st_free(&sf);
    return has;
}

int cli_run_meta_u64(const char *who, const char *path, const char *key, uint64_t *out) {
    attn_st_file sf;
    char err[1024] = "";
    if (attn_st_read(&sf, path, 0, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "attn: %s: --resume: %s\n", who, err);
        return 1;
    }
    const char *s = attn_st_meta(&sf, key);
    char *end = NULL;
    errno = 0;
    /* digits only: strtoull would take a sign or spaces, and wrap a negative number */
    const int digits = s && s[0] >= '0' && s[0] <= '9';
    const unsigned long long u = digits ? strtoull(s, &end, 10) : 0;
    const int ok = digits && end != s && !*end && errno != ERANGE;
    if (ok) *out = (uint64_t)u;
    else
        fprintf(stderr, "attn: %s: --resume: %s: metadata '%s' missing or not a whole number 0..2^64-1 (not a "
                "checkpoint of attn %s train?)\n", who, path, key, who);
    attn_st_free(&sf);
    return !ok;
}

int cli_run_meta(const char *who, const char *path, const char *const *keys, int n, double *v) {
    attn_st_file sf;
    char err[1024] = "";
    if (attn_st_read(&sf, path, 0, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "attn: %s: --resume: %s\n", who, err);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const char *s = attn_st_meta(&sf, keys[i]);
        char *end = NULL;
        v[i] = s ? strtod(s, &end) : 0;
        if (!s || end == s || *end) {
            fprintf(stderr, "attn: %s: --resume: %s: metadata '%s' missing or not a number (not a checkpoint of "
                    "attn %s train?)\n", who, path, keys[i], who);
            attn_st_free(&sf);
            return 1;
        }
    }
    attn_st_free(&sf);
    return 0;
}
