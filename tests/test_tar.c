/*
 * test_tar.c — the .tar.gz reader (src/data/tar.c) on archives this test builds itself: a good one
 * (files, a directory, sizes at and around the 512-byte block, a GNU long name, two gzip members), then
 * broken variants: truncated gzip, corrupt gzip data, a bad header checksum, a missing end of archive,
 * a file that is not gzip, a missing file; pax records that are malformed, negative, or whose length
 * would step backwards (each must be an error, not a loop or a read past the buffer); header checksums
 * over bytes >= 128 (unsigned and signed sums); the reader over bytes in memory.
 */
#define _POSIX_C_SOURCE 200809L
#include "attn.h"
#include "data/tar.h"
#include "testutil.h"

#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[256];

static void path_in(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", g_dir, name); }

/* ---- a raw tar in memory, so the tests can break it before compressing ---------------------------- */
typedef struct {
    unsigned char *p;
    size_t n, cap;
} rawtar;

static void raw_put(rawtar *t, const void *d, size_t n) {
    if (t->n + n > t->cap) {
        t->cap = (t->n + n) * 2;
        t->p = realloc(t->p, t->cap);
    }
    memcpy(t->p + t->n, d, n);
    t->n += n;
}

static void raw_entry(rawtar *t, const char *name, char type, const void *data, size_t n) {
    unsigned char h[512];
    memset(h, 0, sizeof h);
    memcpy(h, name, strlen(name) < 100 ? strlen(name) : 100);
    snprintf((char *)h + 100, 8, "%07o", 0644u);
    snprintf((char *)h + 108, 8, "%07o", 0u);
    snprintf((char *)h + 116, 8, "%07o", 0u);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)n);
    snprintf((char *)h + 136, 12, "%011o", 0u);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar  ", 8);                /* GNU magic "ustar  \0" */
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    raw_put(t, h, 512);
    raw_put(t, data, n);
    static const unsigned char zero[512];
    raw_put(t, zero, (512 - n % 512) % 512);
}

static void raw_end(rawtar *t) {
    static const unsigned char zero[1024];
    raw_put(t, zero, 1024);
}

static void write_gz(const char *path, const void *d, size_t n) {
    gzFile g = gzopen(path, "wb");
    gzwrite(g, d, (unsigned)n);
    gzclose(g);
}

