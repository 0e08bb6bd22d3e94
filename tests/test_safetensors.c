/*
 * test_safetensors.c — the safetensors reader and writer: a round trip of every dtype (bytes, shapes,
 * names with escapes, metadata, alignment), then files the test corrupts itself in a temporary directory
 * (truncations, bad header lengths, bad JSON, unknown dtypes, shape/size mismatches, offsets out of range,
 * overlapping or leaving holes, oversize, missing files), each of which must fail with the right status and
 * an error naming the path and an offset; and writes that fail, which must leave the previous file intact.
 */
#define _XOPEN_SOURCE 700

#include "attn.h"
#include "testutil.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static char g_dir[256];

static void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) { free(b); b = NULL; }
    fclose(fp);
    *size = (size_t)n;
    return b;
}

static void spit(const char *path, const void *data, size_t n) {
    remove(path);             /* truncating a just-written file makes ext4 flush it: slow */
    FILE *fp = fopen(path, "wb");
    if (!fp) { fprintf(stderr, "cannot write %s\n", path); exit(1); }
    if (n) fwrite(data, 1, n, fp);
    fclose(fp);
}

/* A file from a header text (length prefixed as given) and data bytes. */
static void make_file(const char *path, uint64_t hlen, const char *header, const void *data, size_t ndata) {
    size_t h = strlen(header);
    unsigned char *b = malloc(8 + h + ndata + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, header, h);
    if (ndata) memcpy(b + 8 + h, data, ndata);
    spit(path, b, 8 + h + ndata);
    free(b);
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Reads path expecting status want; checks the error names the path and an offset and f is left empty. */
static void expect_read_fails(const char *label, const char *path, size_t max_bytes, attn_status want,
                              const char *must_contain) {
    attn_st_file f;
    char err[512];
    memset(&f, 0x5a, sizeof f);
    attn_status st = attn_st_read(&f, path, max_bytes, err, sizeof err);
    tu_checks++;
    if (st != want) {
        tu_failures++;
        fprintf(stderr, "  %s: status %d (%s), expected %d (%s); err: %s\n", label, (int)st, attn_status_string(st),
                (int)want, attn_status_string(want), err);
    }
    CHECK(strstr(err, path) == err);
    CHECK(strstr(err, ": offset ") != NULL);
    CHECK(strstr(err, "expected") != NULL);
    if (must_contain && !strstr(err, must_contain)) {
        tu_failures++;
        fprintf(stderr, "  %s: err lacks \"%s\": %s\n", label, must_contain, err);
    }
    CHECK(f.n == 0 && f.tensors == NULL && f.buffer == NULL && f.n_meta == 0 && f.meta_keys == NULL);
    printf("  %-34s -> %s\n", label, err);
    attn_st_free(&f);
}

/* A header that must fail as FORMAT; data of ndata bytes follows it. */
static void expect_header_fails(const char *label, const char *header, size_t ndata, const char *must_contain) {
    char path[300];
    path_in(path, sizeof path, "bad.safetensors");
    unsigned char data[64] = {0};
    make_file(path, strlen(header), header, data, ndata);
    expect_read_fails(label, path, 0, ATTN_ERR_FORMAT, must_contain);
}

static int aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

/* ---------------------------------------------------------------------------------------------------
 * Round trip.
 */
static void test_round_trip(void) {
    printf("round trip\n");
    float a[6] = {1.5f, -2.25f, 3e-20f, 1e30f, -0.0f, 7.0f};          /* (2,3) F32 */
    double b[4] = {3.141592653589793, -1e-300, 2.5, 1e300};            /* (4)   F64 */
    int32_t c[4] = {0, -1, 2147483647, -2147483647 - 1};               /* (2,2) I32 */
    int64_t d[1] = {-1234567890123456789LL};                           /* (1)   I64 */
    uint8_t e[5] = {0, 1, 127, 128, 255};                              /* (5)   U8  */
    uint8_t g[3] = {1, 0, 1};                                          /* (3)   BOOL */
    float s = 0.125f;                                                  /* ()    F32 scalar */
    attn_st_tensor t[9] = {
        {"e_u8", ATTN_DTYPE_U8, 1, {5}, e, sizeof e},
        {"a", ATTN_DTYPE_F32, 2, {2, 3}, a, sizeof a},
        {"b \"quoted\" \\ back", ATTN_DTYPE_F64, 1, {4}, b, sizeof b},
        {"c/int32", ATTN_DTYPE_I32, 2, {2, 2}, c, sizeof c},
        {"d\xc3\xa9t\xe2\x82\xac", ATTN_DTYPE_I64, 1, {1}, d, sizeof d},  /* "dét€" */
        {"g_bool", ATTN_DTYPE_BOOL, 1, {3}, g, sizeof g},
        {"scalar", ATTN_DTYPE_F32, 0, {0}, &s, sizeof s},
        {"empty", ATTN_DTYPE_F32, 2, {0, 4}, NULL, 0},
        {"ctrl\n\t\x01", ATTN_DTYPE_U8, 1, {1}, e, 1},
    };
    const char *mk[3] = {"format", "note", "multi\nline"};
    const char *mv[3] = {"pt", "tab\there \"q\" \\", "\xf0\x9f\x98\x80 emoji"};
    char path[300], err[512];
    path_in(path, sizeof path, "rt.safetensors");
    CHECK_STATUS(attn_st_write(path, t, 9, mk, mv, 3, err, sizeof err), ATTN_OK);
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!file_exists(tmp));

    size_t size = 0;
    unsigned char *raw = slurp(path, &size);
    CHECK(raw != NULL && size > 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];
    CHECK(hlen % 8 == 0);                                   /* padded with spaces like PyTorch's */
    CHECK(hlen + 8 <= size && raw[8] == '{');
    free(raw);

    attn_st_file f;
    CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
    CHECK(f.n == 9);
    for (int i = 0; i < f.n && i < 9; i++) {
        const attn_st_tensor *r = &f.tensors[i];
        int same = strcmp(r->name, t[i].name) == 0 && r->dtype == t[i].dtype && r->ndim == t[i].ndim &&
                   r->nbytes == t[i].nbytes && (r->nbytes == 0 || memcmp(r->data, t[i].data, r->nbytes) == 0);
        for (int k = 0; k < r->ndim; k++) same = same && r->shape[k] == t[i].shape[k];
        if (!same) fprintf(stderr, "  tensor %d (%s) differs after the round trip\n", i, t[i].name);
        CHECK(same);
        size_t al = r->dtype == ATTN_DTYPE_F64 || r->dtype == ATTN_DTYPE_I64 ? 8 :
                    r->dtype == ATTN_DTYPE_F32 || r->dtype == ATTN_DTYPE_I32 ? 4 : 1;
        CHECK(r->nbytes == 0 || aligned(r->data, al));
    }
    CHECK(f.n_meta == 3);
    for (int i = 0; i < 3; i++) {
        const char *v = attn_st_meta(&f, mk[i]);
        CHECK(v && strcmp(v, mv[i]) == 0);
    }
    CHECK(attn_st_meta(&f, "absent") == NULL);
    CHECK(attn_st_find(&f, "absent") == NULL);
    CHECK(attn_st_find(&f, "c/int32") == &f.tensors[3]);

    const float *pa = NULL;
    int64_t sh23[2] = {2, 3}, sh32[2] = {3, 2}, sh4[1] = {4};
    CHECK_STATUS(attn_st_get_f32(&f, "a", 2, sh23, &pa, err, sizeof err), ATTN_OK);
    CHECK(pa && memcmp(pa, a, sizeof a) == 0);
    CHECK_STATUS(attn_st_get_f32(&f, "scalar", 0, NULL, &pa, err, sizeof err), ATTN_OK);
    CHECK(pa && *pa == 0.125f);
    CHECK_STATUS(attn_st_get_f32(&f, "a", 2, sh32, &pa, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(pa == NULL && strstr(err, "[3, 2]") && strstr(err, "[2, 3]"));
    printf("  get_f32 wrong shape -> %s\n", err);
    CHECK_STATUS(attn_st_get_f32(&f, "a", 1, sh4, &pa, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK_STATUS(attn_st_get_f32(&f, "b \"quoted\" \\ back", 1, sh4, &pa, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(strstr(err, "F32") && strstr(err, "F64"));
    printf("  get_f32 wrong dtype -> %s\n", err);
    CHECK_STATUS(attn_st_get_f32(&f, "nope", 1, sh4, &pa, err, sizeof err), ATTN_ERR_FORMAT);
    CHECK(strstr(err, "nope") != NULL);
    printf("  get_f32 missing     -> %s\n", err);
    attn_st_free(&f);
    attn_st_free(&f);                                        /* a freed file frees again harmlessly */
    CHECK(f.n == 0 && f.buffer == NULL);

    /* Overwriting replaces the contents; no temporary is left behind. */
    attn_st_tensor one = {"only", ATTN_DTYPE_F64, 1, {4}, b, sizeof b};
    CHECK_STATUS(attn_st_write(path, &one, 1, NULL, NULL, 0, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
    CHECK(f.n == 1 && f.n_meta == 0 && strcmp(f.tensors[0].name, "only") == 0);
    CHECK(!file_exists(tmp));
    attn_st_free(&f);

    /* No tensors at all. */
    path_in(path, sizeof path, "empty.safetensors");
    CHECK_STATUS(attn_st_write(path, NULL, 0, NULL, NULL, 0, err, sizeof err), ATTN_OK);
    CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
    CHECK(f.n == 0 && f.n_meta == 0);
    attn_st_free(&f);
}

/* Files other writers may produce: odd spacing, escapes, an unpadded header, misaligned tensors. */
static void test_foreign_files(void) {
    printf("foreign but valid files\n");
    char path[300], err[512];
    attn_st_file f;
    path_in(path, sizeof path, "foreign.safetensors");

    /* U8 (3 bytes) before an F32: the F32 starts at data offset 3, misaligned in the file; the header length
     * (odd) misaligns the data area too. The reader must hand out an aligned, correct F32. */
    unsigned char data[3 + 8];
    float fv[2] = {1.25f, -3.5f};
    data[0] = 7; data[1] = 8; data[2] = 9;
    memcpy(data + 3, fv, sizeof fv);
    const char *h = " {\n\t\"u\" : {\"dtype\":\"U8\", \"shape\":[3], \"data_offsets\":[0,3]},\r\n"
                    "\"\\u0066\\ud83d\\ude00\\/\":{\"shape\":[ 2 ],\"data_offsets\":[3, 11],\"dtype\":\"F32\"} ,"
                    "\"__metadata__\":{\"k\\u00e9\":\"v\\n\"} } ";
    CHECK(strlen(h) % 8 != 0);
    make_file(path, strlen(h), h, data, sizeof data);
    CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
    if (f.n == 2) {
        CHECK(strcmp(f.tensors[0].name, "u") == 0 && memcmp(f.tensors[0].data, data, 3) == 0);
        CHECK(strcmp(f.tensors[1].name, "f\xf0\x9f\x98\x80/") == 0);
        const float *p = NULL;
        int64_t sh[1] = {2};
        CHECK_STATUS(attn_st_get_f32(&f, "f\xf0\x9f\x98\x80/", 1, sh, &p, err, sizeof err), ATTN_OK);
        CHECK(p && aligned(p, 4) && p[0] == 1.25f && p[1] == -3.5f);
        const char *v = attn_st_meta(&f, "k\xc3\xa9");
        CHECK(v && strcmp(v, "v\n") == 0);
    } else {
        CHECK(f.n == 2);
        fprintf(stderr, "  %s\n", err);
    }
    attn_st_free(&f);

    /* Minimal: "{}" and no data; zero-size tensors sharing an offset. */
    make_file(path, 2, "{}", NULL, 0);
    CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
    CHECK(f.n == 0);
    attn_st_free(&f);
    const char *z = "{\"a\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,0]},"
                    "\"b\":{\"dtype\":\"I64\",\"shape\":[3,0,2],\"data_offsets\":[0,0]}}";
    make_file(path, strlen(z), z, NULL, 0);
    CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
    CHECK(f.n == 2 && f.tensors[1].ndim == 3 && f.tensors[1].nbytes == 0);
    attn_st_free(&f);
}

/* ---------------------------------------------------------------------------------------------------
 * Corrupt files.
 */
static void test_corrupt(void) {
    printf("corrupt files\n");
    char good[300], path[300], err[512];
    path_in(good, sizeof good, "good.safetensors");
    path_in(path, sizeof path, "bad.safetensors");
    float a[6] = {1, 2, 3, 4, 5, 6};
    double b[3] = {7, 8, 9};
    attn_st_tensor t[2] = {{"a", ATTN_DTYPE_F32, 2, {2, 3}, a, sizeof a}, {"b", ATTN_DTYPE_F64, 1, {3}, b, sizeof b}};
    const char *mk[1] = {"k"}, *mv[1] = {"v"};
    CHECK_STATUS(attn_st_write(good, t, 2, mk, mv, 1, err, sizeof err), ATTN_OK);
    size_t size = 0;
    unsigned char *raw = slurp(good, &size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | raw[i];

    /* Truncated at several points: inside the length, inside the header, at its end, inside the data. */
    size_t cuts[] = {0, 3, 7, 8, 9, 8 + (size_t)hlen / 2, 8 + (size_t)hlen - 1, 8 + (size_t)hlen, size - 20, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char label[64];
        snprintf(label, sizeof label, "truncated at %zu of %zu", cuts[i], size);
        spit(path, raw, cuts[i]);
        expect_read_fails(label, path, 0, ATTN_ERR_FORMAT, NULL);
    }

    /* Header length larger than the file, and absurdly large. */
    unsigned char *mod = malloc(size);
    memcpy(mod, raw, size);
    uint64_t big = size;
    for (int i = 0; i < 8; i++) mod[i] = (unsigned char)(big >> (8 * i));
    spit(path, mod, size);
    expect_read_fails("header length = file size", path, 0, ATTN_ERR_FORMAT, "header length");
    for (int i = 0; i < 8; i++) mod[i] = 0xff;
    spit(path, mod, size);
    expect_read_fails("header length 2^64-1", path, 0, ATTN_ERR_FORMAT, "header length");
    /* A header length too short cuts the JSON. */
    memcpy(mod, raw, size);
    mod[0] = (unsigned char)(hlen - 8);
    spit(path, mod, size);
    expect_read_fails("header length too short", path, 0, ATTN_ERR_FORMAT, NULL);
    /* One corrupted byte in the header. */
    memcpy(mod, raw, size);
    mod[8] = '[';
    spit(path, mod, size);
    expect_read_fails("'[' instead of '{'", path, 0, ATTN_ERR_FORMAT, "offset 8:");
    free(mod);
    free(raw);

    /* Oversize: refused above max_bytes, accepted at exactly max_bytes. */
    expect_read_fails("larger than max_bytes", good, size - 1, ATTN_ERR_FORMAT, "at most");
    attn_st_file f;
    CHECK_STATUS(attn_st_read(&f, good, size, err, sizeof err), ATTN_OK);
    attn_st_free(&f);

    /* Missing file, a directory. */
    char missing[300];
    path_in(missing, sizeof missing, "does-not-exist.safetensors");
    expect_read_fails("missing file", missing, 0, ATTN_ERR_IO, NULL);
    expect_read_fails("a directory", g_dir, 0, ATTN_ERR_IO, NULL);

    /* Bad JSON. */
#define T1(dt, shape, offs) "{\"a\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}}"
    {   /* the control: this one is valid, and each variant below breaks one thing */
        const char *ok = T1("F32", "[1]", "[0,4]");
        unsigned char four[4] = {0};
        make_file(path, strlen(ok), ok, four, 4);
        CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_OK);
        attn_st_free(&f);
    }
    expect_header_fails("trailing comma", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "a string");
    expect_header_fails("missing brace", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, NULL);
    expect_header_fails("single quotes", "{'a':{}}", 0, "a string");
    expect_header_fails("float in shape", T1("F32", "[1.0]", "[0,4]"), 4, "integer");
    expect_header_fails("exponent in shape", T1("F32", "[1e0]", "[0,4]"), 4, "integer");
    expect_header_fails("negative dim", T1("F32", "[-1]", "[0,4]"), 4, "nonnegative");
    expect_header_fails("leading zero", T1("F32", "[01]", "[0,4]"), 4, "leading zeros");
    expect_header_fails("integer overflow", T1("F32", "[99999999999999999999]", "[0,4]"), 4, "2^63");
    expect_header_fails("shape overflow", T1("F32", "[4294967296,4294967296,4294967296]", "[0,4]"), 4, "64 bits");
    expect_header_fails("nine dims", T1("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), 4, "at most 8");
    expect_header_fails("true as a value", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":true}}", 4, "\"x\"");
    expect_header_fails("null header", "null", 0, "'{'");
    expect_header_fails("array header", "[]", 0, "'{'");
    expect_header_fails("garbage after the header", "{} x", 0, "whitespace");
    expect_header_fails("bad escape", "{\"a\\q\":{}}", 0, "escape");
    expect_header_fails("lone high surrogate", "{\"a\\ud800\":{}}", 0, "surrogate");
    expect_header_fails("lone low surrogate", "{\"a\\udc00\":{}}", 0, "surrogate");
    expect_header_fails("short \\u", "{\"a\\u12\":{}}", 0, "hex");
    expect_header_fails("\\u0000", "{\"a\\u0000\":{}}", 0, "NUL");
    expect_header_fails("raw control byte", "{\"a\tb\":{}}", 0, "control");
    expect_header_fails("invalid UTF-8", "{\"a\xff\":{}}", 0, "UTF-8");
    expect_header_fails("overlong UTF-8", "{\"a\xc0\xaf\":{}}", 0, "UTF-8");
    expect_header_fails("unterminated string", "{\"abc", 0, "closing");
    expect_header_fails("empty tensor entry", "{\"a\":{}}", 0, "dtype");
    expect_header_fails("empty name", "{\"\":{}}", 0, "nonempty");
    expect_header_fails("missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing");
    expect_header_fails("duplicate dtype", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "single");
    expect_header_fails("duplicate tensor", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                        "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "unique");
    expect_header_fails("three offsets", T1("F32", "[1]", "[0,4,4]"), 4, "at most 2");
    expect_header_fails("one offset", T1("F32", "[1]", "[4]"), 4, "two integers");
    expect_header_fails("dtype not a string", "{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "a string");
    expect_header_fails("metadata not strings", "{\"__metadata__\":{\"k\":1}}", 0, "string value");
    expect_header_fails("two metadata", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "single");
    expect_header_fails("duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "unique");

    /* Dtypes, shapes against sizes, offsets. */
    expect_header_fails("unknown dtype F16", T1("F16", "[2]", "[0,4]"), 4, "\"F16\"");
    expect_header_fails("lowercase dtype", T1("f32", "[1]", "[0,4]"), 4, "dtype");
    expect_header_fails("shape/size mismatch", T1("F32", "[2]", "[0,4]"), 4, "8 bytes");
    expect_header_fails("end before begin", T1("U8", "[0]", "[4,0]"), 4, "begin <= end");
    expect_header_fails("offsets past the data", T1("F32", "[2]", "[0,8]"), 4, "inside the 4-byte data area");
    expect_header_fails("overlapping", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlapping");
    expect_header_fails("hole between tensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "hole");
    expect_header_fails("data left over", T1("F32", "[1]", "[0,4]"), 8, "fill the data area");
#undef T1
}

/* ---------------------------------------------------------------------------------------------------
 * Writes that fail.
 */
static void test_failed_writes(void) {
    printf("failed writes\n");
    char good[300], path[300], err[512];
    path_in(good, sizeof good, "keep.safetensors");
    float a[3] = {1, 2, 3};
    attn_st_tensor t = {"a", ATTN_DTYPE_F32, 1, {3}, a, sizeof a};
    CHECK_STATUS(attn_st_write(good, &t, 1, NULL, NULL, 0, err, sizeof err), ATTN_OK);
    size_t n0 = 0, n1 = 0;
    unsigned char *before = slurp(good, &n0);

    /* A directory that does not exist. */
    path_in(path, sizeof path, "no-such-dir/x.safetensors");
    CHECK_STATUS(attn_st_write(path, &t, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, path) == err);
    printf("  missing directory -> %s\n", err);

    /* The temporary file cannot be created (a directory sits at "<path>.tmp"): the target stays as it was,
     * and the directory is not removed. */
    char tmpdir[320];
    snprintf(tmpdir, sizeof tmpdir, "%s.tmp", good);
    CHECK(mkdir(tmpdir, 0700) == 0);
    float other[3] = {9, 9, 9};
    attn_st_tensor t2 = {"a", ATTN_DTYPE_F32, 1, {3}, other, sizeof other};
    CHECK_STATUS(attn_st_write(good, &t2, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, good) == err);
    printf("  temp file blocked -> %s\n", err);
    struct stat sb;
    CHECK(stat(tmpdir, &sb) == 0 && S_ISDIR(sb.st_mode));
    rmdir(tmpdir);

    /* The rename fails (the target is a directory): the temporary file is removed. */
    char dirtarget[300], dirtmp[320];
    path_in(dirtarget, sizeof dirtarget, "target-is-dir");
    CHECK(mkdir(dirtarget, 0700) == 0);
    snprintf(dirtmp, sizeof dirtmp, "%s.tmp", dirtarget);
    CHECK_STATUS(attn_st_write(dirtarget, &t2, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, dirtarget) == err);
    CHECK(!file_exists(dirtmp));
    CHECK(stat(dirtarget, &sb) == 0 && S_ISDIR(sb.st_mode));
    printf("  rename fails      -> %s\n", err);
    rmdir(dirtarget);

    /* Bad arguments never touch the disk. */
    attn_st_tensor bad = t2;
    bad.nbytes = 8;
    CHECK_STATUS(attn_st_write(good, &bad, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_SHAPE);
    CHECK(strstr(err, good) == err);
    bad = t2;
    bad.dtype = ATTN_DTYPE_COUNT;
    CHECK_STATUS(attn_st_write(good, &bad, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_ARG);
    bad = t2;
    bad.shape[0] = -3;
    CHECK_STATUS(attn_st_write(good, &bad, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_SHAPE);
    bad = t2;
    bad.data = NULL;
    CHECK_STATUS(attn_st_write(good, &bad, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_NULL);
    bad = t2;
    bad.name = "__metadata__";
    CHECK_STATUS(attn_st_write(good, &bad, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_ARG);
    attn_st_tensor twice[2] = {t2, t2};
    CHECK_STATUS(attn_st_write(good, twice, 2, NULL, NULL, 0, err, sizeof err), ATTN_ERR_ARG);
    const char *k1[1] = {"k"}, *vbad[1] = {"\xff"};
    CHECK_STATUS(attn_st_write(good, &t2, 1, k1, vbad, 1, err, sizeof err), ATTN_ERR_ARG);
    CHECK_STATUS(attn_st_write(NULL, &t2, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_NULL);
    CHECK_STATUS(attn_st_write(good, NULL, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_NULL);
    CHECK_STATUS(attn_st_read(NULL, good, 0, err, sizeof err), ATTN_ERR_NULL);

    unsigned char *after = slurp(good, &n1);
    CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
    free(before);
    free(after);
}

/* Paths that are not regular files. Reading a FIFO must not wait for a writer; writing must not replace a
 * FIFO, a symbolic link or a device with a plain file (as root, renaming over /dev/null did), nor wait on
 * a FIFO sitting at "<path>.tmp". alarm() turns a wait into a failure instead of a hung test. */
static void test_special_files(void) {
    printf("special files\n");
    char fifo[300], link[300], good[300], path[300], err[512];
    float a[3] = {1, 2, 3};
    attn_st_tensor t = {"a", ATTN_DTYPE_F32, 1, {3}, a, sizeof a};
    struct stat sb;
    alarm(20);
    path_in(fifo, sizeof fifo, "fifo.safetensors");
    CHECK(mkfifo(fifo, 0600) == 0);
    attn_st_file f;
    err[0] = '\0';
    CHECK_STATUS(attn_st_read(&f, fifo, 0, err, sizeof err), ATTN_ERR_IO);
    printf("  read a FIFO       -> %s\n", err);
    CHECK(strstr(err, fifo) == err && strstr(err, "FIFO") != NULL);

    err[0] = '\0';
    CHECK_STATUS(attn_st_write(fifo, &t, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_IO);
    printf("  write over a FIFO -> %s\n", err);
    CHECK(strstr(err, fifo) == err && strstr(err, "not a regular file") != NULL);
    CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));

    path_in(good, sizeof good, "linked.safetensors");
    path_in(link, sizeof link, "link.safetensors");
    CHECK_STATUS(attn_st_write(good, &t, 1, NULL, NULL, 0, err, sizeof err), ATTN_OK);
    CHECK(symlink(good, link) == 0);
    CHECK_STATUS(attn_st_write(link, &t, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_IO);
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode) && strstr(err, "symbolic link") != NULL);
    CHECK_STATUS(attn_st_read(&f, link, 0, err, sizeof err), ATTN_OK);   /* reading through a link is fine */
    attn_st_free(&f);

    if (geteuid() == 0) {                        /* a null device of our own, in the test's folder */
        path_in(path, sizeof path, "null");
        if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) == 0) {
            CHECK_STATUS(attn_st_write(path, &t, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_IO);
            printf("  write over a device -> %s\n", err);
            CHECK(lstat(path, &sb) == 0 && S_ISCHR(sb.st_mode));
            CHECK_STATUS(attn_st_read(&f, path, 0, err, sizeof err), ATTN_ERR_IO);
            remove(path);
        }
    }

    /* a FIFO where the temporary file goes: refused, left alone, the target untouched */
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", good);
    CHECK(mkfifo(tmp, 0600) == 0);
    CHECK_STATUS(attn_st_write(good, &t, 1, NULL, NULL, 0, err, sizeof err), ATTN_ERR_IO);
    printf("  FIFO at the .tmp  -> %s\n", err);
    CHECK(lstat(tmp, &sb) == 0 && S_ISFIFO(sb.st_mode));
    CHECK_STATUS(attn_st_read(&f, good, 0, err, sizeof err), ATTN_OK);
    attn_st_free(&f);
    alarm(0);
    remove(tmp);
    remove(link);
    remove(good);
    remove(fifo);
}

/* Random byte changes to a good file's header and length: the reader must answer OK or FORMAT, never crash
 * (run under ASan), and a file it accepts must describe tensors inside its buffer. Also NULL and tiny err
 * buffers. */
static void test_mutations(void) {
    printf("mutated files\n");
    char good[300], path[300], err[512];
    path_in(good, sizeof good, "good.safetensors");
    path_in(path, sizeof path, "bad.safetensors");
    size_t size = 0;
    unsigned char *raw = slurp(good, &size);
    CHECK(raw != NULL);
    if (!raw) return;
    unsigned char *mod = malloc(size);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    int n_ok = 0, n_format = 0, n_other = 0;
    const char alphabet[] = "{}[]\":,0123456789 -.eE\\uF3I6UB";
    for (int it = 0; it < 3000; it++) {
        memcpy(mod, raw, size);
        int changes = 1 + it % 3;
        for (int c = 0; c < changes; c++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t at = (size_t)(x >> 33) % (size < 160 ? size : 160);
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            mod[at] = (x >> 40) & 1 ? (unsigned char)(x >> 48) : (unsigned char)alphabet[(x >> 48) % (sizeof alphabet - 1)];
        }
        spit(path, mod, size);
        attn_st_file f;
        attn_status st = attn_st_read(&f, path, 0, err, sizeof err);
        if (st == ATTN_OK) {
            n_ok++;
            for (int i = 0; i < f.n; i++) {
                const unsigned char *d = f.tensors[i].data, *b = f.buffer;
                CHECK(f.tensors[i].nbytes == 0 || (d >= b && d + f.tensors[i].nbytes <= b + f.size + 8));
            }
        } else if (st == ATTN_ERR_FORMAT) {
            n_format++;
            CHECK(strstr(err, path) == err);
        } else {
            n_other++;
        }
        attn_st_free(&f);
    }
    printf("  3000 mutations: %d read, %d refused as FORMAT, %d other\n", n_ok, n_format, n_other);
    CHECK(n_other == 0 && n_format > 2000);
    free(mod);
    free(raw);

    /* Error buffers: NULL, and too small (truncated, still terminated). */
    char missing[300], tiny[12];
    path_in(missing, sizeof missing, "does-not-exist.safetensors");
    attn_st_file f;
    CHECK_STATUS(attn_st_read(&f, missing, 0, NULL, 0), ATTN_ERR_IO);
    memset(tiny, 'x', sizeof tiny);
    CHECK_STATUS(attn_st_read(&f, missing, 0, tiny, sizeof tiny), ATTN_ERR_IO);
    CHECK(memchr(tiny, 0, sizeof tiny) != NULL);
    make_file(path, 7, "{\"a\":1}", NULL, 0);
    memset(tiny, 'x', sizeof tiny);
    CHECK_STATUS(attn_st_read(&f, path, 0, tiny, sizeof tiny), ATTN_ERR_FORMAT);
    CHECK(memchr(tiny, 0, sizeof tiny) != NULL);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s/attn-st-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    test_round_trip();
    test_foreign_files();
    test_corrupt();
    test_failed_writes();
    test_mutations();
    test_special_files();
    const char *names[] = {"rt.safetensors", "empty.safetensors", "foreign.safetensors", "good.safetensors",
                           "bad.safetensors", "keep.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[300];
        path_in(p, sizeof p, names[i]);
        remove(p);
    }
    if (rmdir(g_dir) != 0) fprintf(stderr, "note: %s not empty\n", g_dir);
    return tu_finish("test_safetensors");
}
