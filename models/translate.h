/* translate.h: batched greedy and beam-search translation with the
 * encoder-decoder Transformer (runtime/beam.c over models/transformer.h's
 * key/value-cached decoder). Used by dtrain-translate and by the trainer's
 * validation BLEU. */
#ifndef DT_TRANSLATE_H
#define DT_TRANSLATE_H

#include "transformer.h"

typedef struct dt_translator dt_translator;

typedef struct dt_translate_opts {
  int beam;          /* 1 = greedy */
  double alpha;      /* GNMT length penalty exponent */
  double len_a;      /* at most len_a * source length + len_b target tokens */
  int len_b;
  int max_sent;      /* sentences decoded together */
  int32_t bos, eos, pad;
} dt_translate_opts;

/* NULL with err when the sizes do not fit the model. */
dt_translator *dt_translator_create(dt_model *m, const dt_translate_opts *o, dt_error *err);
void dt_translator_free(dt_translator *t);

/* Translates n sentences of source ids (src[i], src_len[i] ids each, without
 * eos; longer than the model takes: cut, and counted in *truncated if not
 * NULL). out[i] gets a malloc'ed array of out_len[i] target ids (no bos or
 * eos) and, if out_score is not NULL, out_score[i] its length-normalised
 * log-probability. Sentences are decoded in groups of max_sent, sorted by length so
 * little padding is decoded; the order of out follows src. */
void dt_translate(dt_translator *t, int n, const int32_t *const *src, const int *src_len,
                  int32_t **out, int *out_len, double *out_score, int64_t *truncated);

#endif
