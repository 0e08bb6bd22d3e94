/*
 * translate_transformer.h — `attn translate train|predict|bleu --model transformer`: the d2l book's
 * English→French Transformer (SPEC §4.E). Each entry takes the argv from the subcommand's name on (as
 * cmd_translate's train/predict/bleu) with the --model option already removed, and returns the exit
 * status. Uses only the public API.
 */
#ifndef ATTN_TRANSLATE_TRANSFORMER_H
#define ATTN_TRANSLATE_TRANSFORMER_H

/* Folder the Transformer's checkpoint and vocabularies go to by default (the Bahdanau model's is
 * fra_model) and the checkpoint's file name in it. */
#define TT_DEFAULT_DIR "fra_transformer"
#define TT_MODEL_FILE "transformer.safetensors"

int tt_train(int argc, char **argv);
int tt_predict(int argc, char **argv);
int tt_bleu(int argc, char **argv);

#endif /* ATTN_TRANSLATE_TRANSFORMER_H */