static unsigned char *read_all(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void write_all(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(d, 1, n, f);
    fclose(f);
}

/* Reads every entry of an archive; returns the status of the first failure, the entry count in *count
 * and the error text in err. */
static attn_status read_archive(const char *path, int *count, char *err, size_t es) {
    attn__tar *t;
    *count = 0;
    attn_status st = attn__tar_open(&t, path, err, es);
    if (st != ATTN_OK) return st;
    for (;;) {
        attn__tar_entry e;
        int done;
        st = attn__tar_next(t, &e, &done, err, es);
        if (st != ATTN_OK || done) break;
        if (e.size) {
            char *b = malloc(e.size);
            st = attn__tar_read(t, b, e.size, err, es);
            free(b);
            if (st != ATTN_OK) break;
        }
        (*count)++;
    }
    attn__tar_close(t);
    return st;
}

static void test_good_archive(void) {
    char path[512];
    path_in(path, sizeof path, "good.tar.gz");
    static char big[1500], exact[512];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof exact; i++) exact[i] = (char)('0' + i % 10);
    const char *longname = "dir/a-name-that-is-longer-than-one-hundred-bytes-so-that-the-ustar-name-field-cannot-hold-it-whole.txt";

    /* written by the library's writer */
    attn__tar_writer *w;
    CHECK_STATUS(attn__tar_writer_open(&w, path), ATTN_OK);
    CHECK_STATUS(attn__tar_writer_add(w, "dir/", '5', NULL, 0), ATTN_OK);
    CHECK_STATUS(attn__tar_writer_add(w, "dir/big.txt", '0', big, sizeof big), ATTN_OK);
    CHECK_STATUS(attn__tar_writer_add(w, "dir/empty.txt", '0', NULL, 0), ATTN_OK);
    CHECK_STATUS(attn__tar_writer_add(w, "dir/exact.txt", '0', exact, sizeof exact), ATTN_OK);
    CHECK_STATUS(attn__tar_writer_add(w, "dir/skipped.txt", '0', big, 700), ATTN_OK);
    CHECK_STATUS(attn__tar_writer_add(w, "dir/last.txt", '0', "end", 3), ATTN_OK);
    CHECK_STATUS(attn__tar_writer_close(w), ATTN_OK);

    attn__tar *t;
    char err[512] = "";
    CHECK_STATUS(attn__tar_open(&t, path, err, sizeof err), ATTN_OK);
    attn__tar_entry e;
    int done = 0;
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, "dir/") == 0 && e.type == '5' && e.size == 0);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, "dir/big.txt") == 0 && e.type == '0' && e.size == sizeof big);
    char buf[2000];
    CHECK_STATUS(attn__tar_read(t, buf, 1000, err, sizeof err), ATTN_OK);      /* in two parts */
    CHECK_STATUS(attn__tar_read(t, buf + 1000, 500, err, sizeof err), ATTN_OK);
    CHECK(memcmp(buf, big, sizeof big) == 0);
    CHECK_STATUS(attn__tar_read(t, buf, 1, err, sizeof err), ATTN_ERR_ARG);     /* past its end */
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, "dir/empty.txt") == 0 && e.size == 0);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, "dir/exact.txt") == 0 && e.size == 512);
    CHECK_STATUS(attn__tar_read(t, buf, 512, err, sizeof err), ATTN_OK);
    CHECK(memcmp(buf, exact, 512) == 0);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, "dir/skipped.txt") == 0 && e.size == 700);   /* not read: skipped */
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, "dir/last.txt") == 0 && e.size == 3);
    CHECK_STATUS(attn__tar_read(t, buf, 3, err, sizeof err), ATTN_OK);
    CHECK(memcmp(buf, "end", 3) == 0);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(done == 1);
    attn__tar_close(t);

    /* GNU long name, and the archive split over two gzip members */
    rawtar r = {0};
    raw_entry(&r, "././@LongLink", 'L', longname, strlen(longname) + 1);
    raw_entry(&r, "truncated-name", '0', "long", 4);
    size_t half = r.n;
    raw_entry(&r, "second.txt", '0', "two", 3);
    raw_end(&r);
    path_in(path, sizeof path, "members.tar.gz");
    gzFile g = gzopen(path, "wb");
    gzwrite(g, r.p, (unsigned)half);
    gzclose(g);
    g = gzopen(path, "ab");
    gzwrite(g, r.p + half, (unsigned)(r.n - half));
    gzclose(g);
    CHECK_STATUS(attn__tar_open(&t, path, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, longname) == 0 && e.size == 4);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, "second.txt") == 0 && e.size == 3);
    CHECK_STATUS(attn__tar_read(t, buf, 3, err, sizeof err), ATTN_OK);
    CHECK(memcmp(buf, "two", 3) == 0);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(done == 1);
    attn__tar_close(t);
    free(r.p);
}

static void test_broken(void) {
    char good[512], path[512], err[512];
    int count;
    static char text[20000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = (char)(' ' + (i * 7919) % 90);
    rawtar r = {0};
    raw_entry(&r, "a.txt", '0', text, sizeof text);
    raw_entry(&r, "b.txt", '0', "bee", 3);
    raw_end(&r);
    path_in(good, sizeof good, "ok.tar.gz");
    write_gz(good, r.p, r.n);
    CHECK_STATUS(read_archive(good, &count, err, sizeof err), ATTN_OK);
    CHECK(count == 2);

    /* truncated gzip: the first half of the compressed bytes */
    size_t n = 0;
    unsigned char *gz = read_all(good, &n);
    path_in(path, sizeof path, "truncated.tar.gz");
    write_all(path, gz, n / 2);
    err[0] = '\0';
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  truncated gzip: %s\n", err);
    CHECK(strstr(err, "truncated") != NULL && strstr(err, path) != NULL);

    /* the trailer cut off (all data there, CRC and size missing) */
    write_all(path, gz, n - 4);
    err[0] = '\0';
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_FORMAT);

    /* corrupt compressed data: flip bytes in the middle */
    unsigned char *bad = malloc(n);
    memcpy(bad, gz, n);
    for (size_t i = n / 3; i < n / 3 + 8; i++) bad[i] ^= 0x5a;
    path_in(path, sizeof path, "corrupt.tar.gz");
    write_all(path, bad, n);
    err[0] = '\0';
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  corrupt gzip: %s\n", err);
    CHECK(strstr(err, path) != NULL);
    free(bad);
    free(gz);

    /* bad header checksum: change a byte of the second header's name */
    unsigned char *tarb = malloc(r.n);
    memcpy(tarb, r.p, r.n);
    size_t second = 512 + ((sizeof text + 511) / 512) * 512;
    tarb[second] = 'c';
    path_in(path, sizeof path, "checksum.tar.gz");
    write_gz(path, tarb, r.n);
    err[0] = '\0';
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  bad checksum: %s\n", err);
    CHECK(strstr(err, "checksum") != NULL && count == 1);

    /* a size field that is not octal (checksum recomputed so only the size is wrong) */
    memcpy(tarb, r.p, r.n);
    memcpy(tarb + 124, "0000000009x\0", 12);
    memset(tarb + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += tarb[i];
    snprintf((char *)tarb + 148, 8, "%06o", sum);
    tarb[155] = ' ';
    write_gz(path, tarb, r.n);
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_FORMAT);

    /* no end-of-archive blocks */
    path_in(path, sizeof path, "noend.tar.gz");
    write_gz(path, r.p, r.n - 1024);
    err[0] = '\0';
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  no end blocks: %s\n", err);
    CHECK(strstr(err, "end-of-archive") != NULL && count == 2);

    /* content cut inside an entry (a valid gzip of a cut tar) */
    path_in(path, sizeof path, "cut.tar.gz");
    write_gz(path, r.p, 512 + 3000);
    err[0] = '\0';
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  cut entry: %s\n", err);
    CHECK(strstr(err, "a.txt") != NULL);

    /* not gzip at all */
    path_in(path, sizeof path, "plain.tar.gz");
    write_all(path, r.p, r.n);
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_FORMAT);
    /* an empty file */
    write_all(path, "", 0);
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_FORMAT);
    /* no file */
    path_in(path, sizeof path, "missing.tar.gz");
    err[0] = '\0';
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, "missing.tar.gz") != NULL);
    free(tarb);
    free(r.p);
}

