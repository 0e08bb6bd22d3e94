/*
 * test_fra.c — the text side of the translator: d2l's preprocessing, reading pairs from a fixture file
 * the test writes (with the bad cases: a line without a tab, an empty side, invalid UTF-8, a missing
 * file), vocabularies (min frequency, reserved ids, order of ties, thousands of tokens, save/load, a
 * 4 MB token that lookups of other words must not pay for), encoding with <eos>, cut and padding, BLEU
 * on the book's examples, and the masked cross-entropy on padded batches (the book's example, and the
 * model's loss unchanged by whatever sits in the padding). With the real data present: the book's 601
 * pairs and vocabulary sizes 184 / 201.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "attn/seq2seq.h"
#include "testutil.h"

#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int pre_is(const char *in, const char *want) {
    char *out = NULL;
    attn_status st = attn_nmt_preprocess(in, strlen(in), &out);
    int ok = st == ATTN_OK && out && strcmp(out, want) == 0;
    if (!ok) fprintf(stderr, "  preprocess('%s') = '%s', want '%s'\n", in, out ? out : "(error)", want);
    free(out);
    return ok;
}

static void test_preprocess(void) {
    CHECK(pre_is("Go.", "go ."));
    CHECK(pre_is("Cours\xE2\x80\xAF!", "cours !"));                   /* U+202F becomes a space */
    CHECK(pre_is("Qui\xC2\xA0?", "qui ?"));                            /* U+00A0 too */
    CHECK(pre_is("\xC3\x87" "a alors\xE2\x80\xAF!", "\xC3\xA7" "a alors !"));   /* Ç lowercased */
    CHECK(pre_is("\xC3\x80 l'aide !", "\xC3\xA0 l'aide !"));          /* À */
    CHECK(pre_is("J\xE2\x80\x99" "ai gagn\xC3\xA9.", "j\xE2\x80\x99" "ai gagn\xC3\xA9 ."));
    CHECK(pre_is("Hello,world!?", "hello ,world ! ?"));
    CHECK(pre_is("a .", "a ."));                                        /* already spaced */
    CHECK(pre_is(".", "."));                                            /* nothing before it */
    CHECK(pre_is("\xC5\x92UF", "\xC5\x93uf"));                          /* Œ → œ */
    char *out = NULL;
    CHECK_STATUS(attn_nmt_preprocess("ab\xFF", 3, &out), ATTN_ERR_FORMAT);
    CHECK_STATUS(attn_nmt_preprocess("\xC3", 1, &out), ATTN_ERR_FORMAT);   /* truncated sequence */
    CHECK_STATUS(attn_nmt_preprocess(NULL, 0, &out), ATTN_ERR_NULL);
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fputs(text, f);
    fclose(f);
    return 1;
}

