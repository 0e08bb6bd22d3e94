/*
 * attn/data.h — the data sets and their text pipelines: everything between a file on disk and the token
 * ids (or pixels) a model trains on. Includes attn.h.
 *
 *   IMDB       the sentiment data set (Maas et al. 2011, "aclImdb"), its tokenizer, vocabulary, the
 *              fixed-length encoding the self-attention classifier trains on and a binary cache
 *   fra.txt    the English–French pairs of the d2l book (the translators'), their preprocessing,
 *              vocabularies, token ids and BLEU
 *   IDX        LeCun's array format (the MNIST family), gzip or plain, and Fashion-MNIST read from it
 *
 * ---------------------------------------------------------------------------------------------------
 * IMDB: the official split read straight from the .tar.gz (or an unpacked aclImdb/ folder), the
 * tokenizer, the vocabulary, the fixed-length encoding and a binary cache of the result.
 *
 * Tokenizer (attn_imdb_tokenize), byte by byte over UTF-8 text:
 *   - "<br />" (also "<br/>" and "<br>", any case) is a space;
 *   - ASCII letters are lowercased; a token is a maximal run of word characters: a-z, 0-9, the apostrophe
 *     ', and the non-ASCII letters below; everything else separates tokens;
 *   - non-ASCII: U+2018, U+2019 and U+00B4 (typographic quotes and the acute accent that reviews use as an
 *     apostrophe) become '; the Latin letters U+00C0..U+024F (except × U+00D7 and ÷ U+00F7) are word
 *     characters, kept as UTF-8, with U+00C0..U+00DE lowercased to U+00E0..U+00FE ("Émile" -> "émile");
 *     every other code point (punctuation, symbols, C1 controls, other scripts) separates tokens;
 *   - invalid UTF-8 (a bad lead or continuation byte, an overlong form, a surrogate, a code point above
 *     U+10FFFF, or a sequence cut by the end of the text) is ATTN_ERR_FORMAT with the byte offset.
 *   - tokens longer than ATTN_IMDB_MAX_WORD bytes are cut to that length.
 *
 * Vocabulary: the V-3 most frequent tokens of the TRAINING reviews (V ids in all: 0 padding, 1 start,
 * 2 out-of-vocabulary, words from 3 — Keras' index_from=3). Ranked by count, descending; equal counts by
 * the tokens' bytes in ascending memcmp order (a prefix first). The default V = 20000 gives 19,997 words.
 *
 * Encoding: each review becomes [1, id(w1), id(w2), ...]; the LAST T ids are kept (pre-truncation) and
 * the row is left-padded with 0 to length T. Labels: 0 negative (rating <= 4), 1 positive (rating >= 7).
 *
 * Order: each split is sorted by (review id, label), so neg 0, pos 0, neg 1, pos 1, ...; the .tar.gz and
 * the folder give the same data set, and --limit N (the first N of each split) stays balanced.
 *
 * Errors: every call that reads a file fills err with "path: entry/offset: what was expected".
 */
#ifndef ATTN_DATA_H
#define ATTN_DATA_H

#include "../attn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_IMDB_PAD 0
#define ATTN_IMDB_START 1
#define ATTN_IMDB_OOV 2
#define ATTN_IMDB_FIRST_WORD 3
#define ATTN_IMDB_MAX_WORD 64          /* bytes; longer tokens are cut */
#define ATTN_IMDB_MAX_REVIEW (1 << 20) /* bytes; a longer review file is refused */

/* ---------------------------------------------------------------------------------------------------
 * Tokenizer. Calls fn(ctx, word, len) for each token in order (word is not NUL-terminated, len >= 1,
 * lowercased as described above). A nonzero return from fn stops the walk with ATTN_ERR_ARG.
 * On invalid UTF-8: ATTN_ERR_FORMAT and *bad_offset (may be NULL) = the offending byte's offset.
 */
typedef int (*attn_imdb_token_fn)(void *ctx, const char *word, size_t len);
attn_status attn_imdb_tokenize(const char *text, size_t len, attn_imdb_token_fn fn, void *ctx,
                               size_t *bad_offset);

/* ---------------------------------------------------------------------------------------------------
 * Vocabulary: V ids; words[i] for i >= ATTN_IMDB_FIRST_WORD is the NUL-terminated token of id i
 * (words[0..2] are "<pad>", "<start>", "<oov>"). One allocation for the strings (blob, blob_size bytes:
 * the V words, each followed by a NUL), one for the pointers, one for a hash index.
 */
typedef struct attn_imdb_vocab {
    int V;                       /* ids in all, reserved ones included */
    char **words;                /* (V) pointers into blob */
    char *blob;                  /* the V NUL-terminated words, in id order */
    size_t blob_size;
    uint32_t crc;                /* crc32 of blob: identifies the vocabulary */
    int32_t *hash;               /* open-addressing index of ids, hash_size slots, -1 empty */
    size_t hash_size;
} attn_imdb_vocab;

