/*
 * test_imdb.c — the IMDB data path and model: the tokenizer, the loader (folder and .tar.gz, on a
 * fixture of a dozen short reviews this test writes itself), the vocabulary (ranking and ties), the
 * encoding (pre-truncation, left padding), the cache (round trip, stale and corrupt ones), broken inputs
 * (invalid UTF-8, empty review, truncated archive, missing data, empty folders, no review at all),
 * reviews at and one byte past the size limit, files that are not regular files (a FIFO among the
 * reviews, as the cache or the archive; a FIFO, a link or a device where the cache is written), a cache
 * header promising more than its file holds, the whole model's loss and gradients against PyTorch
 * (tests/golden/imdb_model.safetensors from tools/golden/gen_imdb.py), and — when
 * ../shared/data has the archive — a short training run that must clearly beat chance.
 */
#define _XOPEN_SOURCE 700
#include "attn.h"
#include "attn/layers.h"
#include "attn/data.h"
#include "data/tar.h"
#include "testutil.h"

#include "attn/imdb_model.h"

#include <string.h>
#include <cblas.h>
#include <ftw.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <zlib.h>
#include <time.h>
#include <unistd.h>

static char g_dir[256];

/* ---- tokenizer -------------------------------------------------------------------------------------- */
typedef struct {
    char out[1024];
    int n;
} tok_sink;

static int sink(void *ctx, const char *w, size_t len) {
    tok_sink *s = ctx;
    size_t at = strlen(s->out);
    snprintf(s->out + at, sizeof s->out - at, "%s%.*s", s->n ? "|" : "", (int)len, w);
    s->n++;
    return 0;
}

static void check_tokens(const char *text, const char *want) {
    tok_sink s = {"", 0};
    size_t bad = 0;
    attn_status st = attn_imdb_tokenize(text, strlen(text), sink, &s, &bad);
    tu_checks++;
    if (st != ATTN_OK || strcmp(s.out, want) != 0) {
        tu_failures++;
        fprintf(stderr, "tokenize(\"%s\"): status %d, got \"%s\", want \"%s\"\n", text, st, s.out, want);
    }
}

static void check_bad_utf8(const char *text, size_t want_offset) {
    tok_sink s = {"", 0};
    size_t bad = 999;
    CHECK_STATUS(attn_imdb_tokenize(text, strlen(text), sink, &s, &bad), ATTN_ERR_FORMAT);
    CHECK(bad == want_offset);
}

static void test_tokenizer(void) {
    check_tokens("Hello, World!<br /><br />It's GREAT", "hello|world|it's|great");
    check_tokens("a<br/>b<BR>c<br  />d", "a|b|c|d");
    check_tokens("<b>bold</b> 1990s 7/10", "b|bold|b|1990s|7|10");
    check_tokens("don\xe2\x80\x99t \xe2\x80\x98quoted\xe2\x80\x99 it\xc2\xb4s", "don't|'quoted'|it's");
    check_tokens("\xc3\x89mile's caf\xc3\xa9 na\xc3\xafve", "\xc3\xa9mile's|caf\xc3\xa9|na\xc3\xafve");
    check_tokens("x\xe2\x80\x94y 5\xc3\x97" "3 \xc2\x96z \xe4\xb8\xad", "x|y|5|3|z");   /* dash, ×, C1, CJK */
    check_tokens("", "");
    check_tokens(" ... !!! ", "");
    char longw[200];
    memset(longw, 'a', 150);
    longw[150] = '\0';
    tok_sink s = {"", 0};
    CHECK_STATUS(attn_imdb_tokenize(longw, 150, sink, &s, NULL), ATTN_OK);
    CHECK(s.n == 1 && strlen(s.out) == ATTN_IMDB_MAX_WORD);
    check_bad_utf8("ab\xff" "cd", 2);
    check_bad_utf8("ok \xc0\xaf", 3);             /* overlong '/' */
    check_bad_utf8("end \xe2\x80", 4);            /* cut by the end */
    check_bad_utf8("\xed\xa0\x80", 0);            /* surrogate */
    check_bad_utf8("a\x80", 1);                   /* lone continuation */
    check_bad_utf8("\xf4\x90\x80\x80", 0);        /* above U+10FFFF */
}

/* ---- fixture ---------------------------------------------------------------------------------------- */
typedef struct {
    const char *name;            /* under aclImdb/ */
    const char *text;
} fixture_file;

/* Training word counts: the 9, bad 5, good 5, car 3, cars 3, apple 2, apricot 2, yak 1, zebra 1. */
static const fixture_file k_fixture[] = {
    {"README", "not a review"},
    {"imdb.vocab", "the\nbad\n"},
    {"train/urls_pos.txt", "http://example.com\n"},
    {"train/neg/0_1.txt", "The bad car.<br /><br />THE bad cars"},
    {"train/pos/0_9.txt", "the good good apple"},
    {"train/neg/1_3.txt", "the the bad bad car cars yak"},
    {"train/pos/1_8.txt", "The GOOD good apricot, apple!"},
    {"train/neg/2_4.txt", "the bad car cars apricot"},
    {"train/pos/2_10.txt", "the the good zebra"},
    {"train/unsup/5_0.txt", "ignored ignored ignored ignored ignored ignored ignored ignored ignored ignored"},
    {"test/neg/0_2.txt", "bad unseen the"},
    {"test/pos/0_7.txt", "good good good the car cars apple apricot yak zebra"},
    {"test/neg/1_1.txt", "\xc3\x89mile\xe2\x80\x99s caf\xc3\xa9"},
    {"test/pos/1_10.txt", "the"},
};
#define N_FIXTURE (int)(sizeof k_fixture / sizeof k_fixture[0])

static void mkdirs(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0777);
            *p = '/';
        }
    mkdir(buf, 0777);
}

static void write_file(const char *path, const char *data, size_t n) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        mkdirs(dir);
    }
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); return; }
    fwrite(data, 1, n, f);
    fclose(f);
}

/* Writes the fixture as root/aclImdb/... and as root/data.tar.gz; override replaces one file's text. */
static void make_fixture(const char *root, const char *override_name, const char *override_text) {
    char path[1024], tgz[1024];
    snprintf(tgz, sizeof tgz, "%s/data.tar.gz", root);
    mkdirs(root);
    attn__tar_writer *w;
    if (attn__tar_writer_open(&w, tgz) != ATTN_OK) { fprintf(stderr, "cannot write %s\n", tgz); return; }
    attn__tar_writer_add(w, "aclImdb/", '5', NULL, 0);
    for (int i = 0; i < N_FIXTURE; i++) {
        const char *text = k_fixture[i].text;
        if (override_name && strcmp(override_name, k_fixture[i].name) == 0) text = override_text;
        snprintf(path, sizeof path, "%s/aclImdb/%s", root, k_fixture[i].name);
        write_file(path, text, strlen(text));
        char name[256];
        snprintf(name, sizeof name, "aclImdb/%s", k_fixture[i].name);
        attn__tar_writer_add(w, name, '0', text, strlen(text));
    }
    attn__tar_writer_close(w);
}

