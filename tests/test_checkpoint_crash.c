/*
 * test_checkpoint_crash.c — checkpoints survive a crash at any moment. A child process saves a 3 MB
 * checkpoint with attn_st_write over and over (new contents each time) and is killed with SIGKILL after a
 * random delay, 200 times. After each kill the file must load with attn_st_read and be bitwise one of the
 * complete versions: the last one the child finished, or the one it was writing when it died (its rename
 * may have happened just before the kill) — never a torn mix, never an unreadable file.
 *
 * The child reports each finished save through a pipe; every version's contents follow from its number,
 * so the parent can regenerate and compare them. ATTN_CRASH_SEED=N repeats a run's delays.
 */
#define _POSIX_C_SOURCE 200809L
#include "attn.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { KILLS = 200, ROWS = 768, COLS = 1024, BIAS = 4096 };

/* Version v's value at element i of tensor k: a hash, so no two versions share their bytes. */
static uint32_t mix(uint64_t v, uint64_t k, uint64_t i) {
    uint64_t x = v * 0x9E3779B97F4A7C15ull ^ (k << 56) ^ i;
    x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27; x *= 0x94D049BB133111EBull;
    return (uint32_t)(x ^ (x >> 31));
}

static void fill(uint64_t v, float *w, int32_t *b) {
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) w[i] = (float)(mix(v, 0, i) >> 8) * (1.0f / 16777216.0f);
    for (size_t i = 0; i < BIAS; i++) b[i] = (int32_t)mix(v, 1, i);
}

static attn_status save(const char *path, uint64_t v, float *w, int32_t *b, char *err, size_t es) {
    fill(v, w, b);
    char vs[32];
    snprintf(vs, sizeof vs, "%llu", (unsigned long long)v);
    const char *keys[1] = {"version"}, *vals[1] = {vs};
    attn_st_tensor t[2] = {
        {.name = "layer.weight", .dtype = ATTN_DTYPE_F32, .ndim = 2, .shape = {ROWS, COLS}, .data = w,
         .nbytes = sizeof(float) * ROWS * COLS},
        {.name = "layer.bias", .dtype = ATTN_DTYPE_I32, .ndim = 1, .shape = {BIAS}, .data = b,
         .nbytes = sizeof(int32_t) * BIAS},
    };
    return attn_st_write(path, t, 2, keys, vals, 1, err, es);
}

/* The child: saves first, first + 1, ... until killed; reports each finished version on fd. */
static void child(const char *path, uint64_t first, int fd) {
    float *w = malloc(sizeof(float) * ROWS * COLS);
    int32_t *b = malloc(sizeof(int32_t) * BIAS);
    char err[512];
    if (!w || !b) _exit(3);
    for (uint64_t v = first;; v++) {
        if (save(path, v, w, b, err, sizeof err) != ATTN_OK) {
            fprintf(stderr, "child: %s\n", err);
            _exit(2);
        }
        if (write(fd, &v, sizeof v) != (ssize_t)sizeof v) _exit(4);
    }
}

/* Loads path and returns its version when it is bitwise that version's checkpoint; 0 and a message when
 * it does not load or does not match. */
static uint64_t verify(const char *path, float *w, int32_t *b) {
    attn_st_file f;
    char err[512];
    if (attn_st_read(&f, path, 0, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "  does not load: %s\n", err);
        return 0;
    }
    const char *vs = attn_st_meta(&f, "version");
    uint64_t v = vs ? strtoull(vs, NULL, 10) : 0;
    const attn_st_tensor *tw = attn_st_find(&f, "layer.weight"), *tb = attn_st_find(&f, "layer.bias");
    int ok = v > 0 && f.n == 2 && tw && tb && tw->nbytes == sizeof(float) * ROWS * COLS &&
             tb->nbytes == sizeof(int32_t) * BIAS;
    if (ok) {
        fill(v, w, b);
        ok = memcmp(tw->data, w, tw->nbytes) == 0 && memcmp(tb->data, b, tb->nbytes) == 0;
    }
    if (!ok) fprintf(stderr, "  loads, but is not bitwise version %s\n", vs ? vs : "(none)");
    attn_st_free(&f);
    return ok ? v : 0;
}

int main(void) {
    char dir[] = "/tmp/attn_crash_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    unsigned seed = getenv("ATTN_CRASH_SEED") ? (unsigned)strtoul(getenv("ATTN_CRASH_SEED"), NULL, 10)
                                              : (unsigned)time(NULL);
    srand(seed);
    float *w = malloc(sizeof(float) * ROWS * COLS);
    int32_t *b = malloc(sizeof(int32_t) * BIAS);
    char err[512];
    CHECK(w && b);
    if (!w || !b) return 1;
    /* version 1, written whole before any crash */
    CHECK_STATUS(save(path, 1, w, b, err, sizeof err), ATTN_OK);

    /* How long one save takes here, so the delays land anywhere in the first few saves. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_STATUS(save(tmp, 1, w, b, err, sizeof err), ATTN_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    remove(tmp);
    long save_us = (long)((t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000);
    if (save_us < 1000) save_us = 1000;
    long max_delay = 5 * save_us > 300000 ? 300000 : 5 * save_us;
    printf("crash test: %d kills, one save of %.1f MB takes %ld us, delays 0..%ld us, seed %u\n", KILLS,
           (sizeof(float) * ROWS * COLS + sizeof(int32_t) * BIAS) / 1048576.0, save_us, max_delay, seed);

    uint64_t on_disk = 1;
    int kills = 0, kept_old = 0, took_new = 0, saves_done = 0, bad = 0;
    for (int k = 0; k < KILLS && !bad; k++) {
        int fds[2];
        if (pipe(fds) != 0) { perror("pipe"); return 1; }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) {
            close(fds[0]);
            child(path, on_disk + 1, fds[1]);
        }
        close(fds[1]);
        long delay = (long)(((double)rand() / RAND_MAX) * (double)max_delay);
        struct timespec d = {delay / 1000000L, (delay % 1000000L) * 1000L};
        nanosleep(&d, NULL);
        kill(pid, SIGKILL);
        int ws = 0;
        waitpid(pid, &ws, 0);
        if (!(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL)) {
            fprintf(stderr, "  kill %d: the child ended on its own (status %d)\n", k, ws);
            bad = 1;
        }
        kills++;
        /* the last version the child reported finished (or what was there before it started) */
        uint64_t done = on_disk, v;
        while (read(fds[0], &v, sizeof v) == (ssize_t)sizeof v) { done = v; saves_done++; }
        close(fds[0]);
        uint64_t got = verify(path, w, b);
        if (got == done) kept_old++;
        else if (got == done + 1) took_new++;
        else {
            fprintf(stderr, "  kill %d after %ld us: found version %llu, expected %llu or %llu\n", k, delay,
                    (unsigned long long)got, (unsigned long long)done, (unsigned long long)done + 1);
            bad = 1;
        }
        if (got) on_disk = got;
    }
    CHECK(!bad);
    CHECK(kills == KILLS);
    printf("  %d kills: the file held the last finished version %d times, the one being written %d times, "
           "a torn or unreadable file %d times (%d saves finished in all)\n", kills, kept_old, took_new, bad,
           saves_done);
    remove(tmp);
    remove(path);
    rmdir(dir);
    free(w);
    free(b);
    return tu_finish("test_checkpoint_crash");
}
