/*
 * test_idx.c — the IDX reader and the Fashion-MNIST loader on fixtures the test writes: plain and gzip
 * files, images and labels read back byte for byte; every refusal (bad magic, element type, dimension
 * count, a zero dimension, a product over the limit, truncation of the header and of the elements, bytes
 * after the end, a cut gzip stream, a folder instead of a file) with its message naming path and offset; a
 * Fashion-MNIST folder (limit, labels, class names), a missing folder and labels that do not match. With
 * the real data installed: 60,000 + 10,000 images of 28x28.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "attn/data.h"
#include "testutil.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[64];

static const char *fixture(const char *name) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return path;
}

static void write_bytes(const char *name, const void *data, size_t n, int gz) {
    const char *p = fixture(name);
    if (gz) {
        gzFile f = gzopen(p, "wb6");
        CHECK(f && gzwrite(f, data, (unsigned)n) == (int)n && gzclose(f) == Z_OK);
    } else {
        FILE *f = fopen(p, "wb");
        CHECK(f && fwrite(data, 1, n, f) == n && fclose(f) == 0);
    }
}

/* An IDX of unsigned bytes: header for ndim dims, then count elements i*7+seed. Returns its size. */
static size_t make_idx(uint8_t *b, int ndim, const uint32_t *dims, int seed) {
    b[0] = b[1] = 0; b[2] = 8; b[3] = (uint8_t)ndim;
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        b[4 + 4 * i] = (uint8_t)(dims[i] >> 24); b[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        b[6 + 4 * i] = (uint8_t)(dims[i] >> 8);  b[7 + 4 * i] = (uint8_t)dims[i];
        count *= dims[i];
    }
    size_t h = 4 + 4 * (size_t)ndim;
    for (size_t i = 0; i < count; i++) b[h + i] = (uint8_t)(i * 7 + (size_t)seed);
    return h + count;
}

/* Reads name and expects a refusal st whose message holds every one of the parts. */
static void expect_refusal(const char *name, attn_status want, const char *part1, const char *part2) {
    attn_idx x;
    char err[512];
    attn_status st = attn_idx_read(&x, fixture(name), 4096, err, sizeof err);
    CHECK_STATUS(st, want);
    CHECK(x.data == NULL && x.size == 0);
    int ok = strstr(err, fixture(name)) && (!part1 || strstr(err, part1)) && (!part2 || strstr(err, part2));
    CHECK(ok);
    printf("  %-14s %s\n", name, err);
    if (!ok) fprintf(stderr, "  message lacks the path, '%s' or '%s'\n", part1 ? part1 : "", part2 ? part2 : "");
}

