/* beam.h: batched beam search (and greedy search, beam 1) over any decoder
 * that gives next-token log-probabilities for a set of rows.
 *
 * B sentences each keep K hypotheses, so the decoder always sees B*K rows:
 * row b*K + k is hypothesis k of sentence b. Before every step but the first,
 * rows are reordered: new row r continues old row parents[r] (the decoder's
 * key/value cache must be gathered the same way), then extended by tokens[r].
 * A hypothesis ends when it emits eos; its score is the sum of its tokens'
 * log-probabilities divided by the length penalty ((5 + len) / 6)^alpha of
 * GNMT (len counts eos; alpha 0 = plain sum). A sentence is done when it has
 * K finished hypotheses, or when no live hypothesis can still beat its best
 * finished one, or at max_len tokens (live hypotheses are then finished as
 * they stand). The result is the best finished hypothesis, eos excluded. */
#ifndef DT_BEAM_H
#define DT_BEAM_H

#include <stdint.h>

/* The decoder: fills logprobs (rows, V) for the rows after appending
 * tokens[r] to the reordered row parents[r] (parents is NULL on the first
 * step: row r then starts from bos, tokens[r] = bos). Returns 0, or nonzero
 * to abort the search. */
typedef int (*dt_beam_step_fn)(void *ctx, int rows, const int32_t *parents,
                               const int32_t *tokens, float *logprobs);

typedef struct dt_beam_result {
  int32_t *tokens; /* (B, max_len) best hypothesis of each sentence, eos excluded */
  int *len;        /* (B) its length */
  double *score;   /* (B) its normalised score */
} dt_beam_result;

/* Returns 0, or the step function's nonzero code. */
int dt_beam_search(int B, int K, int V, int32_t bos, int32_t eos, int max_len, double alpha,
                   dt_beam_step_fn step, void *ctx, dt_beam_result *out);
void dt_beam_result_free(dt_beam_result *r);

/* Tests only: nonzero makes every step sort all K*V candidates instead of
 * each row's best 2K, to check that the shortcut never changes a result. */
extern int dt_beam_keep_all;

/* GNMT's length penalty ((5 + len) / 6)^alpha. */
double dt_beam_length_penalty(int len, double alpha);

#endif