/* A pax record "<len> <body>\n" with its length computed (the length counts its own digits). */
static size_t pax_record(char *out, size_t cap, const char *body) {
    size_t b = strlen(body) + 2, len = b + 1;
    while ((size_t)snprintf(NULL, 0, "%zu", len) + b != len) len++;
    return (size_t)snprintf(out, cap, "%zu %s\n", len, body);
}

/* Reading must end within a few seconds: a loop is a failure, not a hang of the test run. */
static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_tar: the reader did not finish within 10 s (a loop)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
}

/* An archive whose first entry is a pax header with these records, then file.txt. */
static attn_status read_with_pax(const char *recs, size_t n, int *count, char *name, char *err, size_t es) {
    char path[512];
    rawtar r = {0};
    raw_entry(&r, "PaxHeaders/file.txt", 'x', recs, n);
    raw_entry(&r, "file.txt", '0', "data", 4);
    raw_end(&r);
    path_in(path, sizeof path, "pax.tar.gz");
    write_gz(path, r.p, r.n);
    free(r.p);
    attn__tar *t;
    attn__tar_entry e;
    int done = 0;
    *count = 0;
    name[0] = '\0';
    err[0] = '\0';
    attn_status st = attn__tar_open(&t, path, err, es);
    if (st != ATTN_OK) return st;
    while ((st = attn__tar_next(t, &e, &done, err, es)) == ATTN_OK && !done) {
        if (*count == 0) snprintf(name, 1024, "%s", e.name);
        (*count)++;
    }
    attn__tar_close(t);
    return st;
}

