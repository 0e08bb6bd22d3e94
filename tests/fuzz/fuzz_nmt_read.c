/*
 * fuzz_nmt_read.c — attn_nmt_read on a fra.txt-like file, then what the translators do with the pairs:
 * the two vocabularies (attn_vocab_build), the encoding of every line (attn_vocab_encode) and BLEU of
 * each pair. Input: one byte for the line range and min_freq, then the file.
 */
#include "fuzz_util.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int first = data[0] & 3, last = (data[0] >> 2) & 7 ? first + ((data[0] >> 2) & 7) : -1;
    int min_freq = data[0] >> 6;
    const char *path = fuzz_input_path(data + 1, size - 1);
    attn_nmt_pairs p;
    char err[512];
    attn_status st = attn_nmt_read(&p, path, first, last, err, sizeof err);
    if (st != ATTN_OK) {
        FUZZ_ERR_OK(err, sizeof err);
        return 0;
    }
    FUZZ_ASSERT(p.n > 0);
    attn_vocab src, tgt;
    FUZZ_ASSERT(attn_vocab_build(&src, (const char *const *)p.src, p.n, min_freq) == ATTN_OK);
    FUZZ_ASSERT(attn_vocab_build(&tgt, (const char *const *)p.tgt, p.n, min_freq) == ATTN_OK);
    FUZZ_ASSERT(src.n >= 4 && tgt.n >= 4);
    enum { STEPS = 8 };
    int32_t ids[STEPS], valid;
    int n_tok, n_unk;
    for (int i = 0; i < p.n; i++) {
        FUZZ_ASSERT(p.line[i] >= first && (last < 0 || p.line[i] <= last));
        FUZZ_ASSERT(attn_vocab_encode(&src, p.src[i], STEPS, ids, &valid, &n_tok, &n_unk) == ATTN_OK);
        FUZZ_ASSERT(valid >= 1 && valid <= STEPS && n_unk <= n_tok);
        for (int k = 0; k < STEPS; k++) FUZZ_ASSERT(ids[k] >= 0 && ids[k] < src.n);
        FUZZ_ASSERT(attn_vocab_encode(&tgt, p.tgt[i], STEPS, ids, &valid, &n_tok, &n_unk) == ATTN_OK);
        for (int k = 0; k < STEPS; k++) FUZZ_ASSERT(ids[k] >= 0 && ids[k] < tgt.n);
        double b = attn_bleu(p.tgt[i], p.tgt[p.n - 1 - i], 2);
        FUZZ_ASSERT(b >= 0.0 && b <= 1.0);
    }
    attn_vocab_free(&src);
    attn_vocab_free(&tgt);
    attn_nmt_pairs_free(&p);
    return 0;
}
