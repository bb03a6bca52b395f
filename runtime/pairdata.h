/* pairdata.h: translation pairs from `dtrain-prep translation` shards, and
 * batches made by token count from length-sorted runs so padding stays small.
 *
 * Shard: /src_tokens, /tgt_tokens uint16 (flat), /src_offsets, /tgt_offsets
 * int64 [N+1]; attributes vocab_size, pad_id, bos_id, eos_id. Sentences are
 * stored without bos/eos: the encoder reads src + eos, the decoder reads
 * bos + tgt and predicts tgt + eos. */
#ifndef DT_PAIRDATA_H
#define DT_PAIRDATA_H

#include <stdint.h>

#include "dt.h"

typedef struct dt_pair_set {
  int64_t n;                 /* pairs */
  uint16_t *src, *tgt;       /* flat token ids */
  int64_t *src_off, *tgt_off; /* (n+1) */
  int64_t vocab, pad, bos, eos;
} dt_pair_set;

/* Loads PATH and checks it: offsets start at 0, never decrease and end at the
 * token count, every id < vocab_size, every sentence non-empty, the special
 * ids in range. model_vocab > 0: the shard's vocabulary must equal it. -1
 * with err naming the file and the dataset, pair or attribute. */
int dt_pair_set_load(dt_pair_set *s, const char *path, int64_t model_vocab, dt_error *err);
void dt_pair_set_free(dt_pair_set *s);

/* Lengths with the special token each side adds: source + eos, bos + target. */
static inline int64_t dt_pair_src_len(const dt_pair_set *s, int64_t i) {
  return s->src_off[i + 1] - s->src_off[i] + 1;
}
static inline int64_t dt_pair_tgt_len(const dt_pair_set *s, int64_t i) {
  return s->tgt_off[i + 1] - s->tgt_off[i] + 1;
}

/* Batches: order[] holds the usable pair indices sorted by length; batch b is
 * order[start[b] .. start[b+1]). */
typedef struct dt_pair_batches {
  int64_t nbatches;
  int64_t *start; /* (nbatches+1) */
  int32_t *order;
  int64_t skipped; /* pairs longer than max_len on either side */
  int64_t *ntgt;   /* (nbatches) target tokens (the loss's denominator) */
} dt_pair_batches;

/* Sorts pairs by (longer side, target length, source length, index) and cuts the sorted
 * run greedily: a batch takes pairs while n * max(longest source, longest
 * target) <= max_tokens and n <= max_sentences, then is trimmed to a multiple
 * of `multiple` (the rest start the next batch), so every data-parallel rank
 * gets the same number of sentences. A batch is never empty; a single pair
 * longer than max_tokens, or a run of fewer than `multiple` pairs at the end,
 * is dropped from batching and counted in skipped. Pairs longer than max_len
 * (either side, with specials) are skipped too. Deterministic. */
int dt_pair_batches_make(const dt_pair_set *s, int64_t max_tokens, int64_t max_sentences,
                         int multiple, int64_t max_len, dt_pair_batches *out, dt_error *err);
void dt_pair_batches_free(dt_pair_batches *b);

/* Fills one padded micro-batch of n pairs idx[0..n): src (n, ts) = source +
 * eos, then pad; src_len (n); tok (n, t) = bos + target, then pad; y (n, t) =
 * target + eos, then -1 (ignored by the loss); tgt_len (n). ts and t are the
 * longest lengths in this micro-batch. Returns the real target tokens. */
int64_t dt_pair_fill(const dt_pair_set *s, const int32_t *idx, int n, int32_t *src,
                     int32_t *src_len, int32_t *tok, int32_t *y, int32_t *tgt_len, int *ts,
                     int *t);

#endif