static int ids_equal(const int32_t *a, const int32_t *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void check_row(const char *what, const int32_t *got, const int32_t *want, int T) {
    tu_checks++;
    if (!ids_equal(got, want, T)) {
        tu_failures++;
        fprintf(stderr, "%s: got", what);
        for (int i = 0; i < T; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, ", want");
        for (int i = 0; i < T; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
}

static void test_loader(void) {
    char root[512], folder[600], tgz[600], found[1024], err[1024];
    snprintf(root, sizeof root, "%s/good", g_dir);
    make_fixture(root, NULL, NULL);
    snprintf(folder, sizeof folder, "%s/aclImdb", root);
    snprintf(tgz, sizeof tgz, "%s/data.tar.gz", root);

    /* locate: the folder itself, and a folder holding aclImdb/ */
    CHECK_STATUS(attn_imdb_locate(folder, found, sizeof found, err, sizeof err), ATTN_OK);
    CHECK(strcmp(found, folder) == 0);
    CHECK_STATUS(attn_imdb_locate(root, found, sizeof found, err, sizeof err), ATTN_OK);
    CHECK(strcmp(found, folder) == 0);
    CHECK_STATUS(attn_imdb_locate(tgz, found, sizeof found, err, sizeof err), ATTN_OK);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nowhere", g_dir);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_locate(missing, found, sizeof found, err, sizeof err), ATTN_ERR_IO);
    printf("  missing data: %s\n", err);
    CHECK(strstr(err, missing) != NULL);

    attn_imdb_options o;
    attn_imdb_options_default(&o);
    CHECK(o.V == 20000 && o.T == 64 && o.limit == 0);
    o.V = 10;
    o.T = 6;
    attn_imdb_data a, b;
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&a, folder, &o, err, sizeof err), ATTN_OK);
    if (err[0]) printf("  %s\n", err);
    CHECK_STATUS(attn_imdb_load(&b, tgz, &o, err, sizeof err), ATTN_OK);
    CHECK(a.train.n == 6 && a.test.n == 4 && a.T == 6);

    /* vocabulary: ranked by count, ties by bytes (a prefix first); V-3 words */
    static const char *const want_words[10] = {"<pad>", "<start>", "<oov>", "the", "bad", "good", "car", "cars",
                                               "apple", "apricot"};
    CHECK(a.vocab.V == 10);
    int words_ok = a.vocab.V == 10;
    for (int i = 0; i < 10 && words_ok; i++) words_ok = strcmp(a.vocab.words[i], want_words[i]) == 0;
    CHECK(words_ok);
    if (!words_ok)
        for (int i = 0; i < a.vocab.V; i++) fprintf(stderr, "  vocab[%d] = %s\n", i, a.vocab.words[i]);
    CHECK(attn_imdb_vocab_lookup(&a.vocab, "cars", 4) == 7);
    CHECK(attn_imdb_vocab_lookup(&a.vocab, "yak", 3) == ATTN_IMDB_OOV);
    CHECK(attn_imdb_vocab_lookup(&a.vocab, "ca", 2) == ATTN_IMDB_OOV);
    /* a word with a NUL inside is no word of the vocabulary, and its lookup does not read past the last
     * word ("apricot"; 676 suffixes, so that some probes meet it: under ASan, once an overread) */
    int nul_ok = attn_imdb_vocab_lookup(&a.vocab, "apricot\0", 8) == ATTN_IMDB_OOV;
    for (int i = 0; i < 26 * 26; i++) {
        char q[10] = "apricot";
        q[8] = (char)('a' + i / 26);
        q[9] = (char)('a' + i % 26);
        nul_ok &= attn_imdb_vocab_lookup(&a.vocab, q, 10) == ATTN_IMDB_OOV;
    }
    CHECK(nul_ok);

    /* canonical order and labels: neg 0, pos 0, neg 1, ... */
    static const int32_t want_train_labels[6] = {0, 1, 0, 1, 0, 1};
    CHECK(ids_equal(a.train.labels, want_train_labels, 6));
    static const int32_t want_test_labels[4] = {0, 1, 0, 1};
    CHECK(ids_equal(a.test.labels, want_test_labels, 4));

    /* encoding: left padding, start id, pre-truncation (the last T kept) */
    static const int32_t r0[6] = {0, 0, 1, 4, 2, 3};        /* "bad unseen the" */
    static const int32_t r1[6] = {6, 7, 8, 9, 2, 2};        /* 10 words: the last 6 of [1, ...] */
    static const int32_t r2[6] = {0, 0, 0, 1, 2, 2};        /* "Émile’s café": two OOV words */
    static const int32_t r3[6] = {0, 0, 0, 0, 1, 3};        /* "the" */
    check_row("test review 0", a.test.ids + 0, r0, 6);
    check_row("test review 1", a.test.ids + 6, r1, 6);
    check_row("test review 2", a.test.ids + 12, r2, 6);
    check_row("test review 3", a.test.ids + 18, r3, 6);
    static const int32_t t0w[6] = {3, 4, 6, 3, 4, 7};       /* [1, the, bad, car, the, bad, cars] -> last 6 */
    check_row("train review 0", a.train.ids, t0w, 6);

    /* the folder and the archive give the same data set */
    CHECK(a.vocab.crc == b.vocab.crc);
    CHECK(ids_equal(a.train.ids, b.train.ids, 36) && ids_equal(a.test.ids, b.test.ids, 24));
    CHECK(ids_equal(a.train.labels, b.train.labels, 6) && ids_equal(a.test.labels, b.test.labels, 4));

    /* encode_text with the same vocabulary */
    int32_t ids[6];
    int nw = 0;
    const char *txt = "bad unseen the";
    CHECK_STATUS(attn_imdb_encode_text(ids, 6, &a.vocab, txt, strlen(txt), &nw, NULL), ATTN_OK);
    check_row("encode_text", ids, r0, 6);
    CHECK(nw == 3);
    CHECK_STATUS(attn_imdb_encode_text(ids, 6, &a.vocab, " !? <br />", 10, &nw, NULL), ATTN_ERR_ARG);
    size_t bad = 0;
    CHECK_STATUS(attn_imdb_encode_text(ids, 6, &a.vocab, "ok \xfe", 4, &nw, &bad), ATTN_ERR_FORMAT);
    CHECK(bad == 3);

    /* a larger vocabulary than there are words: placeholders fill the ids no word has */
    o.V = 13;
    attn_imdb_data c;
    CHECK_STATUS(attn_imdb_load(&c, folder, &o, err, sizeof err), ATTN_OK);
    CHECK(c.vocab.V == 13 && strcmp(c.vocab.words[10], "yak") == 0 && strcmp(c.vocab.words[11], "zebra") == 0);
    CHECK(strncmp(c.vocab.words[12], "<unused", 7) == 0);
    attn_imdb_free(&c);

    /* --limit: the first 2 of each split, the vocabulary from those 2 */
    o.V = 10;
    o.limit = 2;
    CHECK_STATUS(attn_imdb_load(&c, tgz, &o, err, sizeof err), ATTN_OK);
    CHECK(c.train.n == 2 && c.test.n == 2);
    CHECK(strcmp(c.vocab.words[3], "the") == 0 && strcmp(c.vocab.words[6], "apple") == 0 &&
          strcmp(c.vocab.words[7], "car") == 0 && strcmp(c.vocab.words[8], "cars") == 0);
    attn_imdb_free(&c);
    o.limit = 0;

    /* ---- cache ---- */
    char cache[600];
    snprintf(cache, sizeof cache, "%s/cache.bin", root);
    CHECK_STATUS(attn_imdb_cache_save(&a, &o, cache, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn_imdb_cache_load(&c, &o, folder, cache, err, sizeof err), ATTN_OK);
    CHECK(c.vocab.crc == a.vocab.crc && c.train.n == 6 && c.test.n == 4 && c.T == 6);
    CHECK(ids_equal(c.train.ids, a.train.ids, 36) && ids_equal(c.test.ids, a.test.ids, 24));
    CHECK(ids_equal(c.train.labels, a.train.labels, 6) && ids_equal(c.test.labels, a.test.labels, 4));
    CHECK(strcmp(c.vocab.words[9], "apricot") == 0);
    attn_imdb_free(&c);
    attn_imdb_options o2 = o;
    o2.T = 7;
    CHECK_STATUS(attn_imdb_cache_load(&c, &o2, NULL, cache, err, sizeof err), ATTN_ERR_ARG);   /* stale */
    o2 = o;
    o2.limit = 3;
    CHECK_STATUS(attn_imdb_cache_load(&c, &o2, NULL, cache, err, sizeof err), ATTN_ERR_ARG);
    CHECK_STATUS(attn_imdb_cache_load(&c, &o, tgz, cache, err, sizeof err), ATTN_ERR_ARG);      /* other source */
    /* corrupt: one payload byte, the header, truncation, trailing bytes */
    FILE *f = fopen(cache, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *raw = malloc((size_t)size + 8);
    CHECK(fread(raw, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    char broken[600];
    snprintf(broken, sizeof broken, "%s/broken.bin", root);
    raw[size - 10] ^= 1;
    write_file(broken, (const char *)raw, (size_t)size);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_cache_load(&c, &o, NULL, broken, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  corrupt cache: %s\n", err);
    CHECK(strstr(err, "checksum") != NULL);
    raw[size - 10] ^= 1;
    raw[20] ^= 1;
    write_file(broken, (const char *)raw, (size_t)size);
    CHECK_STATUS(attn_imdb_cache_load(&c, &o, NULL, broken, err, sizeof err), ATTN_ERR_FORMAT);
    raw[20] ^= 1;
    write_file(broken, (const char *)raw, (size_t)size - 5);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_cache_load(&c, &o, NULL, broken, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  truncated cache: %s\n", err);
    CHECK(strstr(err, "truncated") != NULL);
    memset(raw + size, 0, 8);
    write_file(broken, (const char *)raw, (size_t)size + 8);
    CHECK_STATUS(attn_imdb_cache_load(&c, &o, NULL, broken, err, sizeof err), ATTN_ERR_FORMAT);
    raw[0] = 'X';
    write_file(broken, (const char *)raw, (size_t)size);
    CHECK_STATUS(attn_imdb_cache_load(&c, &o, NULL, broken, err, sizeof err), ATTN_ERR_FORMAT);
    write_file(broken, "", 0);
    CHECK_STATUS(attn_imdb_cache_load(&c, &o, NULL, broken, err, sizeof err), ATTN_ERR_FORMAT);
    free(raw);
    attn_imdb_free(&a);
    attn_imdb_free(&b);
}

static void test_broken_inputs(void) {
    char root[512], path[700], err[1024];
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.V = 10;
    o.T = 6;
    attn_imdb_data d;

    /* invalid UTF-8 in a review: named, with the byte offset, from the folder and from the archive */
    snprintf(root, sizeof root, "%s/badutf8", g_dir);
    make_fixture(root, "train/neg/1_3.txt", "the bad \xc3\x28 car");
    snprintf(path, sizeof path, "%s/aclImdb", root);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&d, path, &o, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  invalid UTF-8 (folder): %s\n", err);
    CHECK(strstr(err, "1_3.txt") != NULL && strstr(err, "UTF-8") != NULL && strstr(err, "byte 8") != NULL);
    snprintf(path, sizeof path, "%s/data.tar.gz", root);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&d, path, &o, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  invalid UTF-8 (archive): %s\n", err);
    CHECK(strstr(err, "aclImdb/train/neg/1_3.txt") != NULL && strstr(err, "UTF-8") != NULL);

    /* an empty review (only markup and punctuation) */
    snprintf(root, sizeof root, "%s/empty", g_dir);
    make_fixture(root, "test/pos/1_10.txt", "<br /><br /> ... ");
    snprintf(path, sizeof path, "%s/data.tar.gz", root);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&d, path, &o, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  empty review: %s\n", err);
    CHECK(strstr(err, "1_10.txt") != NULL && strstr(err, "empty") != NULL);

    /* a truncated archive */
    snprintf(root, sizeof root, "%s/good", g_dir);
    snprintf(path, sizeof path, "%s/data.tar.gz", root);
    FILE *f = fopen(path, "rb");
    unsigned char buf[65536];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    char cut[700];
    snprintf(cut, sizeof cut, "%s/cut.tar.gz", g_dir);
    write_file(cut, (const char *)buf, n * 2 / 3);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&d, cut, &o, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  truncated archive: %s\n", err);
    CHECK(strstr(err, "truncated") != NULL && strstr(err, "cut.tar.gz") != NULL);

    /* a folder without the test split */
    snprintf(root, sizeof root, "%s/notest/aclImdb", g_dir);
    snprintf(path, sizeof path, "%s/train/pos/0_9.txt", root);
    write_file(path, "good", 4);
    snprintf(path, sizeof path, "%s/train/neg/0_1.txt", root);
    write_file(path, "bad", 3);
    snprintf(path, sizeof path, "%s/test", root);
    mkdirs(path);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&d, root, &o, err, sizeof err), ATTN_ERR_IO);
    printf("  missing split: %s\n", err);
    CHECK(strstr(err, "test/neg") != NULL);

    /* bad options */
    o.V = 3;
    CHECK_STATUS(attn_imdb_load(&d, root, &o, err, sizeof err), ATTN_ERR_ARG);
}

/* Folders and archives with nothing to sort: a label folder without a review still loads (the other
 * label has some); no review in a split, or none at all, is an error naming the split. Under the
 * sanitizers these once passed NULL to qsort. */
static void test_empty_folders(void) {
    char root[512], path[700], err[1024];
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.V = 10;
    o.T = 6;
    attn_imdb_data d;
    static const char *const sub[4] = {"train/neg", "train/pos", "test/neg", "test/pos"};
    snprintf(root, sizeof root, "%s/emptylabel/aclImdb", g_dir);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", root, sub[i]);
        mkdirs(path);
    }
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&d, root, &o, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  no review at all (folder): %s\n", err);
    CHECK(strstr(err, "no train review") != NULL);
    snprintf(path, sizeof path, "%s/train/pos/0_9.txt", root);
    write_file(path, "good", 4);
    snprintf(path, sizeof path, "%s/test/neg/0_1.txt", root);
    write_file(path, "bad", 3);
    CHECK_STATUS(attn_imdb_load(&d, root, &o, err, sizeof err), ATTN_OK);
    CHECK(d.train.n == 1 && d.test.n == 1 && d.train.labels && d.train.labels[0] == 1);
    attn_imdb_free(&d);

    snprintf(path, sizeof path, "%s/emptylabel/none.tar.gz", g_dir);
    attn__tar_writer *w;
    CHECK_STATUS(attn__tar_writer_open(&w, path), ATTN_OK);
    attn__tar_writer_add(w, "aclImdb/README", '0', "no review here", 14);
    CHECK_STATUS(attn__tar_writer_close(w), ATTN_OK);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&d, path, &o, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  no review at all (archive): %s\n", err);
    CHECK(strstr(err, "no train review") != NULL);
}

/* A review of exactly ATTN_IMDB_MAX_REVIEW bytes loads, the same from the folder (whose read buffer grows
 * to it from 4 KB) as from the archive; one byte more is refused by both, naming the file. */
static void test_review_size(void) {
    char root[512], path[700], err[1024];
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.V = 10;
    o.T = 6;
    size_t n = ATTN_IMDB_MAX_REVIEW;
    char *big = malloc(n + 2);
    for (size_t i = 0; i < n + 1; i++) big[i] = "ab "[i % 3];
    memcpy(big + n - 6, " yy zz", 6);          /* the last words, which only a whole read sees */
    big[n] = '\0';
    snprintf(root, sizeof root, "%s/bigreview", g_dir);
    make_fixture(root, "train/pos/0_9.txt", big);
    attn_imdb_data a, b;
    snprintf(path, sizeof path, "%s/aclImdb", root);
    CHECK_STATUS(attn_imdb_load(&a, path, &o, err, sizeof err), ATTN_OK);
    snprintf(path, sizeof path, "%s/data.tar.gz", root);
    CHECK_STATUS(attn_imdb_load(&b, path, &o, err, sizeof err), ATTN_OK);
    if (a.train.ids && b.train.ids) {
        CHECK(a.train.n == b.train.n && a.vocab.crc == b.vocab.crc);
        CHECK(ids_equal(a.train.ids, b.train.ids, a.train.n * o.T) && ids_equal(a.test.ids, b.test.ids, a.test.n * o.T));
        /* 0_9 is the second training review (neg 0, pos 0, ...); its row ends with "yy zz" */
        int32_t zz = attn_imdb_vocab_lookup(&a.vocab, "zz", 2), yy = attn_imdb_vocab_lookup(&a.vocab, "yy", 2);
        CHECK(a.train.ids[1 * o.T + 5] == zz && a.train.ids[1 * o.T + 4] == yy);
    }
    attn_imdb_free(&a);
    attn_imdb_free(&b);

    big[n - 6] = 'x';                               /* one more byte: "... abx yy zz" */
    memcpy(big + n - 5, " yy zz", 6);
    big[n + 1] = '\0';
    snprintf(root, sizeof root, "%s/hugereview", g_dir);
    make_fixture(root, "train/pos/0_9.txt", big);
    snprintf(path, sizeof path, "%s/aclImdb", root);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&a, path, &o, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  review too large (folder): %s\n", err);
    CHECK(strstr(err, "0_9.txt") != NULL && strstr(err, "more than") != NULL);
    snprintf(path, sizeof path, "%s/data.tar.gz", root);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&a, path, &o, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  review too large (archive): %s\n", err);
    CHECK(strstr(err, "0_9.txt") != NULL && strstr(err, "more than") != NULL);
    free(big);
}

/* ---- files that are not regular files, and a cache that promises too much -------------------------- */
static int is_fifo(const char *p) {
    struct stat s;
    return lstat(p, &s) == 0 && S_ISFIFO(s.st_mode);
}

/* Forks. The child gets an address space capped at what it maps now plus extra bytes (so an allocation
 * the input does not justify fails) and 0 is returned there; the parent gets the child's pid. */
static pid_t fork_limited(size_t extra) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid != 0) return pid;
    long pages = 0;
    FILE *sm = fopen("/proc/self/statm", "r");
    if (sm && fscanf(sm, "%ld", &pages) != 1) pages = 0;
    if (sm) fclose(sm);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t)extra;
    setrlimit(RLIMIT_AS, &rl);
    return 0;
}

static int child_ok(pid_t pid) {
    int ws = 0;
    return pid > 0 && waitpid(pid, &ws, 0) == pid && WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
}

static void test_special_files(void) {
    char root[512], path[700], err[1024];
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.V = 10;
    o.T = 6;
    attn_imdb_data d;
    /* Each call below must come back: a FIFO with no writer blocks an open forever. */
    alarm(20);

    /* a FIFO named like a review in the folder */
    snprintf(root, sizeof root, "%s/fifo", g_dir);
    make_fixture(root, NULL, NULL);
    snprintf(path, sizeof path, "%s/aclImdb/train/pos/3_9.txt", root);
    CHECK(mkfifo(path, 0600) == 0);
    snprintf(path, sizeof path, "%s/aclImdb", root);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&d, path, &o, err, sizeof err), ATTN_ERR_IO);
    printf("  FIFO among the reviews: %s\n", err);
    CHECK(strstr(err, "3_9.txt") != NULL && strstr(err, "FIFO") != NULL);

    /* a FIFO as the archive and as the cache */
    snprintf(path, sizeof path, "%s/data.fifo", root);
    CHECK(mkfifo(path, 0600) == 0);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_load(&d, path, &o, err, sizeof err), ATTN_ERR_IO);
    printf("  FIFO as the archive: %s\n", err);
    CHECK(strstr(err, "data.fifo") != NULL && strstr(err, "FIFO") != NULL);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_cache_load(&d, &o, NULL, path, err, sizeof err), ATTN_ERR_IO);
    printf("  FIFO as the cache: %s\n", err);
    CHECK(strstr(err, "FIFO") != NULL);

    /* writing the cache over a FIFO, a symbolic link or a device: refused, the thing left as it was */
    attn_imdb_data good;
    snprintf(path, sizeof path, "%s/data.tar.gz", root);
    CHECK_STATUS(attn_imdb_load(&good, path, &o, err, sizeof err), ATTN_OK);
    snprintf(path, sizeof path, "%s/data.fifo", root);
    err[0] = '\0';
    CHECK_STATUS(attn_imdb_cache_save(&good, &o, path, err, sizeof err), ATTN_ERR_IO);
    printf("  cache written over a FIFO: %s\n", err);
    CHECK(is_fifo(path) && strstr(err, "FIFO") != NULL && strstr(err, "not a regular file") != NULL);
    char link[700];
    snprintf(link, sizeof link, "%s/cache.link", root);
    snprintf(path, sizeof path, "%s/cache.bin", root);
    CHECK_STATUS(attn_imdb_cache_save(&good, &o, path, err, sizeof err), ATTN_OK);
    CHECK(symlink(path, link) == 0);
    CHECK_STATUS(attn_imdb_cache_save(&good, &o, link, err, sizeof err), ATTN_ERR_IO);
    struct stat sb;
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode) && strstr(err, "symbolic link") != NULL);
    if (geteuid() == 0) {                        /* a null device of our own, in the test's folder */
        snprintf(path, sizeof path, "%s/null", root);
        if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) == 0) {
            CHECK_STATUS(attn_imdb_cache_save(&good, &o, path, err, sizeof err), ATTN_ERR_IO);
            CHECK(lstat(path, &sb) == 0 && S_ISCHR(sb.st_mode));
        }
    }
    /* a temporary file's name taken by a FIFO: refused too, not waited on */
    snprintf(path, sizeof path, "%s/other.bin.tmp", root);
    CHECK(mkfifo(path, 0600) == 0);
    snprintf(path, sizeof path, "%s/other.bin", root);
    CHECK_STATUS(attn_imdb_cache_save(&good, &o, path, err, sizeof err), ATTN_ERR_IO);
    alarm(0);

    /* A header promising 2.4 GB of ids in a file of a few hundred bytes: refused before anything is
     * allocated. Checked in a child under a 1 GB address-space allowance (not under AddressSanitizer,
     * whose shadow memory needs far more). */
    snprintf(path, sizeof path, "%s/cache.bin", root);
    FILE *f = fopen(path, "rb");
    unsigned char h[96];
    CHECK(f && fread(h, 1, 96, f) == 96);
    if (f) fclose(f);
    uint32_t ntr = 100000000u, T = 6;
    uint64_t blob = 0, total;
    for (int i = 7; i >= 0; i--) blob = (blob << 8) | h[56 + i];
    total = blob + 4ull * ((uint64_t)ntr * T + ntr + 4ull * T + 4);
    for (int i = 0; i < 4; i++) h[24 + i] = (unsigned char)(ntr >> (8 * i));
    for (int i = 0; i < 8; i++) h[64 + i] = (unsigned char)(total >> (8 * i));
    uint32_t crc = (uint32_t)crc32(0L, h, 76);
    for (int i = 0; i < 4; i++) h[76 + i] = (unsigned char)(crc >> (8 * i));
    snprintf(path, sizeof path, "%s/huge.cache", root);
    write_file(path, (const char *)h, 96);
    err[0] = '\0';
    if (getenv("ATTN_SANITIZED")) {
        CHECK_STATUS(attn_imdb_cache_load(&d, &o, NULL, path, err, sizeof err), ATTN_ERR_FORMAT);
    } else {
        pid_t pid = fork_limited(1ull << 30);
        if (pid == 0) {
            attn_status st = attn_imdb_cache_load(&d, &o, NULL, path, err, sizeof err);
            printf("  cache promising 2.4 GB: %s (%s)\n", attn_status_string(st), err);
            fflush(stdout);
            _exit(st == ATTN_ERR_FORMAT && strstr(err, "truncated") != NULL ? 0 : 1);
        }
        CHECK(child_ok(pid));
    }

    /* A vocabulary blob of 4 words claiming V = 2^24 (what a corrupt cache header said): refused before
     * 2 × 128 MB are allocated for the claim. */
    static const char words4[] = "<pad>\0<start>\0<oov>\0the";
    attn_imdb_vocab v;
    if (getenv("ATTN_SANITIZED")) {
        CHECK_STATUS(attn_imdb_vocab_from_blob(&v, words4, sizeof words4, 1 << 24), ATTN_ERR_FORMAT);
    } else {
        pid_t pid = fork_limited(64u << 20);
        if (pid == 0) {
            attn_status st = attn_imdb_vocab_from_blob(&v, words4, sizeof words4, 1 << 24);
            printf("  vocabulary of 4 words claiming 2^24: %s\n", attn_status_string(st));
            fflush(stdout);
            _exit(st == ATTN_ERR_FORMAT ? 0 : 1);
        }
        CHECK(child_ok(pid));
    }
    attn_imdb_free(&good);
}

