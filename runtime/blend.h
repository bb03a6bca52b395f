/* blend.h: the sample order of a weighted blend of token datasets
 * (data.blend, Megatron-LM's --data-path W1 DIR1 W2 DIR2 ... ).
 *
 * Dataset d has n[d] windows; they are numbered one after another, dataset
 * d's from off[d], so a sample is one int32 as in a single dataset. An
 * epoch has N = sum n[d] samples. Sample i of every epoch comes from the
 * dataset whose count so far falls furthest below its share
 * (w[d] * (i + 1) - count[d] largest, the lowest d on a tie: Megatron's
 * BlendedDataset rule), so every prefix of an epoch, and so every batch,
 * holds each dataset within one sample of its weight. A dataset's draws
 * walk through seeded permutations of its windows, one after another
 * across epochs, a new one each time it has been through them all: a
 * dataset with a large weight repeats within an epoch, one with a small
 * weight is not seen whole. The order is a pure function of (seed, epoch),
 * so a resumed run rebuilds it. With one dataset it is a single dataset's
 * order: the seeded permutation of epoch e, pass e. */
#ifndef DT_BLEND_H
#define DT_BLEND_H

#include <stdint.h>

#include "dt.h"

#define DT_BLEND_MAX 16

typedef struct dt_blend {
  int nd;
  int64_t n[DT_BLEND_MAX], off[DT_BLEND_MAX];
  int64_t per_epoch[DT_BLEND_MAX]; /* samples of dataset d in an epoch */
  double w[DT_BLEND_MAX];          /* normalised weights */
  int64_t N;                       /* samples an epoch */
  uint8_t *ds;                     /* (N) the dataset of each sample */
} dt_blend;

/* Parses "W1 DIR1 W2 DIR2 ..." (whitespace-separated, weights positive
 * numbers, at most DT_BLEND_MAX pairs) into weights and directories
 * (dirs[d] points into the malloc'ed *buf). 0 or -1 with err. */
int dt_blend_parse(const char *spec, double *w, const char **dirs, int *nd, char **buf,
                   dt_error *err);

/* The order for datasets of n[0..nd) windows (each >= 1) and weights w
 * (> 0, any sum). 0 or -1 with err (too many samples for int32 ids). */
int dt_blend_init(dt_blend *b, int nd, const int64_t *n, const double *w, dt_error *err);
void dt_blend_free(dt_blend *b);

/* perm (N) = epoch `epoch`'s samples in order, as off[d] + window. */
void dt_blend_epoch(const dt_blend *b, uint64_t seed, int64_t epoch, int32_t *perm);

/* The rng stream of dataset d's pass p (pass p of a single dataset is
 * epoch p's permutation, as train.c's epoch_perm seeds it). */
static inline uint64_t dt_blend_stream(int d, int64_t p) {
  return 0x5eed0000ULL + (uint64_t)p + ((uint64_t)d << 40);
}

#endif