/* Builds the vocabulary from a blob of V NUL-terminated words (as stored in a checkpoint or cache). */
attn_status attn_imdb_vocab_from_blob(attn_imdb_vocab *v, const char *blob, size_t size, int V);
void        attn_imdb_vocab_free(attn_imdb_vocab *v);
/* The id of a token (ATTN_IMDB_OOV when absent). */
int32_t     attn_imdb_vocab_lookup(const attn_imdb_vocab *v, const char *word, size_t len);

/* Encodes one text with the vocabulary: ids (T) written (start, words, last T kept, left-padded).
 * *n_words (may be NULL) gets the number of tokens in the text. Empty text (no token) is ATTN_ERR_ARG:
 * nothing to classify. Invalid UTF-8 is ATTN_ERR_FORMAT (*bad_offset as for attn_imdb_tokenize). */
attn_status attn_imdb_encode_text(int32_t *ids, int T, const attn_imdb_vocab *v, const char *text, size_t len,
                                  int *n_words, size_t *bad_offset);

/* ---------------------------------------------------------------------------------------------------
 * The encoded data set: both splits, and the vocabulary of the training split.
 */
typedef struct attn_imdb_split {
    int n;                       /* reviews */
    int32_t *ids;                /* (n,T) */
    int32_t *labels;             /* (n) 0 negative, 1 positive */
} attn_imdb_split;

typedef struct attn_imdb_data {
    int T;                       /* ids per review (maxlen) */
    attn_imdb_split train, test;
    attn_imdb_vocab vocab;
    uint64_t source_size;        /* size of the .tar.gz, or 0 for a folder: recorded in the cache */
    int64_t source_mtime;        /* its modification time (seconds), or 0 */
} attn_imdb_data;

typedef struct attn_imdb_options {
    int V;                       /* vocabulary ids (default 20000) */
    int T;                       /* maxlen (default 64) */
    int limit;                   /* > 0: only the first limit reviews of each split */
} attn_imdb_options;

void attn_imdb_options_default(attn_imdb_options *o);

/* Finds the data under path: path itself when it is a .tar.gz or an aclImdb folder (it has train/ and
 * test/), else path/aclImdb_v1_labeled.tar.gz, path/aclImdb_v1.tar.gz, path/aclImdb/. found (found_size
 * bytes) gets what was found. ATTN_ERR_IO naming every place looked at when nothing is there. */
attn_status attn_imdb_locate(const char *path, char *found, size_t found_size, char *err, size_t err_size);

/* Reads the official split from a .tar.gz (streamed once: gzip, then the tar headers, each checked) or
 * from an aclImdb folder; tokenizes, builds the vocabulary from the training reviews and encodes both
 * splits. path is what attn_imdb_locate found. A review that is empty (no token), not UTF-8 or larger than
 * ATTN_IMDB_MAX_REVIEW is ATTN_ERR_FORMAT naming the entry; a split with no review is ATTN_ERR_FORMAT. */
attn_status attn_imdb_load(attn_imdb_data *d, const char *path, const attn_imdb_options *o,
                           char *err, size_t err_size);
void        attn_imdb_free(attn_imdb_data *d);

/* Cache: a binary file — magic "ATTNIMDB", version, sizes (T, V, limit, n_train, n_test), the source's
 * size and mtime, the vocabulary crc, the payload's crc32 and length, then the vocabulary blob, the ids
 * and the labels (little-endian). Written atomically (temporary file, then rename). Loading checks every
 * field; a cache whose options or source differ from o / the source's is ATTN_ERR_ARG (stale: rebuild
 * it), a truncated or corrupt one ATTN_ERR_FORMAT. source: what attn_imdb_locate found, or NULL to skip
 * the source check. */
attn_status attn_imdb_cache_save(const attn_imdb_data *d, const attn_imdb_options *o, const char *path,
                                 char *err, size_t err_size);
attn_status attn_imdb_cache_load(attn_imdb_data *d, const attn_imdb_options *o, const char *source,
                                 const char *path, char *err, size_t err_size);

/* ---------------------------------------------------------------------------------------------------
 * Text: the d2l pipeline for fra.txt ("English<TAB>French" per line).
 * Preprocessing: U+202F and U+00A0 become spaces; lowercase (ASCII, Latin-1 and Latin Extended-A
 * letters: Ç→ç, À→à, É→é, Œ→œ; other scripts unchanged); a space is put before , . ! ? when the
 * character before is not a space. Tokens are split on single spaces (as Python's split(' ')).
 */
typedef struct attn_nmt_pairs {
    int n;                       /* pairs read */
    char **src, **tgt;           /* n preprocessed lines each */
    int *line;                   /* (n) 0-based line number of each pair in the file */
} attn_nmt_pairs;