static void test_read(const char *dir) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/fra.txt", dir);
    CHECK(write_file(path, "Go.\tVa !\nHi.\tSalut !\nRun!\tCours\xE2\x80\xAF!\nGo.\tBouge !\n"
                           "I lost.\tJ'ai perdu.\tCC-BY 2.0 (France) Attribution\n"));
    attn_nmt_pairs p;
    CHECK_STATUS(attn_nmt_read(&p, path, 0, -1, err, sizeof err), ATTN_OK);
    CHECK(p.n == 5);
    if (p.n == 5) {
        CHECK(strcmp(p.src[0], "go .") == 0 && strcmp(p.tgt[0], "va !") == 0);
        CHECK(strcmp(p.src[2], "run !") == 0 && strcmp(p.tgt[2], "cours !") == 0);
        CHECK(strcmp(p.tgt[4], "j'ai perdu .") == 0);                   /* a third column is ignored */
        CHECK(p.line[3] == 3);
    }
    attn_nmt_pairs_free(&p);
    /* a line range: lines 1..2 */
    CHECK_STATUS(attn_nmt_read(&p, path, 1, 2, err, sizeof err), ATTN_OK);
    CHECK(p.n == 2 && strcmp(p.src[0], "hi .") == 0 && p.line[1] == 2);
    attn_nmt_pairs_free(&p);

    /* bad lines: each message names the file and the 1-based line */
    struct { const char *text, *want; } bad[] = {
        {"Go.\tVa !\nHi. Salut !\n", "line 2: no tab"},
        {"Go.\tVa !\nHi.\t\n", "line 2: empty French side"},
        {"\tVa !\n", "line 1: empty English side"},
        {"Go.\tVa !\nGo.\tVa !\nHi.\tSal\xFFut !\n", "line 3: invalid UTF-8"},
        {"Go.\tVa !\n\nHi.\tSalut !\n", "line 2: no tab"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(write_file(path, bad[i].text));
        err[0] = 0;
        CHECK_STATUS(attn_nmt_read(&p, path, 0, -1, err, sizeof err), ATTN_ERR_FORMAT);
        CHECK(strstr(err, bad[i].want) != NULL && strstr(err, "fra.txt") != NULL);
        CHECK(p.n == 0 && p.src == NULL);
        printf("  bad input: %s\n", err);
    }
    /* a bad line outside the range is not read */
    CHECK(write_file(path, "Go.\tVa !\nbroken line\n"));
    CHECK_STATUS(attn_nmt_read(&p, path, 0, 0, err, sizeof err), ATTN_OK);
    CHECK(p.n == 1);
    attn_nmt_pairs_free(&p);
    /* a missing file names the path */
    snprintf(path, sizeof path, "%s/nowhere/fra.txt", dir);
    CHECK_STATUS(attn_nmt_read(&p, path, 0, -1, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, "nowhere/fra.txt") != NULL);
    printf("  missing: %s\n", err);
}

static void test_vocab(const char *dir) {
    /* counts: a 1, b 2, c 3, d 2 → c, then b and d tied (b seen first), a below min_freq */
    const char *lines[4] = {"a b c", "b c", "c d", "d"};
    attn_vocab v;
    CHECK_STATUS(attn_vocab_build(&v, lines, 4, 2), ATTN_OK);
    CHECK(v.n == 7);
    if (v.n == 7) {
        CHECK(strcmp(v.tokens[0], "<unk>") == 0 && strcmp(v.tokens[1], "<pad>") == 0);
        CHECK(strcmp(v.tokens[2], "<bos>") == 0 && strcmp(v.tokens[3], "<eos>") == 0);
        CHECK(strcmp(v.tokens[4], "c") == 0 && strcmp(v.tokens[5], "b") == 0 && strcmp(v.tokens[6], "d") == 0);
    }
    CHECK(attn_vocab_id(&v, "d", 1) == 6 && attn_vocab_id(&v, "a", 1) == ATTN_TOK_UNK);
    CHECK(attn_vocab_id(&v, "<eos>", 5) == ATTN_TOK_EOS);
    int32_t ids[5], vl;
    int nt, nu;
    CHECK_STATUS(attn_vocab_encode(&v, "b a x", 5, ids, &vl, &nt, &nu), ATTN_OK);
    CHECK(ids[0] == 5 && ids[1] == 0 && ids[2] == 0 && ids[3] == ATTN_TOK_EOS && ids[4] == ATTN_TOK_PAD);
    CHECK(vl == 4 && nt == 3 && nu == 2);
    /* cut to num_steps: <eos> is lost, as d2l's truncate_pad */
    CHECK_STATUS(attn_vocab_encode(&v, "c c c c", 3, ids, &vl, &nt, &nu), ATTN_OK);
    CHECK(ids[0] == 4 && ids[2] == 4 && vl == 3 && nt == 4 && nu == 0);
    /* min_freq 1 keeps a, last */
    attn_vocab v1;
    CHECK_STATUS(attn_vocab_build(&v1, lines, 4, 1), ATTN_OK);
    CHECK(v1.n == 8 && strcmp(v1.tokens[7], "a") == 0);
    attn_vocab_free(&v1);
    /* save and load */
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    CHECK_STATUS(attn_vocab_save(&v, path, err, sizeof err), ATTN_OK);
    attn_vocab w;
    CHECK_STATUS(attn_vocab_load(&w, path, err, sizeof err), ATTN_OK);
    CHECK(w.n == v.n && attn_vocab_id(&w, "b", 1) == 5);
    attn_vocab_free(&w);
    CHECK(write_file(path, "<unk>\n<bos>\n"));
    CHECK_STATUS(attn_vocab_load(&w, path, err, sizeof err), ATTN_ERR_FORMAT);
    printf("  bad vocabulary: %s\n", err);
    attn_vocab_free(&v);
}