/* ---- the model against PyTorch ---------------------------------------------------------------------- */
static float *golden_f32(const attn_st_file *g, const char *name, size_t *n) {
    const attn_st_tensor *t = attn_st_find(g, name);
    if (!t || t->dtype != ATTN_DTYPE_F64) {
        fprintf(stderr, "golden tensor %s missing or not F64\n", name);
        tu_failures++;
        return NULL;
    }
    size_t k = t->nbytes / 8;
    float *out = malloc(sizeof(float) * k);
    const double *src = t->data;
    for (size_t i = 0; i < k; i++) out[i] = (float)src[i];
    *n = k;
    return out;
}

static void test_model_golden(void) {
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/imdb_model.safetensors", ATTN_GOLDEN_DIR);
    attn_st_file g;
    if (attn_st_read(&g, path, 0, err, sizeof err) != ATTN_OK) {
        fprintf(stderr, "cannot read %s: %s\n", path, err);
        tu_failures++;
        return;
    }
    const int V = 50, D = 8, T = 6, B = 4, C = 2;
    const attn_st_tensor *tid = attn_st_find(&g, "ids"), *tlab = attn_st_find(&g, "labels");
    CHECK(tid && tid->dtype == ATTN_DTYPE_I32 && tid->nbytes == sizeof(int32_t) * B * T);
    CHECK(tlab && tlab->dtype == ATTN_DTYPE_I32 && tlab->nbytes == sizeof(int32_t) * B);
    if (!tid || !tlab) { attn_st_free(&g); return; }
    int32_t ids[24], labels[4];
    memcpy(ids, tid->data, sizeof ids);
    memcpy(labels, tlab->data, sizeof labels);

    attn_imdb_config c = {V, D, T, C, 0.125f, 0.5f, 0, 0, 0, 0, ATTN_DTYPE_F32};
    attn_imdb_model m;
    CHECK_STATUS(attn_imdb_model_init(&m, NULL, &c, B, 7), ATTN_OK);
    CHECK(m.n_params == (size_t)V * D + 3 * D * D + C * D + C);
    const char *pn[4] = {"emb", "kernel", "dense_w", "dense_b"};
    float *dst[4] = {m.emb, m.kernel, m.dense_w, m.dense_b};
    size_t want_n[4] = {(size_t)V * D, 3 * (size_t)D * D, (size_t)C * D, (size_t)C};
    for (int i = 0; i < 4; i++) {
        size_t n = 0;
        float *p = golden_f32(&g, pn[i], &n);
        CHECK(p && n == want_n[i]);
        if (p && n == want_n[i]) memcpy(dst[i], p, n * sizeof(float));
        free(p);
    }
    /* forward, dropout off (train = 0), with the weights */
    float weights[4 * 6 * 6];
    double loss_sum = 0;
    int correct = 0;
    CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, B, 0, 0, weights, &loss_sum, &correct), ATTN_OK);
    size_t n;
    float *want = golden_f32(&g, "loss", &n);
    float got_loss = (float)(loss_sum / B);
    if (want) tu_close_f32("model loss", &got_loss, want, 1, 1e-6, 1e-5);
    free(want);
    want = golden_f32(&g, "probs", &n);
    if (want) tu_close_f32("model probs", m.probs, want, n, 1e-6, 1e-5);
    free(want);
    want = golden_f32(&g, "weights", &n);
    if (want) tu_close_f32("attention weights", weights, want, n, 1e-6, 1e-5);
    free(want);
    /* the evaluation path: projections from the per-word tables */
    loss_sum = 0;
    CHECK_STATUS(attn_imdb_model_eval_forward(&m, ids, labels, B, &loss_sum, &correct), ATTN_ERR_ARG);   /* unprepared */
    CHECK_STATUS(attn_imdb_model_eval_prepare(&m), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_eval_forward(&m, ids, labels, B, &loss_sum, &correct), ATTN_OK);
    got_loss = (float)(loss_sum / B);
    want = golden_f32(&g, "loss", &n);
    if (want) tu_close_f32("eval path loss", &got_loss, want, 1, 1e-6, 1e-5);
    free(want);
    want = golden_f32(&g, "probs", &n);
    if (want) tu_close_f32("eval path probs", m.probs, want, n, 1e-6, 1e-5);
    free(want);
    /* backward (the same forward without weights first, as training runs it) */
    loss_sum = 0;
    CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, B, 0, 0, NULL, &loss_sum, &correct), ATTN_OK);
    attn_imdb_model_zero_grad(&m, 1);
    CHECK_STATUS(attn_imdb_model_backward(&m, ids, labels, B, 0, 0), ATTN_OK);
    const char *gn[4] = {"d_emb", "d_kernel", "d_dense_w", "d_dense_b"};
    float *gd[4] = {m.d_emb, m.d_kernel, m.d_dense_w, m.d_dense_b};
    for (int i = 0; i < 4; i++) {
        want = golden_f32(&g, gn[i], &n);
        if (want && n == want_n[i]) tu_close_f32(gn[i], gd[i], want, n, 1e-6, 1e-4);
        free(want);
    }
    /* the sparse zeroing leaves a clean slab */
    attn_imdb_model_zero_grad(&m, 0);
    double s = 0;
    for (size_t i = 0; i < m.n_params; i++) s += fabs(m.grads[i]);
    CHECK(s == 0.0);

    /* two Keras-form Adam steps over the one slab */
    attn_adam a;
    CHECK_STATUS(attn_adam_alloc(&a, m.n_params, 0.01f), ATTN_OK);
    a.eps = 1e-7f;
    a.decay = 1e-5f;
    a.keras_eps = 1;
    for (int step = 0; step < 2; step++) {
        CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, B, 0, 0, NULL, &loss_sum, &correct), ATTN_OK);
        attn_imdb_model_zero_grad(&m, 0);
        CHECK_STATUS(attn_imdb_model_backward(&m, ids, labels, B, 0, 0), ATTN_OK);
        CHECK_STATUS(attn_adam_step(&a, m.params, m.grads), ATTN_OK);
    }
    const char *an[4] = {"adam2_emb", "adam2_kernel", "adam2_dense_w", "adam2_dense_b"};
    for (int i = 0; i < 4; i++) {
        want = golden_f32(&g, an[i], &n);
        if (want && n == want_n[i]) tu_close_f32(an[i], dst[i], want, n, 2e-5, 1e-4);
        free(want);
    }
    attn_adam_free(&a);

    /* dropout on: the forward differs from the eval forward, and the same seed repeats exactly */
    float p_eval[8], p_a[8], p_b[8];
    CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, B, 0, 0, NULL, &loss_sum, &correct), ATTN_OK);
    memcpy(p_eval, m.probs, sizeof p_eval);
    CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, B, 1, 42, NULL, &loss_sum, &correct), ATTN_OK);
    memcpy(p_a, m.probs, sizeof p_a);
    CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, B, 1, 42, NULL, &loss_sum, &correct), ATTN_OK);
    memcpy(p_b, m.probs, sizeof p_b);
    CHECK(memcmp(p_a, p_b, sizeof p_a) == 0 && memcmp(p_a, p_eval, sizeof p_a) != 0);
    /* an id outside the vocabulary is refused */
    int32_t badids[24];
    memcpy(badids, ids, sizeof badids);
    badids[5] = V;
    CHECK_STATUS(attn_imdb_model_forward(&m, badids, labels, B, 0, 0, NULL, &loss_sum, &correct), ATTN_ERR_ARG);
    CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, B + 1, 0, 0, NULL, &loss_sum, &correct), ATTN_ERR_SIZE);
    /* the backward reuses the last forward's state: other reviews, or an eval forward in between, are
     * refused rather than giving wrong gradients */
    CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, B, 0, 0, NULL, &loss_sum, &correct), ATTN_OK);
    int32_t other[24];
    memcpy(other, ids, sizeof other);
    other[7] = (ids[7] + 1) % V;
    CHECK_STATUS(attn_imdb_model_backward(&m, other, labels, B, 0, 0), ATTN_ERR_ARG);
    CHECK_STATUS(attn_imdb_model_backward(&m, ids, labels, B - 1, 0, 0), ATTN_ERR_ARG);
    CHECK_STATUS(attn_imdb_model_eval_prepare(&m), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_eval_forward(&m, ids, labels, B, &loss_sum, &correct), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_backward(&m, ids, labels, B, 0, 0), ATTN_ERR_ARG);
    attn_imdb_model_free(&m);

    /* the full-size model has exactly the published parameter count */
    attn_imdb_config full;
    attn_imdb_config_default(&full);
    CHECK_STATUS(attn_imdb_model_init(&m, NULL, &full, 1, 1), ATTN_OK);
    CHECK(m.n_params == 2609410);
    attn_imdb_model_free(&m);
    attn_st_free(&g);
}

