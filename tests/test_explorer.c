/*
 * test_explorer.c — the explorer page writer (attn_explorer_html): labels and titles that users type
 * (`</script>`, quotes, `&`, non-ASCII UTF-8, invalid bytes, U+2028) come out escaped and nothing can end
 * the script element early; the cells carry the palette's exact colours; the page holds no reference to
 * anything outside itself; bad input is refused with the path and the reason, and nothing is left behind.
 *
 *   test_explorer             the checks above
 *   test_explorer page DIR    writes the fixture page DIR/explorer.html and DIR/expect.json (labels,
 *                             values and colours) for the browser test (explorer_browser.py)
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "attn/heatmap.h"
#include "testutil.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The fixture: a cross-attention of two heads and an encoder self-attention, with hostile labels. */
static const char *const fr[3] = {"le", "</script><script>window.pwned=1</script>", "chat & \"chien\" 'x' \xC3\xA9\xF0\x9F\x98\x80"};
static const char *const en[4] = {"the", "cat", "<b>bold</b>", "na\xC3\xAFve"};
static const float head1[3 * 4] = {0.70f, 0.10f, 0.15f, 0.05f,
                                   0.05f, 0.10f, 0.70f, 0.15f,
                                   0.25f, 0.25f, 0.25f, 0.25f};
static const float head2[3 * 4] = {0.10f, 0.80f, 0.05f, 0.05f,
                                   0.40f, 0.30f, 0.20f, 0.10f,
                                   0.00f, 0.00f, 0.00f, 1.00f};
static const float self4[4 * 4] = {1.0f, 0.0f, 0.0f, 0.0f,
                                   0.5f, 0.5f, 0.0f, 0.0f,
                                   0.2f, 0.3f, 0.5f, 0.0f,
                                   0.1f, 0.2f, 0.3f, 0.4f};
#define FIX_TITLE "Fixture <b>&</b> \"quotes\" 'x' caf\xC3\xA9"
#define FIX_NOTE "a note with </p> and & in it"

static void fixture(attn_explorer_map maps[3]) {
    maps[0] = (attn_explorer_map){.map = {head1, 3, 4, 0, fr, en, "cross-attention, head 1", "French", "English", 0, 1,
                                           0, ATTN_PALETTE_VIRIDIS}, .group = "cross-attention", .layer = 1, .head = 1};
    maps[1] = (attn_explorer_map){.map = {head2, 3, 4, 0, fr, en, "cross-attention, head 2", "French", "English", 0, 1,
                                           0, ATTN_PALETTE_VIRIDIS}, .group = "cross-attention", .layer = 1, .head = 2};
    maps[2] = (attn_explorer_map){.map = {self4, 4, 4, 0, en, en, "encoder self-attention", "English", "English",
                                           0, 1, 0, ATTN_PALETTE_MAGMA},
                                  .group = "encoder self-attention", .layer = 2, .head = 1};
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *buf = calloc((size_t)len + 1, 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) { free(buf); buf = NULL; }
    fclose(f);
    if (n) *n = (size_t)len;
    return buf;
}

static int count(const char *hay, const char *needle) {
    int k = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) k++;
    return k;
}

static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