static void test_read(void) {
    uint8_t b[512];
    const uint32_t d3[3] = {2, 3, 4};
    size_t n = make_idx(b, 3, d3, 5);
    write_bytes("plain", b, n, 0);
    write_bytes("packed.gz", b, n, 1);
    for (int gz = 0; gz < 2; gz++) {
        attn_idx x;
        char err[256];
        CHECK_STATUS(attn_idx_read(&x, fixture(gz ? "packed.gz" : "plain"), 4096, err, sizeof err), ATTN_OK);
        CHECK(x.ndim == 3 && x.dims[0] == 2 && x.dims[1] == 3 && x.dims[2] == 4 && x.size == 24);
        CHECK(x.data && memcmp(x.data, b + 16, 24) == 0);
        attn_idx_free(&x);
        CHECK(x.data == NULL);
    }

    /* the refusals */
    uint8_t c[512];
    memcpy(c, b, n); c[1] = 1;
    write_bytes("magic", c, n, 0);
    expect_refusal("magic", ATTN_ERR_FORMAT, "offset 0", "magic");
    memcpy(c, b, n); c[2] = 0x0d;
    write_bytes("type", c, n, 0);
    expect_refusal("type", ATTN_ERR_FORMAT, "offset 2", "0x08");
    memcpy(c, b, n); c[3] = 9;
    write_bytes("ndim", c, n, 0);
    expect_refusal("ndim", ATTN_ERR_FORMAT, "offset 3", "dimensions");
    const uint32_t dz[3] = {2, 0, 4};
    write_bytes("zero", c, make_idx(c, 3, dz, 0), 0);
    expect_refusal("zero", ATTN_ERR_FORMAT, "offset 8", "at least 1");
    const uint32_t dbig[2] = {100000, 100000};
    make_idx(c, 2, (const uint32_t[]){1, 1}, 0);
    c[4] = (uint8_t)(dbig[0] >> 24); c[5] = (uint8_t)(dbig[0] >> 16); c[6] = (uint8_t)(dbig[0] >> 8); c[7] = (uint8_t)dbig[0];
    c[8] = (uint8_t)(dbig[1] >> 24); c[9] = (uint8_t)(dbig[1] >> 16); c[10] = (uint8_t)(dbig[1] >> 8); c[11] = (uint8_t)dbig[1];
    write_bytes("huge", c, 13, 0);
    expect_refusal("huge", ATTN_ERR_FORMAT, "offset 4", "limit");
    write_bytes("short_header", b, 9, 0);
    expect_refusal("short_header", ATTN_ERR_FORMAT, "offset 9", "truncated");
    write_bytes("short_data", b, n - 3, 0);
    expect_refusal("short_data", ATTN_ERR_FORMAT, "offset 37", "expected 24 bytes");
    write_bytes("short_data.gz", b, n - 3, 1);
    expect_refusal("short_data.gz", ATTN_ERR_FORMAT, "offset 37", "truncated");
    memcpy(c, b, n); c[n] = 1; c[n + 1] = 2;
    write_bytes("trailing", c, n + 2, 0);
    expect_refusal("trailing", ATTN_ERR_FORMAT, "offset 40", "end of the data");
    write_bytes("empty", b, 0, 0);
    expect_refusal("empty", ATTN_ERR_FORMAT, "offset 0", "truncated");

    /* a gzip stream cut in the middle, and one with a corrupt byte */
    write_bytes("whole.gz", b, n, 1);
    FILE *f = fopen(fixture("whole.gz"), "rb");
    uint8_t z[1024];
    size_t zn = f ? fread(z, 1, sizeof z, f) : 0;
    if (f) fclose(f);
    CHECK(zn > 20);
    write_bytes("cut.gz", z, zn - 10, 0);
    expect_refusal("cut.gz", ATTN_ERR_FORMAT, "truncated gzip", "compressed offset");
    z[12] ^= 0xff;
    write_bytes("corrupt.gz", z, zn, 0);
    attn_idx x;
    char err[512];
    attn_status st = attn_idx_read(&x, fixture("corrupt.gz"), 4096, err, sizeof err);
    CHECK(st == ATTN_ERR_FORMAT && strstr(err, fixture("corrupt.gz")));
    printf("  %-14s %s\n", "corrupt.gz", err);

    /* a folder, a missing file, bad arguments */
    CHECK(mkdir(fixture("afolder"), 0755) == 0);
    expect_refusal("afolder", ATTN_ERR_IO, "a folder", NULL);
    expect_refusal("missing", ATTN_ERR_IO, "cannot open", NULL);
    CHECK_STATUS(attn_idx_read(NULL, "x", 1, NULL, 0), ATTN_ERR_NULL);
    CHECK_STATUS(attn_idx_read(&x, fixture("plain"), 0, NULL, 0), ATTN_ERR_SIZE);
}