/* ---- checkpoints: save, load, read_run, and the errors ------------------------------------------------ */
static void test_checkpoint(void) {
    const int V = 50, D = 8, T = 6, B = 4;
    attn_imdb_config c;
    attn_imdb_config_default(&c);
    c.V = V;
    c.D = D;
    c.T = T;
    attn_imdb_model m, l;
    CHECK_STATUS(attn_imdb_model_init(&m, NULL, &c, B, 3), ATTN_OK);
    /* a vocabulary of V words: the reserved ids' names, then w4 .. w49 */
    char blob[1024];
    size_t n = 0;
    for (int i = 0; i < V; i++)       /* each word and its NUL */
        n += (size_t)snprintf(blob + n, sizeof blob - n, i < ATTN_IMDB_FIRST_WORD ? "<r%d>" : "w%d", i) + 1;
    attn_imdb_vocab v, lv;
    CHECK_STATUS(attn_imdb_vocab_from_blob(&v, blob, n, V), ATTN_OK);
    attn_adam a, la;
    CHECK_STATUS(attn_adam_alloc(&a, m.n_params, 0.01f), ATTN_OK);
    CHECK_STATUS(attn_adam_alloc(&la, m.n_params, 0.01f), ATTN_OK);
    for (size_t i = 0; i < m.n_params; i++) {
        a.m[i] = 0.001f * (float)i;
        a.v[i] = 0.002f * (float)i;
    }
    a.t = 17;
    attn_imdb_run_info run = {3, 2000, 32, 17, 2e-4f, 99, 6}, got;
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
    CHECK_STATUS(attn_imdb_model_save(&m, &a, &v, &run, path, err, sizeof err), ATTN_OK);
    /* round trip: parameters, moments, step, vocabulary, run */
    CHECK_STATUS(attn_imdb_model_load(&l, NULL, 2, &la, &lv, &got, path, err, sizeof err), ATTN_OK);
    CHECK(l.cfg.V == V && l.cfg.T == T && l.cfg.D == D && l.Bmax == 2 && l.n_params == m.n_params);
    CHECK(memcmp(l.params, m.params, sizeof(float) * m.n_params) == 0);
    CHECK(memcmp(la.m, a.m, sizeof(float) * m.n_params) == 0 && memcmp(la.v, a.v, sizeof(float) * m.n_params) == 0);
    CHECK(la.t == 17 && lv.crc == v.crc && lv.V == V);
    CHECK(got.epoch == 3 && got.limit == 2000 && got.batch == 32 && got.adam_t == 17 && got.lr == 2e-4f && got.seed == 99 &&
          got.step == 6);
    attn_imdb_model_free(&l);
    attn_imdb_vocab_free(&lv);
    /* without the optional parts */
    CHECK_STATUS(attn_imdb_model_load(&l, NULL, 1, NULL, NULL, NULL, path, err, sizeof err), ATTN_OK);
    attn_imdb_model_free(&l);
    attn_imdb_run_info only = {0, -1, -1, 0, 0.0f, 0, 0};
    CHECK_STATUS(attn_imdb_model_read_run(path, &only, err, sizeof err), ATTN_OK);
    CHECK(only.limit == 2000 && only.batch == 32 && only.lr == 2e-4f && only.seed == 99 && only.epoch == 3 &&
          only.step == 6);
    /* an optimizer of another size: refused, and left alone */
    attn_adam small;
    CHECK_STATUS(attn_adam_alloc(&small, 10, 0.01f), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_load(&l, NULL, 1, &small, NULL, NULL, path, err, sizeof err), ATTN_ERR_SHAPE);
    CHECK(small.t == 0 && l.params == NULL);
    attn_adam_free(&small);
    /* errors name the file */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/none.safetensors", g_dir);
    CHECK_STATUS(attn_imdb_model_load(&l, NULL, 1, NULL, NULL, NULL, missing, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, missing) != NULL);
    CHECK_STATUS(attn_imdb_model_read_run(missing, &only, err, sizeof err), ATTN_ERR_IO);
    char golden[512];
    snprintf(golden, sizeof golden, "%s/imdb_model.safetensors", ATTN_GOLDEN_DIR);
    CHECK_STATUS(attn_imdb_model_load(&l, NULL, 1, NULL, NULL, NULL, golden, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(strstr(err, golden) != NULL && strstr(err, "attn-imdb-1") != NULL);
    /* the same file without dense.bias: refused before the model is allocated, and the error names it */
    attn_st_file sf;
    CHECK_STATUS(attn_st_read(&sf, path, 0, err, sizeof err), ATTN_OK);
    attn_st_tensor keep[8];
    int nk = 0;
    for (int i = 0; i < sf.n && nk < 8; i++)
        if (strcmp(sf.tensors[i].name, "dense.bias") != 0) keep[nk++] = sf.tensors[i];
    char cut[512];
    snprintf(cut, sizeof cut, "%s/cut.safetensors", g_dir);
    CHECK_STATUS(attn_st_write(cut, keep, nk, (const char *const *)sf.meta_keys, (const char *const *)sf.meta_values,
                               sf.n_meta, err, sizeof err), ATTN_OK);
    attn_st_free(&sf);
    CHECK_STATUS(attn_imdb_model_load(&l, NULL, 1, NULL, NULL, NULL, cut, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(strstr(err, "dense.bias") != NULL && l.params == NULL);
    /* the same file with a NaN in dense.bias: a diverged or corrupt checkpoint, refused before allocating */
    CHECK_STATUS(attn_st_read(&sf, path, 0, err, sizeof err), ATTN_OK);
    nk = 0;
    float nanbias[2] = {NAN, 0.0f};
    for (int i = 0; i < sf.n && nk < 8; i++) {
        keep[nk] = sf.tensors[i];
        if (strcmp(sf.tensors[i].name, "dense.bias") == 0) keep[nk].data = nanbias;
        nk++;
    }
    CHECK_STATUS(attn_st_write(cut, keep, nk, (const char *const *)sf.meta_keys, (const char *const *)sf.meta_values,
                               sf.n_meta, err, sizeof err), ATTN_OK);
    attn_st_free(&sf);
    CHECK_STATUS(attn_imdb_model_load(&l, NULL, 1, NULL, NULL, NULL, cut, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(strstr(err, "finite") != NULL && strstr(err, "dense.bias") != NULL && l.params == NULL);
    printf("  refused: %s\n", err);
    /* a model the format cannot describe, a vocabulary of another size */
    attn_imdb_model o;
    attn_imdb_config c3 = c;
    c3.C = 3;
    CHECK_STATUS(attn_imdb_model_init(&o, NULL, &c3, 1, 1), ATTN_OK);
    attn_adam oa;
    CHECK_STATUS(attn_adam_alloc(&oa, o.n_params, 0.01f), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_save(&o, &oa, &v, &run, path, err, sizeof err), ATTN_ERR_ARG);
    attn_adam_free(&oa);
    attn_imdb_model_free(&o);
    c3 = c;
    c3.V = V + 1;
    CHECK_STATUS(attn_imdb_model_init(&o, NULL, &c3, 1, 1), ATTN_OK);
    CHECK_STATUS(attn_adam_alloc(&oa, o.n_params, 0.01f), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_save(&o, &oa, &v, &run, path, err, sizeof err), ATTN_ERR_SHAPE);
    attn_adam_free(&oa);
    attn_imdb_model_free(&o);
    /* the failed saves left the earlier file whole */
    CHECK_STATUS(attn_imdb_model_load(&l, NULL, 1, NULL, NULL, NULL, path, err, sizeof err), ATTN_OK);
    attn_imdb_model_free(&l);
    attn_adam_free(&a);
    attn_adam_free(&la);
    attn_imdb_vocab_free(&v);
    attn_imdb_model_free(&m);
}

/* ---- a short training run on the real data ---------------------------------------------------------- */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_short_training(void) {
    char found[1024], err[1024] = "";
    if (attn_imdb_locate(ATTN_DATA_DIR, found, sizeof found, err, sizeof err) != ATTN_OK) {
        printf("  short training run skipped: %s\n", err);
        return;
    }
    attn_imdb_options o;
    attn_imdb_options_default(&o);
    o.limit = 2000;
    attn_imdb_data d;
    double t0 = now_s();
#if defined(__SANITIZE_ADDRESS__)
    /* under the sanitizers the run takes about a minute: read the real archive (the reader's check),
     * skip the training */
    CHECK_STATUS(attn_imdb_load(&d, found, &o, err, sizeof err), ATTN_OK);
    CHECK(d.train.n == 2000 && d.test.n == 2000);
    printf("  real archive read in %.1f s; short training run skipped under the sanitizers\n", now_s() - t0);
    attn_imdb_free(&d);
    return;
#endif
    /* one thread: without OMP_WAIT_POLICY=passive, spinning OpenMP threads and the BLAS threads fight
     * over the cores (see programs/attn/runtime.c); one thread is faster here than two fighting */
    attn_set_num_threads(1);
    attn_blas_set_num_threads(1);
    CHECK_STATUS(attn_imdb_load(&d, found, &o, err, sizeof err), ATTN_OK);
    if (d.train.n != 2000) { attn_imdb_free(&d); return; }
    double t1 = now_s();
    attn_imdb_config c;
    attn_imdb_config_default(&c);
    attn_imdb_model m;
    const int batch = 32;
    CHECK_STATUS(attn_imdb_model_init(&m, NULL, &c, 250, 1), ATTN_OK);
    attn_adam a;
    CHECK_STATUS(attn_adam_alloc(&a, m.n_params, 2e-3f), ATTN_OK);
    a.eps = 1e-7f;
    a.decay = 1e-5f;
    a.keras_eps = 1;
    int32_t perm[2000], bids[32 * 64], blab[32];
    for (int i = 0; i < 2000; i++) perm[i] = i;
    attn_rng r;
    attn_rng_seed(&r, 1);
    attn_rng_shuffle(&r, perm, 2000);
    double loss = 0;
    int correct = 0;
    attn_imdb_model_zero_grad(&m, 1);
    for (int s = 0; s * batch < 2000; s++) {
        int B = 2000 - s * batch < batch ? 2000 - s * batch : batch;
        for (int b = 0; b < B; b++) {
            memcpy(bids + b * 64, d.train.ids + (size_t)perm[s * batch + b] * 64, 64 * sizeof(int32_t));
            blab[b] = d.train.labels[perm[s * batch + b]];
        }
        if (attn_imdb_model_forward(&m, bids, blab, B, 1, 1000 + s, NULL, &loss, &correct) != ATTN_OK) break;
        attn_imdb_model_zero_grad(&m, 0);
        if (attn_imdb_model_backward(&m, bids, blab, B, 1, 1000 + s) != ATTN_OK) break;
        if (attn_adam_step(&a, m.params, m.grads) != ATTN_OK) break;
    }
    double vl = 0;
    int vc = 0;
    for (int i = 0; i < d.test.n; i += 250)
        CHECK_STATUS(attn_imdb_model_forward(&m, d.test.ids + (size_t)i * 64, d.test.labels + i, 250, 0, 0, NULL, &vl, &vc),
                     ATTN_OK);
    double acc = (double)vc / d.test.n;
    printf("  short run (--limit 2000, 1 epoch, lr 2e-3): train loss %.4f acc %.4f, val_loss %.4f val_acc %.4f "
           "(load %.1f s, train+eval %.1f s); needs val_acc > 0.65\n", loss / 2000, (double)correct / 2000,
           vl / d.test.n, acc, t1 - t0, now_s() - t1);
    CHECK(acc > 0.65);
    attn_adam_free(&a);
    attn_imdb_model_free(&m);
    attn_imdb_free(&d);
}

/* A few training steps of the real shape (B=32, T=64, D=128, smaller vocabulary), where the
 * self-attention layer cuts the batch into one part per thread: parameters, Adam state and
 * probabilities must be bitwise identical with 1, 2 and 3 threads. */
static void run_steps(int nth, float *params_out, float *m_out, float *probs_out, size_t np) {
    attn_set_num_threads(nth);
    attn_blas_set_num_threads(nth);
    attn_imdb_config c;
    attn_imdb_config_default(&c);
    c.V = 600;
    attn_imdb_model m;
    CHECK_STATUS(attn_imdb_model_init(&m, NULL, &c, 32, 5), ATTN_OK);
    CHECK(m.n_params == np);
    attn_adam a;
    CHECK_STATUS(attn_adam_alloc(&a, m.n_params, 2e-3f), ATTN_OK);
    a.eps = 1e-7f;
    a.decay = 1e-5f;
    a.keras_eps = 1;
    int32_t ids[32 * 64], labels[32];
    attn_rng r;
    attn_rng_seed(&r, 77);
    attn_imdb_model_zero_grad(&m, 1);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 32 * 64; i++) ids[i] = (int32_t)(attn_rng_u32(&r) % 600);
        for (int b = 0; b < 32; b++) labels[b] = (int32_t)(attn_rng_u32(&r) & 1);
        double ls = 0;
        int ok = 0;
        CHECK_STATUS(attn_imdb_model_forward(&m, ids, labels, 32, 1, 100 + step, NULL, &ls, &ok), ATTN_OK);
        attn_imdb_model_zero_grad(&m, 0);
        CHECK_STATUS(attn_imdb_model_backward(&m, ids, labels, 32, 1, 100 + step), ATTN_OK);
        CHECK_STATUS(attn_adam_step(&a, m.params, m.grads), ATTN_OK);
    }
    memcpy(params_out, m.params, sizeof(float) * np);
    memcpy(m_out, a.m, sizeof(float) * np);
    memcpy(probs_out, m.probs, sizeof(float) * 64);
    attn_adam_free(&a);
    attn_imdb_model_free(&m);
}

/* 1 when this BLAS rounds every element of a product the same whether it computes all rows (or
 * columns) at once or in the pieces the model cuts them into (rows at multiples of 16, columns in
 * blocks of 32). OpenBLAS's Prescott and SkylakeX kernels do; its Haswell kernels do not. */
static int blas_split_invariant(void) {
    const int M = 640, K = 384, N = 128;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *c1 = calloc((size_t)M * N, sizeof(float)), *c2 = calloc((size_t)M * N, sizeof(float));
    int same = a && b && c1 && c2;
    if (same) {
        attn_rng r;
        attn_rng_seed(&r, 4);
        attn_rng_fill_uniform(&r, a, (size_t)M * K, -1.0f, 1.0f);
        attn_rng_fill_uniform(&r, b, (size_t)K * N, -1.0f, 1.0f);
        attn_blas_set_num_threads(1);
        /* rows: (M,K)·(K,N) at once and in two pieces cut at row 208 (16·13) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c1, N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 208, N, K, 1.0f, a, K, b, N, 0.0f, c2, N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M - 208, N, K, 1.0f, a + 208 * K, K, b, N, 0.0f,
                    c2 + 208 * N, N);
        same = memcmp(c1, c2, sizeof(float) * M * N) == 0;
        /* columns: (M,K)ᵀ·(M,N) at once and in blocks of 32 (c1's rows as the (M,N) operand) */
        float *bm = c1, *d1 = malloc(sizeof(float) * K * N), *d2 = malloc(sizeof(float) * K * N);
        if (d1 && d2) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, M, 1.0f, a, K, bm, N, 0.0f, d1, N);
            for (int c0 = 0; c0 < N; c0 += 32)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, 32, M, 1.0f, a, K, bm + c0, N, 0.0f, d2 + c0, N);
            same = same && memcmp(d1, d2, sizeof(float) * K * N) == 0;
        } else {
            same = 0;
        }
        free(d1);
        free(d2);
    }
    free(a); free(b); free(c1); free(c2);
    return same;
}

static void test_threads_bitwise(void) {
    const size_t np = 600 * 128 + 3 * 128 * 128 + 2 * 128 + 2;
    float *p[4], *mm[4], pr[4][64];
    const int nths[4] = {1, 2, 3, 2};
    for (int k = 0; k < 4; k++) {
        p[k] = malloc(sizeof(float) * np);
        mm[k] = malloc(sizeof(float) * np);
        CHECK(p[k] && mm[k]);
        if (!p[k] || !mm[k]) return;
        run_steps(nths[k], p[k], mm[k], pr[k], np);
    }
    /* the same thread count twice: the same bits, always */
    CHECK(memcmp(p[1], p[3], sizeof(float) * np) == 0 && memcmp(mm[1], mm[3], sizeof(float) * np) == 0);
    const int inv = blas_split_invariant();
    if (inv) {
        for (int k = 1; k < 3; k++) {
            CHECK(memcmp(p[0], p[k], sizeof(float) * np) == 0);
            CHECK(memcmp(mm[0], mm[k], sizeof(float) * np) == 0);
            CHECK(memcmp(pr[0], pr[k], sizeof pr[0]) == 0);
        }
    } else {
        for (int k = 1; k < 3; k++) tu_close_f32("params, 1 thread vs more", p[k], p[0], np, 1e-5, 1e-3);
    }
    /* the steps did change the parameters (the comparisons above are not vacuous) */
    attn_imdb_config c;
    attn_imdb_config_default(&c);
    c.V = 600;
    attn_imdb_model m0;
    CHECK_STATUS(attn_imdb_model_init(&m0, NULL, &c, 32, 5), ATTN_OK);
    CHECK(memcmp(m0.params, p[0], sizeof(float) * np) != 0);
    attn_imdb_model_free(&m0);
    for (int k = 0; k < 4; k++) {
        free(p[k]);
        free(mm[k]);
    }
    attn_set_num_threads(0);
    attn_blas_set_num_threads(attn_get_num_threads());
    printf("  3 training steps at B=32, T=64, D=128: %s with 1, 2 and 3 threads (BLAS %s)\n",
           inv ? "bitwise identical" : "reproducible per thread count, close across counts (this BLAS rounds a "
           "product cut in pieces differently)", attn_blas_core_name());
}

/* The self-attention layer with the batch cut into parts (no mask) against one call over the whole
 * batch (an empty mask takes that path): the same bits, forward and backward, with 2 threads. */
static void test_selfattn_split(void) {
    attn_set_num_threads(2);
    const int B = 7, T = 40, D = 96;     /* B odd: parts of unequal size */
    attn_selfattn l;
    float *slab = calloc(2 * attn_selfattn_n_params(D, D), sizeof(float));   /* parameters, gradients */
    CHECK(slab != NULL);
    if (!slab) return;
    CHECK_STATUS(attn_selfattn_bind(&l, D, D, slab, slab + attn_selfattn_n_params(D, D)), ATTN_OK);
    attn_rng ri;
    attn_rng_seed(&ri, 3);
    CHECK_STATUS(attn_selfattn_init_weights(&l, &ri), ATTN_OK);
    l.scale = 0.125f;
    size_t cb = 0;
    CHECK_STATUS(attn_selfattn_cache_bytes(NULL, &l, B, T, &cb), ATTN_OK);
    const size_t nx = (size_t)B * T * D, nw = 3 * (size_t)D * D;
    void *cache = malloc(cb);
    float *x = malloc(sizeof(float) * nx), *dout = malloc(sizeof(float) * nx);
    float *o1 = malloc(sizeof(float) * nx), *o2 = malloc(sizeof(float) * nx);
    float *dx1 = calloc(nx, sizeof(float)), *dx2 = calloc(nx, sizeof(float));
    float *dw1 = malloc(sizeof(float) * nw);
    CHECK(cache && x && dout && o1 && o2 && dx1 && dx2 && dw1);
    if (!cache || !x || !dout || !o1 || !o2 || !dx1 || !dx2 || !dw1) return;
    attn_rng r;
    attn_rng_seed(&r, 9);
    attn_rng_fill_uniform(&r, x, nx, -1.0f, 1.0f);
    attn_rng_fill_uniform(&r, dout, nx, -1.0f, 1.0f);
    attn_mask none;
    memset(&none, 0, sizeof none);
    memset(l.dw, 0, sizeof(float) * nw);
    CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb, o1, NULL, x, B, T, NULL), ATTN_OK);
    CHECK_STATUS(attn_selfattn_backward(NULL, &l, cache, cb, dx1, dout, x, B, T, NULL), ATTN_OK);
    memcpy(dw1, l.dw, sizeof(float) * nw);
    memset(l.dw, 0, sizeof(float) * nw);
    CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb, o2, NULL, x, B, T, &none), ATTN_OK);
    CHECK_STATUS(attn_selfattn_backward(NULL, &l, cache, cb, dx2, dout, x, B, T, &none), ATTN_OK);
    CHECK(memcmp(o1, o2, sizeof(float) * nx) == 0);
    CHECK(memcmp(dx1, dx2, sizeof(float) * nx) == 0);
    CHECK(memcmp(dw1, l.dw, sizeof(float) * nw) == 0);
    double s = 0;
    for (size_t i = 0; i < nw; i++) s += fabs(dw1[i]);
    CHECK(s > 0);
    /* a cache sized for 1 thread is too small for the 2-part plan: a clear error, not an overrun */
    attn_set_num_threads(1);
    size_t cb1 = 0;
    CHECK_STATUS(attn_selfattn_cache_bytes(NULL, &l, B, T, &cb1), ATTN_OK);
    attn_set_num_threads(2);
    if (cb1 < cb) CHECK_STATUS(attn_selfattn_forward(NULL, &l, cache, cb1, o1, NULL, x, B, T, NULL), ATTN_ERR_WORKSPACE);
    free(slab);
    free(cache); free(x); free(dout); free(o1); free(o2); free(dx1); free(dx2); free(dw1);
    attn_set_num_threads(0);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}