/* Thousands of distinct tokens (the counting index grows several times): ranked by count, ties in order
 * of first appearance, a reserved name in the lines not repeated, each id found again. */
static void test_vocab_many(void) {
    enum { N = 3000 };
    char **lines = malloc(sizeof(char *) * N);
    for (int i = 0; i < N; i++) {
        lines[i] = malloc(64);
        int k = snprintf(lines[i], 64, "w%d", i);
        for (int r = 0; r < i % 3; r++) k += snprintf(lines[i] + k, 64 - (size_t)k, " w%d", i);
        if (i % 1000 == 0) snprintf(lines[i] + k, 64 - (size_t)k, " <eos>");
    }
    attn_vocab v;
    CHECK_STATUS(attn_vocab_build(&v, (const char *const *)lines, N, 1), ATTN_OK);
    CHECK(v.n == 4 + N);
    int bad = v.n == 4 + N ? -1 : 0;
    for (int r = 0; bad < 0 && r < N; r++) {
        /* count 3: w2, w5, ...; then count 2: w1, w4, ...; then count 1: w0, w3, ... */
        int group = r / (N / 3), i = (2 - group) + 3 * (r % (N / 3));
        char want[16];
        snprintf(want, sizeof want, "w%d", i);
        if (strcmp(v.tokens[4 + r], want) != 0 || attn_vocab_id(&v, want, strlen(want)) != 4 + r) bad = r;
    }
    if (bad >= 0) printf("  many tokens: rank %d is wrong\n", bad);
    CHECK(bad < 0);
    attn_vocab_free(&v);
    for (int i = 0; i < N; i++) free(lines[i]);
    free(lines);
}

/* A long token in a vocabulary file does not make looking up other words cost its length: 200,000
 * distinct words against a vocabulary holding a 4 MB token take milliseconds (when every probe that met
 * the token measured it, about 80 GB of strlen: many seconds). Lookups stay exact around prefixes, and
 * a query with a NUL inside does not read past a shorter token. */
static void test_vocab_long_token(const char *dir) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/long.vocab", dir);
    size_t L = (size_t)4 << 20;
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs("<unk>\n<pad>\n<bos>\n<eos>\nab\nabc\n", f);
    for (size_t i = 0; i < L; i++) fputc('x', f);
    fputc('\n', f);
    fclose(f);
    attn_vocab v;
    CHECK_STATUS(attn_vocab_load(&v, path, err, sizeof err), ATTN_OK);
    if (v.n != 7) { CHECK(v.n == 7); attn_vocab_free(&v); return; }
    CHECK(attn_vocab_id(&v, "ab", 2) == 4 && attn_vocab_id(&v, "abc", 3) == 5);
    CHECK(attn_vocab_id(&v, "a", 1) == ATTN_TOK_UNK && attn_vocab_id(&v, "abcd", 4) == ATTN_TOK_UNK);
    CHECK(attn_vocab_id(&v, "ab\0c", 4) == ATTN_TOK_UNK && attn_vocab_id(&v, "xx", 2) == ATTN_TOK_UNK);
    CHECK(attn_vocab_id(&v, v.tokens[6], L) == 6);

    enum { WORDS = 200000 };
    char *line = malloc((size_t)WORDS * 8);
    size_t k = 0;
    for (int i = 0; i < WORDS; i++) k += (size_t)sprintf(line + k, i ? " w%d" : "w%d", i);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int32_t ids[8], vl;
    int nt, nu;
    CHECK_STATUS(attn_vocab_encode(&v, line, 8, ids, &vl, &nt, &nu), ATTN_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("  %d words against a vocabulary with a %zu-byte token: %.3f s\n", WORDS, L, s);
    CHECK(nt == WORDS && nu == WORDS && s < 2.0);
    free(line);
    attn_vocab_free(&v);
    remove(path);
}

