/* blend.c: the sample order of a weighted blend of token datasets. */
#include "blend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

int dt_blend_parse(const char *spec, double *w, const char **dirs, int *nd, char **buf,
                   dt_error *err) {
  *nd = 0;
  *buf = dt_malloc(strlen(spec) + 1);
  strcpy(*buf, spec);
  char *save = NULL;
  for (char *tok = strtok_r(*buf, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
    char *end;
    double v = strtod(tok, &end);
    if (*end || !(v > 0) || !isfinite(v))
      return dt_error_set(err, "[data] blend: '%s' is not a positive weight (want \"W1 DIR1 "
                          "W2 DIR2 ...\")", tok);
    char *dir = strtok_r(NULL, " \t", &save);
    if (!dir)
      return dt_error_set(err, "[data] blend: weight %s has no directory after it", tok);
    if (*nd == DT_BLEND_MAX)
      return dt_error_set(err, "[data] blend: more than %d datasets", DT_BLEND_MAX);
    w[*nd] = v, dirs[*nd] = dir;
    (*nd)++;
  }
  if (*nd == 0) return dt_error_set(err, "[data] blend: no \"WEIGHT DIR\" pairs");
  return 0;
}

int dt_blend_init(dt_blend *b, int nd, const int64_t *n, const double *w, dt_error *err) {
  memset(b, 0, sizeof *b);
  if (nd < 1 || nd > DT_BLEND_MAX) return dt_error_set(err, "blend: %d datasets", nd);
  double sum = 0;
  for (int d = 0; d < nd; d++) sum += w[d];
  b->nd = nd;
  for (int d = 0; d < nd; d++) {
    if (n[d] < 1 || !(w[d] > 0)) return dt_error_set(err, "blend: dataset %d is empty", d);
    b->n[d] = n[d], b->w[d] = w[d] / sum;
    b->off[d] = d ? b->off[d - 1] + n[d - 1] : 0;
    b->N += n[d];
  }
  if (b->N > INT32_MAX)
    return dt_error_set(err, "blend: %lld windows, more than int32 sample ids hold",
                        (long long)b->N);
  b->ds = dt_malloc((size_t)b->N);
  int64_t count[DT_BLEND_MAX] = {0};
  for (int64_t i = 0; i < b->N; i++) {
    int best = 0;
    double most = -INFINITY;
    for (int d = 0; d < nd; d++) {
      const double behind = b->w[d] * (double)(i + 1) - (double)count[d];
      if (behind > most) most = behind, best = d;
    }
    b->ds[i] = (uint8_t)best;
    count[best]++;
  }
  for (int d = 0; d < nd; d++) b->per_epoch[d] = count[d];
  return 0;
}

void dt_blend_free(dt_blend *b) {
  free(b->ds);
  b->ds = NULL;
}

void dt_blend_epoch(const dt_blend *b, uint64_t seed, int64_t epoch, int32_t *perm) {
  for (int d = 0; d < b->nd; d++) {
    if (!b->per_epoch[d]) continue;
    const int64_t n = b->n[d];
    int32_t *order = dt_malloc((size_t)n * sizeof *order);
    int64_t g = epoch * b->per_epoch[d], pass = -1; /* this epoch's first draw of d */
    for (int64_t i = 0; i < b->N; i++) {
      if (b->ds[i] != d) continue;
      if (g / n != pass) { /* into the next pass over d's windows */
        pass = g / n;
        dt_rng r;
        dt_rng_seed(&r, seed, dt_blend_stream(d, pass));
        dt_rng_permutation(&r, order, n);
      }
      perm[i] = (int32_t)(b->off[d] + order[g % n]);
      g++;
    }
    free(order);
  }
}
