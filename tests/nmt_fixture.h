/*
 * nmt_fixture.h — the sentence pairs the translator tests train on.
 *
 * The short training runs use the book's 601 pairs of ../shared/data/fra-eng/fra.txt when that file is
 * there (or $ATTN_TEST_DATA/fra-eng/fra.txt when the variable is set). Without it they do not skip: they
 * write a fixture in the same format and train on that, so CI always trains. The fixture is counting in
 * two languages: "One four two." -> "Un quatre deux." with one to three of twelve numbers; 601 pairs
 * drawn by a fixed generator, so the file and the losses are the same on every run.
 */
#ifndef ATTN_TESTS_NMT_FIXTURE_H
#define ATTN_TESTS_NMT_FIXTURE_H

#include "attn.h"
#include "attn/data.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes the fixture to dir/fra.txt; the path goes to path. Returns 0, or -1 if it cannot write. */
static int nmt_fixture_write(const char *dir, char *path, size_t path_size) {
    static const char *const en[] = {"one", "two", "three", "four", "five", "six",
                                     "seven", "eight", "nine", "ten", "eleven", "twelve"};
    static const char *const fr[] = {"un", "deux", "trois", "quatre", "cinq", "six",
                                     "sept", "huit", "neuf", "dix", "onze", "douze"};
    snprintf(path, path_size, "%s/fra.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    uint64_t s = 12345;
    for (int i = 0; i < 601; i++) {
        int w[3], n;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        n = 1 + (int)((s >> 33) % 3);
        for (int k = 0; k < n; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            w[k] = (int)((s >> 33) % 12);
        }
        /* capitalized first word and a closing period, as fra.txt writes them */
        for (int side = 0; side < 2; side++) {
            const char *const *words = side ? fr : en;
            for (int k = 0; k < n; k++) {
                const char *word = words[w[k]];
                if (k == 0) fprintf(f, "%c%s", word[0] - 'a' + 'A', word + 1);
                else fprintf(f, " %s", word);
            }
            fputs(side ? ".\tfixture\n" : ".\t", f);
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* The fra.txt the short training runs read: the real one if readable, else the fixture written in dir.
 * Returns 1 for the real data, 0 for the fixture, -1 on failure; prints which. */
static int nmt_training_file(const char *dir, char *path, size_t path_size) {
    const char *root = getenv("ATTN_TEST_DATA");
    if (!root || !*root) root = ATTN_DATA_DIR;
    snprintf(path, path_size, "%s/fra-eng/fra.txt", root);
    if (access(path, R_OK) == 0) {
        printf("  data: %s\n", path);
        return 1;
    }
    printf("  %s not found: training on a counting fixture instead\n", path);
    return nmt_fixture_write(dir, path, path_size);
}

/* The book's 601 pairs (or the fixture's), read, with vocabularies (min frequency 2) and the padded id
 * arrays (n, T) with lengths, as `attn translate train` prepares them. */
typedef struct nmt_train_set {
    int real;                      /* 1: the book's data, 0: the fixture */
    int n, T;
    attn_vocab vs, vt;
    int32_t *X, *Y, *X_len, *Y_len;
} nmt_train_set;

static void nmt_train_set_free(nmt_train_set *t) {
    attn_vocab_free(&t->vs);
    attn_vocab_free(&t->vt);
    free(t->X); free(t->Y); free(t->X_len); free(t->Y_len);
    t->X = t->Y = t->X_len = t->Y_len = NULL;
}

/* Fills t from the real data or a fixture written in dir. Returns 0, or -1 after printing why. */
static int nmt_train_set_load(nmt_train_set *t, const char *dir) {
    char path[600], err[256] = "";
    memset(t, 0, sizeof *t);
    t->real = nmt_training_file(dir, path, sizeof path);
    if (t->real < 0) { fprintf(stderr, "cannot write the fixture in %s\n", dir); return -1; }
    attn_nmt_pairs p;
    if (attn_nmt_read(&p, path, 0, 600, err, sizeof err) != ATTN_OK || p.n != 601) {
        fprintf(stderr, "%s: %s (expected 601 pairs)\n", path, err);
        return -1;
    }
    t->n = p.n;
    t->T = 10;
    const size_t nT = (size_t)t->n * t->T;
    t->X = malloc(sizeof(int32_t) * nT);
    t->Y = malloc(sizeof(int32_t) * nT);
    t->X_len = malloc(sizeof(int32_t) * (size_t)t->n);
    t->Y_len = malloc(sizeof(int32_t) * (size_t)t->n);
    int ok = t->X && t->Y && t->X_len && t->Y_len &&
             attn_vocab_build(&t->vs, (const char *const *)p.src, p.n, 2) == ATTN_OK &&
             attn_vocab_build(&t->vt, (const char *const *)p.tgt, p.n, 2) == ATTN_OK;
    for (int i = 0; ok && i < t->n; i++) {
        int nt;
        ok = attn_vocab_encode(&t->vs, p.src[i], t->T, t->X + (size_t)i * t->T, t->X_len + i, &nt, NULL) == ATTN_OK &&
             attn_vocab_encode(&t->vt, p.tgt[i], t->T, t->Y + (size_t)i * t->T, t->Y_len + i, &nt, NULL) == ATTN_OK;
    }
    attn_nmt_pairs_free(&p);
    if (!ok) {
        fprintf(stderr, "%s: could not build the vocabularies and id arrays\n", path);
        nmt_train_set_free(t);
        return -1;
    }
    return 0;
}

#endif
