/*
 * fuzz_imdb_folder.c — attn_imdb_load (and attn_imdb_locate) on an unpacked aclImdb folder made from the
 * input: review files under train/{neg,pos} and test/{neg,pos} of a folder this process makes once, in
 * memory (/dev/shm) when it can, under TMPDIR when set (run.sh gives each run a scratch folder it removes
 * at the end, so a target killed mid-input leaves nothing). Every file is removed again before the next input.
 *
 * Input: one byte of layout, then entries separated by NUL bytes (so a review's text has none):
 *   layout   bits 0..3: train/neg, train/pos, test/neg, test/pos absent (the loader must say which);
 *            bits 4..5: --limit 0..3
 *   entry    <where><name>\n<text>    where: bits 0..1 the folder (as above), bits 2..4 what the name is:
 *            0..3 a regular file holding text, 4 a folder, 5 a FIFO, 6 a symbolic link to nothing, 7 a
 *            symbolic link to a regular file holding text. No newline: the name is "<k>_<where>.txt".
 *   A '/' in a name becomes '_'; "." and ".." are left out, as is a second entry of the same name.
 * A data set that loads must have ids inside the vocabulary, labels 0 or 1, at least one review per split
 * and no more than the files given; an error must have a message.
 */
#include "fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_ENTRIES = 16, MAX_NAME = 200 };

static const char *const g_sub[4] = {"train/neg", "train/pos", "test/neg", "test/pos"};
static char g_root[256];          /* <tmp>/attn-fuzz-imdb-XXXXXX: train/, test/ and the four folders */
static int g_present[4];          /* which of the four folders exist now */

static void die(const char *what) {
    perror(what);
    abort();
}

static void remove_root(void) {
    char p[512];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", g_root, g_sub[i]);
        rmdir(p);
    }
    snprintf(p, sizeof p, "%s/train", g_root);
    rmdir(p);
    snprintf(p, sizeof p, "%s/test", g_root);
    rmdir(p);
    snprintf(p, sizeof p, "%s/target", g_root);
    unlink(p);
    rmdir(g_root);
}

/* Makes the folder once per process; removed at exit (what one input leaves is removed after it). */
static void make_root(void) {
    const char *tmp = getenv("TMPDIR");
    struct stat s;
    if (!tmp || !*tmp) tmp = stat("/dev/shm", &s) == 0 && S_ISDIR(s.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(g_root, sizeof g_root, "%s/attn-fuzz-imdb-XXXXXX", tmp);
    if (!mkdtemp(g_root)) die("mkdtemp");
    char p[512];
    snprintf(p, sizeof p, "%s/train", g_root);
    if (mkdir(p, 0700) != 0) die(p);
    snprintf(p, sizeof p, "%s/test", g_root);
    if (mkdir(p, 0700) != 0) die(p);
    atexit(remove_root);
}

/* Writes n bytes to a new file; 0 when it cannot be made (a name given twice). */
static int write_file(const char *path, const uint8_t *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return 0;
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, data + done, n - done);
        if (w <= 0) die("write");
        done += (size_t)w;
    }
    close(fd);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_root[0]) make_root();
    if (size == 0) return 0;
    uint8_t layout = data[0];
    char p[512];
    for (int i = 0; i < 4; i++) {
        int want = !(layout >> i & 1);
        if (want == g_present[i]) continue;
        snprintf(p, sizeof p, "%s/%s", g_root, g_sub[i]);
        if (want ? mkdir(p, 0700) != 0 : rmdir(p) != 0) die(p);
        g_present[i] = want;
    }

    /* the entries: made, and remembered to be removed */
    char made[MAX_ENTRIES][512];
    int made_dir[MAX_ENTRIES], n_made = 0, n_files[2] = {0, 0}, n_target = 0;
    char target[512];
    snprintf(target, sizeof target, "%s/target", g_root);
    size_t at = 1;
    for (int k = 0; at < size && n_made < MAX_ENTRIES; k++) {
        const uint8_t *e = data + at, *end = memchr(e, '\0', size - at);
        size_t n = end ? (size_t)(end - e) : size - at;
        at += n + 1;
        if (n == 0) continue;
        int dir = e[0] & 3, kind = e[0] >> 2 & 7;
        const uint8_t *nl = memchr(e + 1, '\n', n - 1), *text = nl ? nl + 1 : e + 1;
        size_t text_n = n - (size_t)(text - e);
        char name[MAX_NAME + 1];
        if (nl) {
            size_t len = (size_t)(nl - (e + 1));
            if (len > MAX_NAME) len = MAX_NAME;
            for (size_t i = 0; i < len; i++) name[i] = e[1 + i] == '/' ? '_' : (char)e[1 + i];
            name[len] = '\0';
        } else {
            snprintf(name, sizeof name, "%d_%d.txt", k, e[0]);
        }
        if (!g_present[dir] || !name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        char *path = made[n_made];
        snprintf(path, sizeof made[0], "%s/%s/%s", g_root, g_sub[dir], name);
        int ok;
        if (kind < 4) ok = write_file(path, text, text_n);
        else if (kind == 4) ok = mkdir(path, 0700) == 0;
        else if (kind == 5) ok = mkfifo(path, 0600) == 0;
        else if (kind == 6) ok = symlink("nowhere", path) == 0;
        else {
            if (!n_target++ && !write_file(target, text, text_n)) die(target);
            ok = symlink(target, path) == 0;
        }
        if (!ok && errno != EEXIST) die(path);
        if (!ok) continue;
        made_dir[n_made++] = kind == 4;
        n_files[dir >> 1]++;
    }

    char found[1024], err[2048];
    FUZZ_ASSERT(attn_imdb_locate(g_root, found, sizeof found, err, sizeof err) == ATTN_OK);
    FUZZ_ASSERT(strcmp(found, g_root) == 0);
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.V = 40;
    o.T = 6;
    o.limit = layout >> 4 & 3;
    attn_imdb_data d;
    attn_status st = attn_imdb_load(&d, g_root, &o, err, sizeof err);
    if (st != ATTN_OK) {
        FUZZ_ERR_OK(err, sizeof err);
    } else {
        const attn_imdb_split *sp[2] = {&d.train, &d.test};
        FUZZ_ASSERT(d.source_size == 0 && d.T == o.T && d.vocab.V == o.V);
        for (int s = 0; s < 2; s++) {
            FUZZ_ASSERT(sp[s]->n > 0 && sp[s]->n <= n_files[s] && (o.limit == 0 || sp[s]->n <= o.limit));
            for (size_t i = 0; i < (size_t)sp[s]->n * (size_t)d.T; i++)
                FUZZ_ASSERT(sp[s]->ids[i] >= 0 && sp[s]->ids[i] < d.vocab.V);
            for (int i = 0; i < sp[s]->n; i++) FUZZ_ASSERT(sp[s]->labels[i] == 0 || sp[s]->labels[i] == 1);
        }
        attn_imdb_free(&d);
    }

    for (int i = 0; i < n_made; i++)
        if ((made_dir[i] ? rmdir(made[i]) : unlink(made[i])) != 0) die(made[i]);
    if (n_target && unlink(target) != 0) die(target);
    return 0;
}
