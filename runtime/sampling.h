/* sampling.h: drawing the next token from a language model's logits the way
 * Hugging Face's generate does: temperature, then top-k (the k most likely
 * tokens), then top-p (nucleus: the fewest most likely of those whose
 * probabilities, renormalised after top-k, add up to at least p), then a
 * draw from what is left, renormalised. */
#ifndef DT_SAMPLING_H
#define DT_SAMPLING_H

#include <stdint.h>

#include "rng.h"

typedef struct dt_sampler {
  double temperature; /* > 0 */
  int top_k;          /* 0 = every token */
  double top_p;       /* in (0, 1]; 1 = no nucleus cut */
} dt_sampler;

/* probs (v) = the distribution a draw follows: zero outside the kept
 * tokens, summing to 1. Ties between equal logits go to the lower id. */
void dt_sample_probs(const float *logits, int v, const dt_sampler *s, double *probs);

/* One token drawn from logits (v) with r. */
int32_t dt_sample_token(const float *logits, int v, const dt_sampler *s, dt_rng *r);

#endif