/* Preprocesses one UTF-8 string into a new malloc'd string (*out). ATTN_ERR_FORMAT on invalid UTF-8. */
attn_status attn_nmt_preprocess(const char *in, size_t len, char **out);

/* Reads the pairs of lines first..last (0-based, inclusive; last < 0 = to the end) of path. A line
 * without a tab, with an empty side or with invalid UTF-8 is an error naming the path and line number
 * (1-based in the message); a missing file names the path. A final empty line is ignored. */
attn_status attn_nmt_read(attn_nmt_pairs *p, const char *path, int first, int last,
                          char *err, size_t err_size);
void        attn_nmt_pairs_free(attn_nmt_pairs *p);

/* Vocabulary: ids 0 <unk>, 1 <pad>, 2 <bos>, 3 <eos>, then tokens of count >= min_freq by count, most
 * frequent first, ties in order of first appearance (what d2l's sorted(Counter) gives). */
enum { ATTN_TOK_UNK = 0, ATTN_TOK_PAD = 1, ATTN_TOK_BOS = 2, ATTN_TOK_EOS = 3 };

typedef struct attn_vocab {
    int n;                       /* tokens */
    char **tokens;               /* (n) */
    int *table;                  /* open-addressing hash table of ids, table_size slots, -1 = empty */
    int table_size;
} attn_vocab;

attn_status attn_vocab_build(attn_vocab *v, const char *const *lines, int n_lines, int min_freq);
void        attn_vocab_free(attn_vocab *v);
int         attn_vocab_id(const attn_vocab *v, const char *token, size_t len);   /* ATTN_TOK_UNK if absent */
/* One token per line, in id order. */
attn_status attn_vocab_save(const attn_vocab *v, const char *path, char *err, size_t err_size);
attn_status attn_vocab_load(attn_vocab *v, const char *path, char *err, size_t err_size);

/* Token ids of a preprocessed line, then <eos>, cut or padded with <pad> to num_steps:
 *   ids (num_steps) written; *valid_len = non-pad count (the d2l valid length); *n_tokens = tokens in
 *   the line (before <eos>, before cutting); *n_unk (or NULL) = tokens not in the vocabulary. */
attn_status attn_vocab_encode(const attn_vocab *v, const char *line, int num_steps, int32_t *ids,
                              int32_t *valid_len, int *n_tokens, int *n_unk);

/* BLEU as d2l defines it: exp(min(0, 1 - len_label/len_pred)) · Π_{n=1..k} p_n^(1/2^n), p_n the clipped
 * n-gram precision; tokens split on single spaces. A prediction with fewer than n tokens has p_n = 0
 * (d2l divides by zero there). */
double attn_bleu(const char *pred, const char *label, int k);

/* ---------------------------------------------------------------------------------------------------
 * IDX: two zero bytes, the element type (0x08 unsigned byte: the only one read), the number of dimensions,
 * each dimension a big-endian uint32, then the elements row-major and nothing after them. A file starting
 * with the gzip magic (1f 8b) is inflated first. Every check names the path, the offset (in the
 * decompressed data) and what was expected: magic, type, dimension count (1..ATTN_IDX_MAX_DIMS), zero
 * dimensions, a product over max_bytes elements (refused before anything that large is allocated; the
 * decompressed size is capped too), truncation, and bytes after the last element.
 */
#define ATTN_IDX_MAX_DIMS 4

typedef struct attn_idx {
    int ndim;
    int64_t dims[ATTN_IDX_MAX_DIMS];
    uint8_t *data;               /* (dims...) row-major, size bytes, one allocation */
    size_t size;
} attn_idx;

attn_status attn_idx_read(attn_idx *x, const char *path, size_t max_bytes, char *err, size_t err_size);
void        attn_idx_free(attn_idx *x);

/* Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test images of 28x28 grey levels, 10
 * classes. attn_fmnist_load reads dir/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz (or the same names
 * without .gz): images (n,rows,cols) with one label per image in 0..9, both splits the same image size.
 * Missing files: ATTN_ERR_IO naming the folder and the names looked for. limit > 0 keeps the first limit
 * images of each split. */
#define ATTN_FMNIST_CLASSES 10
#define ATTN_FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

typedef struct attn_fmnist_split {
    int n, rows, cols;
    uint8_t *images;             /* (n,rows,cols) grey levels 0..255 */
    int32_t *labels;             /* (n) 0..9 */
} attn_fmnist_split;

typedef struct attn_fmnist {
    attn_fmnist_split train, test;
} attn_fmnist;

attn_status attn_fmnist_load(attn_fmnist *d, const char *dir, int limit, char *err, size_t err_size);
void        attn_fmnist_free(attn_fmnist *d);
/* "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot";
 * "?" out of range. */
const char *attn_fmnist_class_name(int c);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_DATA_H */