/* The page and what the browser must find in it. */
static int write_fixture(const char *dir) {
    attn_explorer_map maps[3];
    fixture(maps);
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/explorer.html", dir);
    attn_status st = attn_explorer_html(maps, 3, FIX_TITLE, FIX_NOTE, path, err, sizeof err);
    if (st != ATTN_OK) { fprintf(stderr, "test_explorer: %s\n", err); return 1; }
    snprintf(path, sizeof path, "%s/expect.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return 1; }
    fprintf(f, "{\"title\": ");
    put_json_string(f, FIX_TITLE);
    fprintf(f, ", \"maps\": [");
    for (int m = 0; m < 3; m++) {
        const attn_heatmap *h = &maps[m].map;
        fprintf(f, "%s\n {\"group\": ", m ? "," : "");
        put_json_string(f, maps[m].group);
        fprintf(f, ", \"layer\": %d, \"head\": %d, \"title\": ", maps[m].layer, maps[m].head);
        put_json_string(f, h->title);
        fprintf(f, ", \"rows\": [");
        for (int r = 0; r < h->rows; r++) { if (r) fputc(',', f); put_json_string(f, h->row_labels[r]); }
        fprintf(f, "], \"cols\": [");
        for (int c = 0; c < h->cols; c++) { if (c) fputc(',', f); put_json_string(f, h->col_labels[c]); }
        fprintf(f, "], \"values\": [");
        for (int r = 0; r < h->rows; r++) {
            fprintf(f, "%s[", r ? "," : "");
            for (int c = 0; c < h->cols; c++) fprintf(f, "%s%.9g", c ? "," : "", (double)h->values[r * h->cols + c]);
            fputc(']', f);
        }
        fprintf(f, "], \"rgb\": [");
        for (int r = 0; r < h->rows; r++) {
            fprintf(f, "%s[", r ? "," : "");
            for (int c = 0; c < h->cols; c++) {
                unsigned char rgb[3];
                attn_palette_color(h->palette, h->values[r * h->cols + c], rgb);   /* range [0, 1] */
                fprintf(f, "%s[%d,%d,%d]", c ? "," : "", rgb[0], rgb[1], rgb[2]);
            }
            fputc(']', f);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0) { perror(path); return 1; }
    return 0;
}

static void test_page(const char *dir) {
    attn_explorer_map maps[3];
    fixture(maps);
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/page.html", dir);
    CHECK_STATUS(attn_explorer_html(maps, 3, FIX_TITLE, FIX_NOTE, path, err, sizeof err), ATTN_OK);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    size_t n = 0;
    char *s = slurp(path, &n);
    CHECK(s != NULL);
    if (!s) return;
    printf("  page: %zu bytes for 3 maps\n", n);
    /* exactly the page's own two script elements; the hostile label is data, escaped */
    CHECK(count(s, "<script") == 2);
    CHECK(count(s, "</script") == 2);
    CHECK(strstr(s, "window.pwned") != NULL && strstr(s, "<script>window.pwned") == NULL);
    CHECK(strstr(s, "\\u003c/script\\u003e\\u003cscript\\u003ewindow.pwned=1\\u003c/script\\u003e") != NULL);
    CHECK(strstr(s, "\\u003cb\\u003ebold\\u003c/b\\u003e") != NULL);
    CHECK(strstr(s, "chat \\u0026 \\\"chien\\\" 'x' \xC3\xA9\xF0\x9F\x98\x80") != NULL);   /* UTF-8 kept */
    /* the title and the note as HTML text */
    CHECK(strstr(s, "<title>Fixture &lt;b&gt;&amp;&lt;/b&gt; &quot;quotes&quot; &#39;x&#39; caf\xC3\xA9</title>") != NULL);
    CHECK(strstr(s, ">a note with &lt;/p&gt; and &amp; in it</p>") != NULL);
    /* nothing outside the page: no address, no src or href attribute */
    CHECK(strstr(s, "http:") == NULL || strstr(s, "http:") == strstr(s, "http://www.w3.org/2000/svg"));
    CHECK(strstr(s, "https:") == NULL && strstr(s, " src=") == NULL && strstr(s, " href=") == NULL);
    CHECK(strstr(s, "default-src 'none'") != NULL);
    /* colours: viridis 0.7 and 0.05 (head 1), magma 1 (the self-attention) */
    unsigned char c[3];
    char hex[16];
    attn_palette_color(ATTN_PALETTE_VIRIDIS, 0.7f, c);
    snprintf(hex, sizeof hex, "\"%02x%02x%02x", c[0], c[1], c[2]);
    CHECK(strstr(s, hex) != NULL);                    /* the first cell of head 1's first row */
    CHECK(strstr(s, "\"fcf08c") != NULL);             /* magma's top, the first cell of the self-attention */
    CHECK(strstr(s, "\"scale\":[\"#440154\"") != NULL);  /* viridis from its first anchor */
    CHECK(strstr(s, "\"group\":\"cross-attention\",\"layer\":1,\"head\":2") != NULL);
    free(s);

    /* invalid UTF-8 and the line separators: U+FFFD and escapes, in the data and in the text */
    static const char *const odd[2] = {"bad\xFF\xFEyte", "line\xE2\x80\xA8sep\x01"};
    float v[2] = {0.5f, 0.5f};
    attn_explorer_map one = {.map = {v, 1, 2, 0, NULL, odd, NULL, NULL, NULL, 0, 0, 0, ATTN_PALETTE_GRAY}};
    CHECK_STATUS(attn_explorer_html(&one, 1, "t\xC3", NULL, path, err, sizeof err), ATTN_OK);
    s = slurp(path, NULL);
    CHECK(s != NULL);
    if (!s) return;
    CHECK(strstr(s, "\"bad\\ufffd\\ufffdyte\"") != NULL);
    CHECK(strstr(s, "\"line\\u2028sep\\u0001\"") != NULL);
    CHECK(strstr(s, "<title>t\xEF\xBF\xBD</title>") != NULL);
    CHECK(strstr(s, "\"rows\":[\"0\"]") != NULL);     /* missing labels: the indices */
    CHECK(strstr(s, "\"group\":\"attention\"") != NULL);
    CHECK(strstr(s, "\"colors\":[\"808080808080\"]") != NULL);  /* a flat map: mid gray (t = 0.5) */
    free(s);
}

/* The vision fixture: an 8x8 image of 2x2 patches of 4x4 pixels after a class token, one head whose
 * rows each put most of their weight on a different patch, and a rollout row; a hostile patch label. */
static const char *const vtok[5] = {"[CLS]", "(0,0)", "</script><b>p</b>", "(1,0)", "(1,1)"};
static const float vself[5 * 5] = {0.02f, 0.05f, 0.03f, 0.10f, 0.80f,     /* [CLS]: patch (1,1) */
                                   0.02f, 0.80f, 0.08f, 0.05f, 0.05f,     /* (0,0): itself */
                                   0.02f, 0.04f, 0.04f, 0.85f, 0.05f,     /* (0,1): patch (1,0) */
                                   0.02f, 0.90f, 0.03f, 0.03f, 0.02f,     /* (1,0): patch (0,0) */
                                   0.20f, 0.20f, 0.20f, 0.20f, 0.20f};
static const float vroll[5] = {0.2f, 0.1f, 0.5f, 0.1f, 0.1f};
static float vimage[8 * 8];

static void vision_fixture(attn_explorer_map maps[2]) {
    for (int i = 0; i < 64; i++) vimage[i] = (float)((i / 8 + i % 8) % 5);   /* stripes, values 0..4 */
    memset(maps, 0, 2 * sizeof *maps);
    maps[0].map = (attn_heatmap){.values = vroll, .rows = 1, .cols = 5, .row_labels = vtok, .col_labels = vtok,
                                 .title = "rollout"};
    maps[0].group = "rollout";
    maps[1].map = (attn_heatmap){.values = vself, .rows = 5, .cols = 5, .row_labels = vtok, .col_labels = vtok,
                                 .title = "block 1 head 1"};
    maps[1].group = "self-attention";
    maps[1].layer = maps[1].head = 1;
    for (int m = 0; m < 2; m++) {
        maps[m].image = vimage;
        maps[m].image_rows = maps[m].image_cols = 8;
        maps[m].grid_rows = maps[m].grid_cols = 2;
        maps[m].first_patch = 1;
    }
}

static int write_vision_fixture(const char *dir) {
    attn_explorer_map maps[2];
    vision_fixture(maps);
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/vision.html", dir);
    attn_status st = attn_explorer_html(maps, 2, "Vision <fixture>", NULL, path, err, sizeof err);
    if (st != ATTN_OK) { fprintf(stderr, "test_explorer: %s\n", err); return 1; }
    return 0;
}

static void test_vision(const char *dir) {
    CHECK(write_vision_fixture(dir) == 0);
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/vision.html", dir);
    size_t n = 0;
    char *s = slurp(path, &n);
    CHECK(s != NULL);
    if (!s) return;
    CHECK(count(s, "<script") == 2 && count(s, "</script") == 2);     /* the hostile label stays data */
    CHECK(strstr(s, "\"\\u003c/script\\u003e\\u003cb\\u003ep\\u003c/b\\u003e\"") != NULL);
    CHECK(strstr(s, "<title>Vision &lt;fixture&gt;</title>") != NULL);
    /* the image as grey levels 0..255 (0 -> 0, 4 -> 255), the grid and its first token, in both maps */
    CHECK(count(s, "\"image\":{\"rows\":8,\"cols\":8,\"grid_rows\":2,\"grid_cols\":2,\"first\":1,") == 2);
    CHECK(strstr(s, "\"pixels\":[0,64,128,191,255,0,64,128,64,") != NULL);
    free(s);
    /* a page without images carries none */
    attn_explorer_map plain[3];
    fixture(plain);
    snprintf(path, sizeof path, "%s/plain.html", dir);
    CHECK_STATUS(attn_explorer_html(plain, 3, NULL, NULL, path, err, sizeof err), ATTN_OK);
    s = slurp(path, &n);
    CHECK(s != NULL && strstr(s, "\"image\":") == NULL);
    free(s);
    /* grids that do not fit the image or the tokens are refused */
    attn_explorer_map maps[2], b;
    vision_fixture(maps);
    snprintf(path, sizeof path, "%s/vbad.html", dir);
    b = maps[1]; b.first_patch = 2;                   /* patches 2..5 of 5 tokens */
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_SIZE);
    b = maps[1]; b.grid_rows = 9;                     /* more patch rows than pixel rows */
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_SIZE);
    b = maps[1]; b.image_cols = 0;
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_SIZE);
    b = maps[1]; b.first_patch = -1;
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_SIZE);
    b = maps[1]; b.grid_rows = b.grid_cols = 4096; b.image_rows = b.image_cols = 4096;   /* no wrap */
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_SIZE);
    CHECK(access(path, F_OK) != 0);
}