/* The model on the reference path and on the fast path: its attention (the only kernel with per-path code
 * it runs) goes through the model's context, so a reference context puts the whole model on the oracle;
 * forward (with dropout) and backward agree to rounding. */
static void test_model_paths(void) {
    printf("the model on the reference path and on the fast path\n");
    attn_ctx ref;
    CHECK_STATUS(attn_ctx_init(&ref, ATTN_ISA_REF, 1), ATTN_OK);
    attn_imdb_config c = {60, 16, 9, 2, 0.125f, 0.5f, 0, 0, 0, 0, ATTN_DTYPE_F32};
    attn_imdb_model a, b;
    CHECK_STATUS(attn_imdb_model_init(&a, NULL, &c, 5, 3), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_init(&b, &ref, &c, 5, 3), ATTN_OK);
    CHECK(b.ctx.isa == ATTN_ISA_REF && a.ctx.isa != ATTN_ISA_REF);
    int32_t ids[5 * 9], labels[5] = {0, 1, 1, 0, 1};
    for (int i = 0; i < 5 * 9; i++) ids[i] = i % 9 < 2 ? 0 : (i * 7 + 3) % 60;    /* left padding */
    double la = 0, lb = 0;
    int ca = 0, cb = 0;
    CHECK_STATUS(attn_imdb_model_forward(&a, ids, labels, 5, 1, 11, NULL, &la, &ca), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_forward(&b, ids, labels, 5, 1, 11, NULL, &lb, &cb), ATTN_OK);
    printf("  paths: %s and %s\n", attn_isa_name(a.ctx.isa), attn_isa_name(b.ctx.isa));
    float fa = (float)la, fb = (float)lb;
    tu_close_f32("loss, fast vs reference path (dropout 0.5)", &fa, &fb, 1, 1e-6, 1e-5);
    tu_close_f32("probabilities, fast vs reference path", a.probs, b.probs, 10, 1e-6, 1e-5);
    attn_imdb_model_zero_grad(&a, 1);
    attn_imdb_model_zero_grad(&b, 1);
    CHECK_STATUS(attn_imdb_model_backward(&a, ids, labels, 5, 1, 11), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_backward(&b, ids, labels, 5, 1, 11), ATTN_OK);
    tu_close_f32("every gradient, fast vs reference path", a.grads, b.grads, a.n_params, 1e-6, 1e-3);
    attn_imdb_model_free(&a);
    attn_imdb_model_free(&b);
}