/* A Fashion-MNIST folder of n_train / n_test images of 4x5, labels i % 10 (bad_label: one of 10). */
static void make_fmnist(const char *sub, int n_train, int n_test, int bad_label) {
    char name[128];
    snprintf(name, sizeof name, "%s", sub);
    CHECK(mkdir(fixture(name), 0755) == 0);
    static uint8_t b[1 << 16];
    const char *stems[2] = {"train", "t10k"};
    int counts[2] = {n_train, n_test};
    for (int s = 0; s < 2; s++) {
        const uint32_t di[3] = {(uint32_t)counts[s], 4, 5};
        snprintf(name, sizeof name, "%s/%s-images-idx3-ubyte.gz", sub, stems[s]);
        write_bytes(name, b, make_idx(b, 3, di, s), 1);
        const uint32_t dl[1] = {(uint32_t)counts[s]};
        size_t n = make_idx(b, 1, dl, 0);
        for (int i = 0; i < counts[s]; i++) b[8 + i] = (uint8_t)(i % 10);
        if (bad_label && s == 1) b[8 + 2] = 10;
        snprintf(name, sizeof name, "%s/%s-labels-idx1-ubyte%s", sub, stems[s], s ? "" : ".gz");
        write_bytes(name, b, n, s == 0);
    }
}

static void test_fmnist(void) {
    make_fmnist("fm", 30, 12, 0);
    attn_fmnist d;
    char err[1024];
    CHECK_STATUS(attn_fmnist_load(&d, fixture("fm"), 0, err, sizeof err), ATTN_OK);
    CHECK(d.train.n == 30 && d.test.n == 12 && d.train.rows == 4 && d.train.cols == 5);
    CHECK(d.train.labels[13] == 3 && d.test.labels[11] == 1);
    CHECK(d.train.images[20] == (uint8_t)(20 * 7) && d.test.images[3] == (uint8_t)(3 * 7 + 1));
    attn_fmnist_free(&d);
    CHECK_STATUS(attn_fmnist_load(&d, fixture("fm"), 7, err, sizeof err), ATTN_OK);
    CHECK(d.train.n == 7 && d.test.n == 7);
    attn_fmnist_free(&d);
    CHECK(strcmp(attn_fmnist_class_name(7), "sneaker") == 0 && strcmp(attn_fmnist_class_name(10), "?") == 0);

    CHECK_STATUS(attn_fmnist_load(&d, fixture("nowhere"), 0, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, fixture("nowhere")) && strstr(err, "train-images-idx3-ubyte.gz"));
    printf("  missing: %s\n", err);
    make_fmnist("badlabel", 10, 10, 1);
    CHECK_STATUS(attn_fmnist_load(&d, fixture("badlabel"), 0, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(strstr(err, "t10k-labels-idx1-ubyte") && strstr(err, "offset 10") && strstr(err, "0..9"));
    printf("  bad label: %s\n", err);
    /* labels that do not count the images */
    CHECK(mkdir(fixture("mismatch"), 0755) == 0);
    static uint8_t b[4096];
    const uint32_t di[3] = {6, 4, 5}, dl[1] = {5};
    write_bytes("mismatch/train-images-idx3-ubyte", b, make_idx(b, 3, di, 0), 0);
    write_bytes("mismatch/train-labels-idx1-ubyte", b, make_idx(b, 1, dl, 0), 0);
    CHECK_STATUS(attn_fmnist_load(&d, fixture("mismatch"), 0, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(strstr(err, "expected 6 labels"));
    printf("  mismatch: %s\n", err);
}

static void test_real_data(void) {
    attn_fmnist d;
    char err[1024];
    if (attn_fmnist_load(&d, ATTN_FMNIST_DEFAULT_DIR, 0, err, sizeof err) != ATTN_OK) {
        printf("  (no Fashion-MNIST at %s: skipped: %s)\n", ATTN_FMNIST_DEFAULT_DIR, err);
        return;
    }
    CHECK(d.train.n == 60000 && d.test.n == 10000 && d.train.rows == 28 && d.train.cols == 28);
    int per_class[10] = {0};
    for (int i = 0; i < d.test.n; i++) per_class[d.test.labels[i]]++;
    for (int c = 0; c < 10; c++) CHECK(per_class[c] == 1000);
    printf("  real data: %d + %d images of %dx%d\n", d.train.n, d.test.n, d.train.rows, d.train.cols);
    attn_fmnist_free(&d);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/attn_idx_XXXXXX");
    if (!mkdtemp(g_dir)) { fprintf(stderr, "mkdtemp failed\n"); return 1; }
    test_read();
    test_fmnist();
    test_real_data();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return tu_finish("test_idx");
}