/* Not regular files: reading a FIFO must not wait for a writer, and saving a vocabulary must not replace
 * a FIFO with a plain file. */
static void test_special_files(const char *dir) {
    char fifo[512], err[512];
    snprintf(fifo, sizeof fifo, "%s/fifo.txt", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    alarm(20);
    attn_nmt_pairs p;
    err[0] = '\0';
    CHECK_STATUS(attn_nmt_read(&p, fifo, 0, -1, err, sizeof err), ATTN_ERR_IO);
    printf("  pairs from a FIFO: %s\n", err);
    CHECK(strstr(err, "fifo.txt") != NULL && strstr(err, "FIFO") != NULL);
    attn_vocab v;
    CHECK_STATUS(attn_vocab_load(&v, fifo, err, sizeof err), ATTN_ERR_IO);
    CHECK(strstr(err, "FIFO") != NULL);
    const char *lines[1] = {"a b"};
    CHECK_STATUS(attn_vocab_build(&v, lines, 1, 1), ATTN_OK);
    CHECK_STATUS(attn_vocab_save(&v, fifo, err, sizeof err), ATTN_ERR_IO);
    printf("  vocabulary over a FIFO: %s\n", err);
    struct stat sb;
    CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode) && strstr(err, "not a regular file") != NULL);
    attn_vocab_free(&v);
    alarm(0);
}

static void test_bleu(void) {
    /* the book's four sentences and more, against d2l's bleu() (values from tools/golden/gen_seq2seq.py) */
    double got[6] = {
        attn_bleu("va !", "va !", 2),
        attn_bleu("il est malade .", "il est calme .", 2),
        attn_bleu("je suis chez .", "je suis chez moi .", 2),
        attn_bleu("a b c d", "a b a b", 2),
        attn_bleu("a a a", "a a b", 2),
        attn_bleu("j'ai perdu .", "j'ai perdu .", 2),
    };
    double want[6] = {1.0, 0.658037, 0.703726, 0.537285, 0.686589, 1.0};
    tu_close_f64("bleu, d2l's definition", got, want, 6, 1e-6, 0);
    CHECK(attn_bleu("calme", "il est calme .", 2) == 0.0);     /* one token: no bigram, 0 (d2l: ZeroDivision) */
    CHECK(attn_bleu("x y", "a b", 2) == 0.0);
}