/* --mask-padding: the same model with the padding keys masked. No weight on a padding key, the two
 * paths and the evaluation path agree, and the checkpoint keeps the setting. */
static void test_mask_padding(void) {
    printf("the model with the padding masked\n");
    attn_ctx ref;
    CHECK_STATUS(attn_ctx_init(&ref, ATTN_ISA_REF, 1), ATTN_OK);
    attn_imdb_config c = {60, 16, 9, 2, 0.125f, 0.5f, 1, 0, 0, 0, ATTN_DTYPE_F32};
    attn_imdb_model a, b, u;
    CHECK_STATUS(attn_imdb_model_init(&a, NULL, &c, 5, 3), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_init(&b, &ref, &c, 5, 3), ATTN_OK);
    c.mask_padding = 0;
    CHECK_STATUS(attn_imdb_model_init(&u, NULL, &c, 5, 3), ATTN_OK);
    int32_t ids[5 * 9], labels[5] = {0, 1, 1, 0, 1};
    for (int i = 0; i < 5 * 9; i++) ids[i] = i % 9 < 1 + (i / 9) ? 0 : 3 + (i * 7 + 3) % 57;   /* 1..5 pads */
    float w[5 * 9 * 9], wu[5 * 9 * 9];
    double la = 0, lb = 0;
    int ca = 0, cb = 0;
    CHECK_STATUS(attn_imdb_model_forward(&a, ids, labels, 5, 0, 0, w, NULL, NULL), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_forward(&u, ids, labels, 5, 0, 0, wu, NULL, NULL), ATTN_OK);
    double on_pad = 0, on_pad_u = 0, rows = 0;
    for (int r = 0; r < 5; r++)
        for (int t = 0; t < 9; t++) {
            double sum = 0;
            for (int s = 0; s < 9; s++) {
                const size_t k = ((size_t)r * 9 + t) * 9 + s;
                sum += w[k];
                if (ids[r * 9 + s] == 0) on_pad += w[k], on_pad_u += wu[k];
            }
            rows = fmax(rows, fabs(sum - 1.0));
        }
    printf("  weight on padding keys: %.3g masked, %.3g unmasked; rows' sums off by %.2g\n", on_pad, on_pad_u, rows);
    CHECK(on_pad == 0.0 && on_pad_u > 0.5 && rows < 1e-5);
    float p_fwd[10];
    memcpy(p_fwd, a.probs, sizeof p_fwd);
    CHECK_STATUS(attn_imdb_model_eval_prepare(&a), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_eval_forward(&a, ids, labels, 5, NULL, NULL), ATTN_OK);
    tu_close_f32("probabilities, evaluation path vs forward (masked)", a.probs, p_fwd, 10, 1e-6, 1e-5);
    CHECK_STATUS(attn_imdb_model_forward(&a, ids, labels, 5, 1, 11, NULL, &la, &ca), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_forward(&b, ids, labels, 5, 1, 11, NULL, &lb, &cb), ATTN_OK);
    tu_close_f32("probabilities, fast vs reference path (masked)", a.probs, b.probs, 10, 1e-6, 1e-5);
    attn_imdb_model_zero_grad(&a, 1);
    attn_imdb_model_zero_grad(&b, 1);
    CHECK_STATUS(attn_imdb_model_backward(&a, ids, labels, 5, 1, 11), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_backward(&b, ids, labels, 5, 1, 11), ATTN_OK);
    tu_close_f32("every gradient, fast vs reference path (masked)", a.grads, b.grads, a.n_params, 1e-6, 1e-3);
    attn_imdb_model_free(&a);
    attn_imdb_model_free(&b);
    attn_imdb_model_free(&u);
}

