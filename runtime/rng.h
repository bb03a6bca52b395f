/* rng.h: seeded, reproducible random numbers (xoshiro256** seeded through
 * splitmix64). A stream is a pure function of (seed, stream id), so the data
 * order of epoch e is rebuilt exactly on resume without saving it. */
#ifndef DT_RNG_H
#define DT_RNG_H

#include <stdint.h>

typedef struct dt_rng {
  uint64_t s[4];
} dt_rng;

/* Seeds from (seed, stream): different streams are independent sequences. */
void dt_rng_seed(dt_rng *r, uint64_t seed, uint64_t stream);
uint64_t dt_rng_u64(dt_rng *r);
/* uniform in [0, 1) with 53 random bits */
double dt_rng_uniform(dt_rng *r);
/* standard normal (Box-Muller) */
double dt_rng_normal(dt_rng *r);
/* uniform integer in [0, n), unbiased */
uint64_t dt_rng_below(dt_rng *r, uint64_t n);
/* perm = a uniformly random permutation of 0..n-1 (Fisher-Yates) */
void dt_rng_permutation(dt_rng *r, int32_t *perm, int64_t n);

#endif