static void test_masked_xent(void) {
    /* the book: logits ones (3,4,10), labels ones, valid lengths 4, 2, 0 → 2.3026, 1.1513, 0 */
    float logits[3 * 4 * 10], probs[3 * 4 * 10], losses[12], w[12];
    int32_t labels[12];
    int valid[3] = {4, 2, 0};
    for (int i = 0; i < 120; i++) logits[i] = 1.0f;
    for (int b = 0; b < 3; b++)
        for (int t = 0; t < 4; t++) { labels[b * 4 + t] = 1; w[b * 4 + t] = t < valid[b] ? 0.25f : 0.0f; }
    CHECK_STATUS(attn_softmax_xent_forward(losses, probs, logits, labels, w, 12, 10), ATTN_OK);
    double seq[3] = {0, 0, 0}, want[3] = {2.3026, 1.1513, 0.0};
    for (int i = 0; i < 12; i++) seq[i / 4] += losses[i];
    tu_close_f64("masked CE, the book's example", seq, want, 3, 1e-4, 0);

    /* the model: whatever sits in the padding changes neither the loss nor a gradient */
    attn_seq2seq m;
    attn_seq2seq_config c = {9, 9, 4, 6, 2, 0.0f, 5, 3, ATTN_DTYPE_F32};
    CHECK_STATUS(attn_seq2seq_init(&m, NULL, &c, 3), ATTN_OK);
    int32_t X[15] = {4, 5, 3, 1, 1, 6, 7, 8, 3, 1, 5, 3, 1, 1, 1}, Xl[3] = {3, 4, 2};
    int32_t Y[15] = {4, 3, 1, 1, 1, 5, 6, 7, 8, 3, 8, 8, 3, 1, 1}, Yl[3] = {2, 5, 3};
    float l1, l2;
    CHECK_STATUS(attn_seq2seq_step(&m, &l1, X, Xl, Y, Yl, 3, 0, 1, 0), ATTN_OK);
    float *g1 = malloc(sizeof(float) * m.n_params);
    memcpy(g1, m.grads, sizeof(float) * m.n_params);
    memset(m.grads, 0, sizeof(float) * m.n_params);
    /* only padded target positions change (the source stays: d2l's encoder reads its padding too) */
    int32_t Y2[15];
    memcpy(Y2, Y, sizeof Y);
    Y2[2] = 6; Y2[3] = 7; Y2[4] = 2; Y2[14] = 4;
    CHECK_STATUS(attn_seq2seq_step(&m, &l2, X, Xl, Y2, Yl, 3, 0, 1, 0), ATTN_OK);
    CHECK(l1 == l2);
    CHECK(memcmp(g1, m.grads, sizeof(float) * m.n_params) == 0);
    /* and a longer valid length raises the loss */
    Yl[0] = 4;
    CHECK_STATUS(attn_seq2seq_step(&m, &l2, X, Xl, Y, Yl, 3, 0, 0, 0), ATTN_OK);
    CHECK(l2 > l1);
    printf("  padded batch: loss %.6f, same with other padding; %.6f with one more target\n", l1, l2);
    free(g1);
    attn_seq2seq_free(&m);
}

static void test_real_data(void) {
    const char *path = ATTN_DATA_DIR "/fra-eng/fra.txt";
    if (access(path, R_OK) != 0) { printf("  skipped: %s not found\n", path); return; }
    attn_nmt_pairs p;
    char err[512];
    CHECK_STATUS(attn_nmt_read(&p, path, 0, 600, err, sizeof err), ATTN_OK);
    CHECK(p.n == 601);
    attn_vocab vs, vt;
    CHECK_STATUS(attn_vocab_build(&vs, (const char *const *)p.src, p.n, 2), ATTN_OK);
    CHECK_STATUS(attn_vocab_build(&vt, (const char *const *)p.tgt, p.n, 2), ATTN_OK);
    printf("  real data: %d pairs, vocabularies %d and %d (d2l: 184 and 201)\n", p.n, vs.n, vt.n);
    CHECK(vs.n == 184 && vt.n == 201);
    /* d2l's most frequent tokens come first */
    CHECK(vs.n > 5 && strcmp(vs.tokens[4], ".") == 0);
    CHECK(strcmp(p.src[0], "go .") == 0 && strcmp(p.tgt[0], "va !") == 0);
    attn_vocab_free(&vs); attn_vocab_free(&vt);
    attn_nmt_pairs_free(&p);
}

int main(void) {
    char dir[] = "/tmp/attn_fra_XXXXXX";
    if (!mkdtemp(dir)) { fprintf(stderr, "mkdtemp failed\n"); return 1; }
    test_preprocess();
    test_read(dir);
    test_vocab(dir);
    test_vocab_many();
    test_vocab_long_token(dir);
    test_special_files(dir);
    test_bleu();
    test_masked_xent();
    test_real_data();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_fra");
}