/* --maxlen/--window: a sliding window in the model's attention. No weight outside the window, other
 * probabilities than dense, the fast, reference and evaluation paths agree, and the checkpoint keeps the
 * window and maxlen (read back by load and by read_config). */
static void test_window(void) {
    printf("the model with a sliding window\n");
    enum { V = 60, T = 12, B = 3 };
    attn_ctx ref;
    CHECK_STATUS(attn_ctx_init(&ref, ATTN_ISA_REF, 1), ATTN_OK);
    attn_imdb_config c;
    attn_imdb_config_default(&c);
    c.V = V;
    c.D = 16;
    c.T = T;
    c.window = 1;
    c.window_left = 2;
    c.window_right = 1;
    attn_imdb_model a, b, u;
    CHECK_STATUS(attn_imdb_model_init(&a, NULL, &c, B, 5), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_init(&b, &ref, &c, B, 5), ATTN_OK);
    c.window_left = -1;
    CHECK_STATUS(attn_imdb_model_init(&u, NULL, &c, B, 5), ATTN_ERR_ARG);
    c.window = 0;
    CHECK_STATUS(attn_imdb_model_init(&u, NULL, &c, B, 5), ATTN_OK);     /* dense: window sides ignored */
    int32_t ids[B * T], labels[B] = {1, 0, 1};
    for (int i = 0; i < B * T; i++) ids[i] = 3 + (i * 11 + 5) % (V - 3);
    float w[B * T * T], wu[B * T * T];
    CHECK_STATUS(attn_imdb_model_forward(&a, ids, labels, B, 0, 0, w, NULL, NULL), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_forward(&u, ids, labels, B, 0, 0, wu, NULL, NULL), ATTN_OK);
    double outside = 0, outside_u = 0, rows = 0, dp = 0;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) {
            double sum = 0;
            for (int s = 0; s < T; s++) {
                const size_t k = ((size_t)r * T + t) * T + s;
                sum += w[k];
                if (s < t - 2 || s > t + 1) outside += w[k], outside_u += wu[k];
            }
            rows = fmax(rows, fabs(sum - 1.0));
        }
    for (int i = 0; i < B * 2; i++) dp = fmax(dp, fabs((double)a.probs[i] - u.probs[i]));
    printf("  weight outside the window: %.3g windowed, %.3g dense; rows' sums off by %.2g; probabilities "
           "differ from dense by up to %.3g\n", outside, outside_u, rows, dp);
    CHECK(outside == 0.0 && outside_u > 1.0 && rows < 1e-5 && dp > 1e-6);
    float p_fwd[B * 2];
    memcpy(p_fwd, a.probs, sizeof p_fwd);
    CHECK_STATUS(attn_imdb_model_eval_prepare(&a), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_eval_forward(&a, ids, labels, B, NULL, NULL), ATTN_OK);
    tu_close_f32("probabilities, evaluation path vs forward (window)", a.probs, p_fwd, B * 2, 1e-6, 1e-5);
    double la = 0, lb = 0;
    int ca = 0, cb = 0;
    CHECK_STATUS(attn_imdb_model_forward(&a, ids, labels, B, 1, 7, NULL, &la, &ca), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_forward(&b, ids, labels, B, 1, 7, NULL, &lb, &cb), ATTN_OK);
    tu_close_f32("probabilities, fast vs reference path (window)", a.probs, b.probs, B * 2, 1e-6, 1e-5);
    attn_imdb_model_zero_grad(&a, 1);
    attn_imdb_model_zero_grad(&b, 1);
    CHECK_STATUS(attn_imdb_model_backward(&a, ids, labels, B, 1, 7), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_backward(&b, ids, labels, B, 1, 7), ATTN_OK);
    tu_close_f32("every gradient, fast vs reference path (window)", a.grads, b.grads, a.n_params, 1e-6, 1e-3);
    /* the checkpoint: window and maxlen round-trip; a dense model stays dense */
    char blob[1024];
    size_t n = 0;
    for (int i = 0; i < V; i++)
        n += (size_t)snprintf(blob + n, sizeof blob - n, i < ATTN_IMDB_FIRST_WORD ? "<r%d>" : "w%d", i) + 1;
    attn_imdb_vocab v;
    CHECK_STATUS(attn_imdb_vocab_from_blob(&v, blob, n, V), ATTN_OK);
    attn_adam ad;
    CHECK_STATUS(attn_adam_alloc(&ad, a.n_params, 0.01f), ATTN_OK);
    attn_imdb_run_info run = {1, 0, 4, 1, 2e-4f, 5, 0};
    char path[512], path_u[512], err[512] = "";
    snprintf(path, sizeof path, "%s/window.safetensors", g_dir);
    snprintf(path_u, sizeof path_u, "%s/dense.safetensors", g_dir);
    CHECK_STATUS(attn_imdb_model_save(&a, &ad, &v, &run, path, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn_imdb_model_save(&u, &ad, &v, &run, path_u, err, sizeof err), ATTN_OK);
    attn_imdb_model l;
    attn_imdb_config rc;
    CHECK_STATUS(attn_imdb_model_load(&l, NULL, B, NULL, NULL, NULL, path, err, sizeof err), ATTN_OK);
    CHECK(l.cfg.T == T && l.cfg.window == 1 && l.cfg.window_left == 2 && l.cfg.window_right == 1);
    float wl[B * T * T];
    CHECK_STATUS(attn_imdb_model_forward(&l, ids, labels, B, 0, 0, wl, NULL, NULL), ATTN_OK);
    CHECK(memcmp(wl, w, sizeof w) == 0);      /* the loaded model attends through the same window */
    attn_imdb_model_free(&l);
    CHECK_STATUS(attn_imdb_model_read_config(path, &rc, err, sizeof err), ATTN_OK);
    CHECK(rc.T == T && rc.V == V && rc.window == 1 && rc.window_left == 2 && rc.window_right == 1);
    CHECK_STATUS(attn_imdb_model_read_config(path_u, &rc, err, sizeof err), ATTN_OK);
    CHECK(rc.T == T && rc.window == 0);
    attn_adam_free(&ad);
    attn_imdb_vocab_free(&v);
    attn_imdb_model_free(&a);
    attn_imdb_model_free(&b);
    attn_imdb_model_free(&u);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/attn_test_imdb_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_tokenizer();
    test_loader();
    test_broken_inputs();
    test_empty_folders();
    test_review_size();
    test_special_files();
    test_model_golden();
    test_model_paths();
    test_mask_padding();
    test_window();
    test_checkpoint();
    test_threads_bitwise();
    test_selfattn_split();
    test_short_training();
    if (nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) fprintf(stderr, "note: could not remove %s\n", g_dir);
    return tu_finish("test_imdb");
}