static void test_bad_input(const char *dir) {
    attn_explorer_map maps[3];
    fixture(maps);
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/bad.html", dir);
    CHECK_STATUS(attn_explorer_html(NULL, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_NULL);
    CHECK_STATUS(attn_explorer_html(maps, 3, NULL, NULL, NULL, err, sizeof err), ATTN_ERR_NULL);
    CHECK_STATUS(attn_explorer_html(maps, 0, NULL, NULL, path, err, sizeof err), ATTN_ERR_SIZE);
    CHECK_STATUS(attn_explorer_html(maps, ATTN_EXPLORER_MAX_MAPS + 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_SIZE);
    attn_explorer_map b = maps[1];
    b.head = 1;                                       /* the same group, layer and head as maps[0] */
    attn_explorer_map dup[2] = {maps[0], b};
    CHECK_STATUS(attn_explorer_html(dup, 2, NULL, NULL, path, err, sizeof err), ATTN_ERR_ARG);
    CHECK(strstr(err, "bad.html") != NULL && strstr(err, "maps 0 and 1") != NULL);
    b = maps[0];
    b.map.palette = ATTN_PALETTE_COUNT;
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_ARG);
    b = maps[0];
    b.map.row_stride = 2;
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_STRIDE);
    b = maps[0];
    b.map.rows = 0;
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_SIZE);
    b = maps[0];
    b.layer = -1;
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_ARG);
    const char *holes[4] = {"a", NULL, "c", "d"};
    b = maps[0];
    b.map.col_labels = holes;
    CHECK_STATUS(attn_explorer_html(&b, 1, NULL, NULL, path, err, sizeof err), ATTN_ERR_NULL);
    CHECK(strstr(err, "invalid map 0") != NULL);
    CHECK(access(path, F_OK) != 0);
    /* a folder that does not exist: an error naming the path, nothing written */
    snprintf(path, sizeof path, "%s/no/such/dir/x.html", dir);
    CHECK_STATUS(attn_explorer_html(maps, 3, NULL, NULL, path, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, "no/such/dir/x.html") != NULL);
    printf("  bad input: %s\n", err);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "page") == 0) return write_fixture(argv[2]) || write_vision_fixture(argv[2]);
    char dir[] = "/tmp/attn_explorer_XXXXXX";
    if (!mkdtemp(dir)) { fprintf(stderr, "mkdtemp failed\n"); return 1; }
    test_page(dir);
    test_vision(dir);
    test_bad_input(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_explorer");
}