static void test_pax(void) {
    char recs[4096], name[1024], err[512];
    int count;
    signal(SIGALRM, on_alarm);
    alarm(10);

    /* well-formed: mtime and path records; the path is taken */
    size_t n = pax_record(recs, sizeof recs, "mtime=1700000000.5");
    n += pax_record(recs + n, sizeof recs - n, "path=a/long/pax/name.txt");
    CHECK_STATUS(read_with_pax(recs, n, &count, name, err, sizeof err), ATTN_OK);
    CHECK(count == 1 && strcmp(name, "a/long/pax/name.txt") == 0);

    /* each malformed record is an error naming the path and an offset, read after nothing else */
    static const struct { const char *recs; const char *what; } bad[] = {
        {"1 path=x\n", "a length shorter than its own prefix"},
        {"6 a=b\n-6 x\n", "a negative length that steps back to the first record"},
        {"-1 path=x\n", "a negative length"},
        {"18446744073709551615 path=x\n", "a length that wraps around"},
        {"19 path=x\n", "a length past the end of the header"},
        {"+9 path=x\n", "a signed length"},
        {" 9 path=x\n", "a length after a space"},
        {"9 path=xy\r", "a record without its newline"},
        {"6 abc\n", "a record without '='"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(read_with_pax(bad[i].recs, strlen(bad[i].recs), &count, name, err, sizeof err), ATTN_ERR_FORMAT);
        printf("  pax, %s: %s\n", bad[i].what, err);
        CHECK(count == 0 && strstr(err, "pax.tar.gz: offset 5") && strstr(err, "expected a pax record") != NULL);
    }
    alarm(0);
}

/* Header checksums over bytes >= 128: the unsigned sum (POSIX) and the historic signed sum are both
 * accepted, and a sum that is neither is refused; the checksum field itself counts as eight spaces. */
static void test_checksum_sums(void) {
    char path[512], err[512];
    static const char name[] = "caf\xc3\xa9-\xff\x80.txt";
    rawtar r = {0};
    raw_entry(&r, name, '0', "x", 1);
    raw_end(&r);
    unsigned long usum = 0;
    long ssum = 0;
    for (int i = 0; i < 512; i++) {
        unsigned char c = i >= 148 && i < 156 ? ' ' : r.p[i];
        usum += c;
        ssum += (signed char)c;
    }
    const long sums[3] = {(long)usum, ssum, (long)usum + 1};
    const attn_status want[3] = {ATTN_OK, ATTN_OK, ATTN_ERR_FORMAT};
    for (int k = 0; k < 3; k++) {
        snprintf((char *)r.p + 148, 8, "%06lo", (unsigned long)sums[k] & 0777777ul);
        r.p[155] = ' ';
        path_in(path, sizeof path, "sums.tar.gz");
        write_gz(path, r.p, r.n);
        int count;
        err[0] = '\0';
        CHECK_STATUS(read_archive(path, &count, err, sizeof err), want[k]);
        CHECK(want[k] != ATTN_OK || count == 1);
        CHECK(want[k] == ATTN_OK || strstr(err, "checksum") != NULL);
    }
    CHECK(ssum != (long)usum);
    free(r.p);
}

/* The reader over bytes in memory gives the same entries as over the file. */
static void test_memory(void) {
    char path[512], err[512];
    rawtar r = {0};
    raw_entry(&r, "a.txt", '0', "alpha", 5);
    raw_entry(&r, "b/", '5', "", 0);
    raw_end(&r);
    path_in(path, sizeof path, "mem.tar.gz");
    write_gz(path, r.p, r.n);
    size_t n;
    unsigned char *gz = read_all(path, &n);
    attn__tar *t;
    attn__tar_entry e;
    int done;
    char buf[8];
    CHECK_STATUS(attn__tar_open_mem(&t, gz, n, "in-memory", err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, "a.txt") == 0 && e.size == 5);
    CHECK_STATUS(attn__tar_read(t, buf, 5, err, sizeof err), ATTN_OK);
    CHECK(memcmp(buf, "alpha", 5) == 0);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(!done && strcmp(e.name, "b/") == 0 && e.type == '5');
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_OK);
    CHECK(done == 1);
    attn__tar_close(t);
    /* cut short in memory: an error naming the given name */
    CHECK_STATUS(attn__tar_open_mem(&t, gz, n / 2, "in-memory", err, sizeof err), ATTN_OK);
    attn_status st;
    while ((st = attn__tar_next(t, &e, &done, err, sizeof err)) == ATTN_OK && !done) {}
    CHECK(st == ATTN_ERR_FORMAT && strstr(err, "in-memory") != NULL);
    attn__tar_close(t);
    /* nothing at all */
    CHECK_STATUS(attn__tar_open_mem(&t, gz, 0, "in-memory", err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn__tar_next(t, &e, &done, err, sizeof err), ATTN_ERR_FORMAT);
    attn__tar_close(t);
    free(gz);
    free(r.p);
}

/* A FIFO where the archive should be: refused at once, not waited on. */
static void test_fifo(void) {
    char path[512], err[512];
    int count;
    path_in(path, sizeof path, "fifo.tar.gz");
    CHECK(mkfifo(path, 0600) == 0);
    signal(SIGALRM, on_alarm);
    alarm(10);
    err[0] = '\0';
    CHECK_STATUS(read_archive(path, &count, err, sizeof err), ATTN_ERR_IO);
    printf("  a FIFO: %s\n", err);
    CHECK(strstr(err, "fifo.tar.gz") != NULL && strstr(err, "FIFO") != NULL);
    alarm(0);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/attn_test_tar_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_good_archive();
    test_broken();
    test_pax();
    test_checksum_sums();
    test_memory();
    test_fifo();
    /* clean up the temporary files */
    static const char *const names[] = {"good.tar.gz", "members.tar.gz", "ok.tar.gz", "truncated.tar.gz",
                                        "corrupt.tar.gz", "checksum.tar.gz", "noend.tar.gz", "cut.tar.gz",
                                        "plain.tar.gz", "pax.tar.gz", "sums.tar.gz", "mem.tar.gz", "fifo.tar.gz"};
    char p[512];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        path_in(p, sizeof p, names[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return tu_finish("test_tar");
}
